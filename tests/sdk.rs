//! The real server with the real default model, driven by the official OpenAI Python SDK.

use std::process::Command;

use hearth_models::WeightFormat;

use crate::util::{config, default_model, init, root};

/// The Python interpreter with the `openai` package: `HEARTH_PYTHON`, else the repository's `.venv`.
fn python() -> String {
    if let Ok(python) = std::env::var("HEARTH_PYTHON") {
        return python;
    }
    let venv = root().join(".venv/bin/python");
    assert!(venv.exists(), "{} is missing: scripts/test.sh creates it with the OpenAI SDK", venv.display());
    venv.display().to_string()
}

#[test]
fn openai_python_sdk_suite() {
    init();
    let state = hearth_server::start(&config(default_model(), WeightFormat::Q8_0)).unwrap();
    let model_id = state.model.id.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(hearth_server::serve(
        listener,
        hearth_server::app(state),
        async {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(30),
    ));

    let failed: Vec<&str> = ["test_chat.py", "test_sampling.py"]
        .into_iter()
        .filter(|suite| {
            let status = Command::new(python())
                .arg(root().join("tests/sdk").join(suite))
                .env("HEARTH_BASE_URL", format!("http://{address}/v1"))
                .env("HEARTH_MODEL", &model_id)
                .env("PYTHONUNBUFFERED", "1")
                .status()
                .expect("running a Python SDK suite");
            !status.success()
        })
        .collect();

    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
    assert!(failed.is_empty(), "OpenAI SDK suites failed: {failed:?}");
}
