//! Load generator for any OpenAI-compatible chat endpoint, in the style of vLLM's `bench serve`; the server embeds it
//! as `hearth bench`.
//!
//! A run sends `--warmup` unmeasured requests one at a time, then `--requests` streamed chat completions from
//! `--concurrency` worker tasks that pull request numbers from a shared counter, so exactly that many are in flight
//! until the work runs out. Every request asks for exactly `--max-tokens` output tokens (`ignore_eos`, temperature 0)
//! and is timed chunk by chunk; the records fold into a [`Report`] of throughput and TTFT / TPOT / ITL / E2E latency.
//!
//! # Layout
//! - `lib.rs` — [`BenchArgs`] and [`run`]: warmup, then the worker pool over a shared request counter.
//! - `prompt` — `PromptBuilder`, synthetic prompts of one-token words with an optional shared prefix.
//! - `client` — `Endpoint`, one hyper HTTP/1.1 connection per request; times a streamed chat completion into a
//!   `RequestRecord`.
//! - `sse` — `SseParser`, server-sent events from body frames split at any byte.
//! - `report` — [`Report`], the aggregate, and its table rendering.
//! - `progress` — `Progress`, the `\r`-redrawn progress line on a terminal's stderr.
//!
//! Only [`BenchArgs`], [`run`] and the report types are public.
#![warn(missing_docs)]

mod client;
mod progress;
mod prompt;
mod report;
mod sse;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};

use client::{ChatRequest, Endpoint, Failure, RequestRecord};
use progress::Progress;
use prompt::PromptBuilder;
pub use report::{LatencySummary, Report, RunSettings};

/// `hearth bench` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the OpenAI-compatible API; only http:// is supported.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1")]
    pub base_url: String,
    /// Model id to send [default: the first id listed by GET {base-url}/models].
    #[arg(long)]
    pub model: Option<String>,
    /// Number of requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Number of measured requests [default: 4 × concurrency].
    #[arg(long)]
    pub requests: Option<usize>,
    /// Approximate prompt length in tokens (the report shows the server's exact count).
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Output tokens per request; requests set ignore_eos and temperature 0, so each yields exactly this many.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Leading prompt tokens identical in every request (a shared system prompt); the rest differ per request.
    #[arg(long, default_value_t = 0)]
    pub shared_prefix_tokens: usize,
    /// Requests run one at a time before measuring, and not counted.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Seed of prompt generation; the same seed sends the same prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Ask for `response_format: json_object` (structured output), to measure constrained decoding.
    #[arg(long)]
    pub json_object: bool,
}

/// Runs the benchmark and prints the report (table, or JSON with --json).
///
/// Fails only when the run cannot start or its warmup fails; failures of measured requests are counted in the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let requests = args.requests.unwrap_or(4 * args.concurrency);
    if requests == 0 || args.prompt_tokens == 0 || args.max_tokens == 0 {
        bail!("--requests, --prompt-tokens and --max-tokens must be at least 1");
    }
    if args.shared_prefix_tokens > args.prompt_tokens {
        bail!(
            "--shared-prefix-tokens ({}) exceeds --prompt-tokens ({})",
            args.shared_prefix_tokens,
            args.prompt_tokens
        );
    }
    let endpoint = Endpoint::parse(&args.base_url)?;
    let model = match args.model {
        Some(model) => model,
        None => endpoint.first_model_id().await?,
    };
    let settings = RunSettings {
        base_url: args.base_url,
        model,
        concurrency: args.concurrency,
        requests,
        prompt_tokens: args.prompt_tokens,
        shared_prefix_tokens: args.shared_prefix_tokens,
        max_tokens: args.max_tokens,
        warmup: args.warmup,
        seed: args.seed,
        json_object: args.json_object,
    };
    let prompts = PromptBuilder::new(args.seed, args.prompt_tokens, args.shared_prefix_tokens);

    warm_up(&endpoint, &settings, &prompts).await?;
    let records = measure(Arc::new(Workload { endpoint, settings: settings.clone(), prompts })).await?;
    let report = Report::from_records(settings, &records);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(report)
}

/// Everything the measuring workers share.
struct Workload {
    endpoint: Endpoint,
    settings: RunSettings,
    prompts: PromptBuilder,
}

impl Workload {
    async fn send(&self, request_index: usize) -> RequestRecord {
        let prompt = self.prompts.prompt(request_index as u64);
        let chat = ChatRequest::new(&self.settings, &prompt);
        self.endpoint.stream_chat_completion(&chat).await
    }
}

/// Sends the warmup requests one by one, with prompts numbered after the measured ones so none is cached twice.
async fn warm_up(endpoint: &Endpoint, settings: &RunSettings, prompts: &PromptBuilder) -> anyhow::Result<()> {
    for warmup_index in 0..settings.warmup {
        let prompt = prompts.prompt((settings.requests + warmup_index) as u64);
        let chat = ChatRequest::new(settings, &prompt);
        if let Err(Failure::Failed(message) | Failure::Rejected(message)) =
            endpoint.stream_chat_completion(&chat).await.result
        {
            bail!("warmup request {} of {} failed: {message}", warmup_index + 1, settings.warmup);
        }
    }
    Ok(())
}

/// Runs the measured requests with `concurrency` workers pulling request numbers from one counter.
async fn measure(workload: Arc<Workload>) -> anyhow::Result<Vec<RequestRecord>> {
    let requests = workload.settings.requests;
    let next_request = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Progress::new(requests));
    let workers: Vec<_> = (0..workload.settings.concurrency.min(requests))
        .map(|_| {
            let (workload, next_request, progress) = (workload.clone(), next_request.clone(), progress.clone());
            tokio::spawn(async move {
                let mut records = Vec::new();
                loop {
                    let request_index = next_request.fetch_add(1, Ordering::Relaxed);
                    if request_index >= requests {
                        return records;
                    }
                    let record = workload.send(request_index).await;
                    progress.record(record.result.is_ok());
                    records.push(record);
                }
            })
        })
        .collect();
    let mut records = Vec::with_capacity(requests);
    for worker in workers {
        records.extend(worker.await.context("benchmark worker panicked")?);
    }
    progress.finish();
    Ok(records)
}
