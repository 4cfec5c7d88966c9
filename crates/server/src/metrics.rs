//! Prometheus metrics at `GET /metrics`, named `hearth_*` with vLLM's meanings (`vllm:` → `hearth_`), so
//! existing dashboards translate. Latencies are recorded once per request by [`RequestObserver`], which
//! sees the same token stream that streaming and non-streaming responses share.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use hearth_engine::EngineStats;
use hearth_protocol::{FinishReason, ModelState, Usage};

use crate::registry::catalog::Kind;
use crate::registry::Listing;

/// Latency buckets in seconds, as vLLM's TTFT/ITL histograms use.
const BUCKETS: [f64; 16] = [0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (count, bound) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// The series of one histogram, each line labelled with `labels` (`model_name="…"`).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (count, bound) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
            self.count, self.sum, self.count
        );
    }
}

/// Per-key usage.
#[derive(Debug, Default, Clone, Copy)]
struct KeyUsage {
    requests: u64,
    prompt_tokens: u64,
    generation_tokens: u64,
}

/// One model's finished requests.
#[derive(Debug, Default, Clone)]
struct ModelRecorded {
    success: BTreeMap<&'static str, u64>,
    failures: u64,
    prompt_tokens: u64,
    generation_tokens: u64,
    queue: Histogram,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
}

#[derive(Debug, Default, Clone)]
struct Recorded {
    /// By model id.
    models: BTreeMap<String, ModelRecorded>,
    rejected: u64,
    keys: BTreeMap<String, KeyUsage>,
    /// Responses by route (`unmatched` for unknown paths) and status.
    http: BTreeMap<(String, u16), u64>,
}

/// Everything `/metrics` reports beyond the engine's live counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// A plain mutex: held for a few additions per token, never across an await.
    recorded: Mutex<Recorded>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Counts a response of `route` (a route pattern such as `/v1/messages`) with `status`.
    pub fn response(&self, route: String, status: u16) {
        self.with(|r| *r.http.entry((route, status)).or_default() += 1);
    }

    /// Counts a request refused at admission (429).
    pub fn rejected(&self) {
        self.with(|r| r.rejected += 1);
    }

    /// The Prometheus text exposition: each model's engine, requests and memory (labelled `model_name`,
    /// as vLLM labels them), then the server's own counters.
    pub fn render(&self, models: &[Listing], budget: u64) -> String {
        let r = self.with(|r| r.clone());
        let mut out = String::new();
        let engines: Vec<(String, EngineStats)> =
            models.iter().filter_map(|m| Some((label(&m.entry.id), m.engine?))).collect();
        for (name, kind, help, value) in ENGINE_SERIES {
            header(&mut out, name, kind, help);
            for (model, stats) in &engines {
                let _ = writeln!(out, "{name}{{model_name=\"{model}\"}} {}", value(stats));
            }
        }
        // Every chat model has series from the start, so a rate over them never starts with a gap.
        let mut recorded = r.models.clone();
        for m in models.iter().filter(|m| m.entry.kind == Kind::Chat) {
            recorded.entry(m.entry.id.clone()).or_default();
        }
        let per_model: Vec<(String, &ModelRecorded)> = recorded.iter().map(|(id, m)| (label(id), m)).collect();
        for (name, help, value) in REQUEST_SERIES {
            header(&mut out, name, "counter", help);
            for (model, recorded) in &per_model {
                let _ = writeln!(out, "{name}{{model_name=\"{model}\"}} {}", value(recorded));
            }
        }
        header(&mut out, "hearth_request_success_total", "counter", "Finished requests by finish reason.");
        for (model, recorded) in &per_model {
            for reason in ["stop", "length"] {
                let count = recorded.success.get(reason).unwrap_or(&0);
                let _ = writeln!(
                    out,
                    "hearth_request_success_total{{model_name=\"{model}\",finished_reason=\"{reason}\"}} {count}"
                );
            }
        }
        for (name, help, histogram) in HISTOGRAMS {
            header(&mut out, name, "histogram", help);
            for (model, recorded) in &per_model {
                histogram(recorded).render(&mut out, name, &format!("model_name=\"{model}\""));
            }
        }
        render_models(&mut out, models, budget);
        header(
            &mut out,
            "hearth_requests_rejected_total",
            "counter",
            "Requests refused with 429 because the queue was full.",
        );
        let _ = writeln!(out, "hearth_requests_rejected_total {}", r.rejected);
        header(&mut out, "hearth_http_requests_total", "counter", "HTTP responses by endpoint and status.");
        for ((endpoint, status), count) in &r.http {
            let _ = writeln!(
                out,
                "hearth_http_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {count}",
                label(endpoint)
            );
        }
        header(&mut out, "hearth_key_requests_total", "counter", "Finished requests per API key name.");
        for (key, usage) in &r.keys {
            let _ = writeln!(out, "hearth_key_requests_total{{key=\"{}\"}} {}", label(key), usage.requests);
        }
        header(&mut out, "hearth_key_tokens_total", "counter", "Tokens per API key name and kind.");
        for (key, usage) in &r.keys {
            let key = label(key);
            let _ = writeln!(out, "hearth_key_tokens_total{{key=\"{key}\",kind=\"prompt\"}} {}", usage.prompt_tokens);
            let _ = writeln!(
                out,
                "hearth_key_tokens_total{{key=\"{key}\",kind=\"generation\"}} {}",
                usage.generation_tokens
            );
        }
        out
    }
}

