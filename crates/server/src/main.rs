//! The `hearth` binary.

use clap::Parser;
use std::time::Duration;

use hearth_server::config::{Cli, Command, Config, LogFormat, ServeArgs};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Bench(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(hearth_bench::run(args))?;
            Ok(())
        }
        Command::BenchModel(args) => hearth_server::bench_model::run(&args),
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    match config.server.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    hearth_models::set_inference_threads(config.engine.threads);
    // Before the model load, so a bad certificate fails at once.
    let tls = config.server.tls.as_ref().map(hearth_server::tls::acceptor).transpose()?;
    let state = hearth_server::start(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((config.server.host.as_str(), config.server.port)).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ids: Vec<String> = state.models.list().into_iter().map(|m| m.entry.id).collect();
        tracing::info!("serving {} on {scheme}://{}/v1", ids.join(", "), listener.local_addr()?);
        let lifecycle = state.lifecycle.clone();
        let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
        let shutdown = async move {
            shutdown_signal().await;
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "draining: no new connections, in-flight requests may finish"
            );
            tokio::spawn(lifecycle.drain(grace));
        };
        let options = hearth_server::ServeOptions {
            header_timeout: Duration::from_secs(config.server.header_timeout_seconds),
            tls,
        };
        hearth_server::serve(listener, hearth_server::app(state), shutdown, options).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