/// Each servable model's state, memory, loads and unloads, and the budget they share.
fn render_models(out: &mut String, models: &[Listing], budget: u64) {
    header(out, "hearth_model_loaded", "gauge", "1 while the model is in memory, else 0.");
    for m in models {
        let loaded = u8::from(m.state == ModelState::Loaded);
        let _ = writeln!(out, "hearth_model_loaded{{model_name=\"{}\"}} {loaded}", label(&m.entry.id));
    }
    header(out, "hearth_model_memory_bytes", "gauge", "Memory a loaded model holds: weights and its KV cache pool.");
    for m in models.iter().filter(|m| m.state == ModelState::Loaded) {
        let _ = writeln!(
            out,
            "hearth_model_memory_bytes{{model_name=\"{}\"}} {}",
            label(&m.entry.id),
            m.memory.unwrap_or(0)
        );
    }
    header(out, "hearth_model_loads_total", "counter", "Model loads that succeeded.");
    for m in models {
        let _ = writeln!(out, "hearth_model_loads_total{{model_name=\"{}\"}} {}", label(&m.entry.id), m.counters.loads);
    }
    header(out, "hearth_model_load_failures_total", "counter", "Model loads that failed.");
    for m in models {
        let _ = writeln!(
            out,
            "hearth_model_load_failures_total{{model_name=\"{}\"}} {}",
            label(&m.entry.id),
            m.counters.failures
        );
    }
    header(
        out,
        "hearth_model_unloads_total",
        "counter",
        "Model unloads by reason: memory, count, idle, admin, stopped.",
    );
    for m in models {
        for (reason, count) in &m.counters.unloads {
            let _ = writeln!(
                out,
                "hearth_model_unloads_total{{model_name=\"{}\",reason=\"{reason}\"}} {count}",
                label(&m.entry.id)
            );
        }
    }
    header(out, "hearth_models_memory_budget_bytes", "gauge", "Memory the loaded models may hold together.");
    let _ = writeln!(out, "hearth_models_memory_budget_bytes {budget}");
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped (model ids are file names from anywhere).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

type EngineSeries = (&'static str, &'static str, &'static str, fn(&EngineStats) -> u64);

/// The engine's live counters, per loaded chat model.
const ENGINE_SERIES: [EngineSeries; 12] = [
    ("hearth_requests_running", "gauge", "Requests in the running batch.", |e| e.running as u64),
    ("hearth_requests_waiting", "gauge", "Requests admitted and waiting for a batch slot.", |e| e.waiting as u64),
    ("hearth_kv_cache_bytes", "gauge", "Bytes of KV cache blocks in use.", |e| e.kv_cache_bytes),
    ("hearth_kv_cache_blocks_used", "gauge", "KV cache blocks in use.", |e| e.kv_blocks_used),
    ("hearth_kv_cache_blocks_total", "gauge", "KV cache blocks in the pool.", |e| e.kv_blocks_total),
    ("hearth_constrained_tokens_total", "counter", "Tokens sampled under a structured-output constraint.", |e| {
        e.constrained_tokens
    }),
    (
        "hearth_constraint_mask_microseconds_total",
        "counter",
        "Time spent in structured-output constraints: computing and applying masks, advancing them.",
        |e| e.constraint_nanos / 1000,
    ),
    ("hearth_num_preemptions_total", "counter", "Sequences preempted for lack of KV blocks (recomputed later).", |e| {
        e.preemptions
    }),
    ("hearth_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.", |e| {
        e.prompt_tokens_queried
    }),
    ("hearth_prefix_cache_hits_total", "counter", "Prompt tokens served from the prefix cache.", |e| {
        e.prompt_tokens_cached
    }),
    ("hearth_batch_steps_total", "counter", "Forward steps run by the engine.", |e| e.steps),
    ("hearth_batch_tokens_total", "counter", "Tokens processed by forward steps (prompt and decode).", |e| {
        e.batch_tokens
    }),
];

type RequestSeries = (&'static str, &'static str, fn(&ModelRecorded) -> u64);

/// Counters of finished requests, per model.
const REQUEST_SERIES: [RequestSeries; 3] = [
    ("hearth_prompt_tokens_total", "Prompt tokens of finished requests.", |r| r.prompt_tokens),
    ("hearth_generation_tokens_total", "Generated tokens of finished requests.", |r| r.generation_tokens),
    ("hearth_request_failures_total", "Requests that failed after admission.", |r| r.failures),
];

type HistogramSeries = (&'static str, &'static str, fn(&ModelRecorded) -> &Histogram);

/// Latency histograms, per model.
const HISTOGRAMS: [HistogramSeries; 4] = [
    ("hearth_request_queue_time_seconds", "Time from request arrival to its admission.", |r| &r.queue),
    ("hearth_time_to_first_token_seconds", "Time from request arrival to its first token.", |r| &r.ttft),
    ("hearth_inter_token_latency_seconds", "Time between consecutive tokens of a request.", |r| &r.itl),
    ("hearth_e2e_request_latency_seconds", "Time from request arrival to its last token.", |r| &r.e2e),
];

/// Times one request's tokens and records them once it ends.
#[derive(Debug)]
pub struct RequestObserver {
    metrics: std::sync::Arc<Metrics>,
    model: String,
    key: Option<String>,
    arrived: Instant,
    last_token: Option<Instant>,
}

impl RequestObserver {
    /// Starts timing a request for `model` that arrived at `arrived`, authenticated with `key` (if auth
    /// is on).
    pub fn new(metrics: std::sync::Arc<Metrics>, model: &str, key: Option<String>, arrived: Instant) -> Self {
        Self { metrics, model: model.to_string(), key, arrived, last_token: None }
    }

    /// Applies `f` to this model's record; the id is copied only for the model's first record.
    fn record(&self, f: impl FnOnce(&mut ModelRecorded)) {
        self.metrics.with(|r| match r.models.get_mut(&self.model) {
            Some(recorded) => f(recorded),
            None => f(r.models.entry(self.model.clone()).or_default()),
        });
    }

    /// The engine admitted the request to its batch.
    pub fn admitted(&self) {
        let seconds = self.arrived.elapsed().as_secs_f64();
        self.record(|r| r.queue.observe(seconds));
    }

    /// A token arrived from the engine.
    pub fn token(&mut self) {
        let now = Instant::now();
        let since = self.last_token.unwrap_or(self.arrived);
        let seconds = now.duration_since(since).as_secs_f64();
        let first = self.last_token.is_none();
        self.record(|r| if first { r.ttft.observe(seconds) } else { r.itl.observe(seconds) });
        self.last_token = Some(now);
    }

    /// The request finished.
    pub fn finished(&self, reason: FinishReason, usage: Usage) {
        let e2e = self.arrived.elapsed().as_secs_f64();
        let reason = match reason {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
        };
        self.record(|r| {
            *r.success.entry(reason).or_default() += 1;
            r.prompt_tokens += u64::from(usage.prompt_tokens);
            r.generation_tokens += u64::from(usage.completion_tokens);
            r.e2e.observe(e2e);
        });
        self.metrics.with(|r| {
            if let Some(key) = &self.key {
                let entry = r.keys.entry(key.clone()).or_default();
                entry.requests += 1;
                entry.prompt_tokens += u64::from(usage.prompt_tokens);
                entry.generation_tokens += u64::from(usage.completion_tokens);
            }
        });
    }

    /// The request failed after admission.
    pub fn failed(&self) {
        self.record(|r| r.failures += 1);
    }
}
