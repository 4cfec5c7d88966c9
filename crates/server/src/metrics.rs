//! Prometheus metrics at `GET /metrics`, named `hearth_*` with vLLM's meanings (`vllm:` → `hearth_`), so
//! existing dashboards translate. Latencies are recorded once per request by [`RequestObserver`], which
//! sees the same token stream that streaming and non-streaming responses share.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use hearth_engine::EngineStats;
use hearth_protocol::{FinishReason, Usage};

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

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (count, bound) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
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

#[derive(Debug, Default, Clone)]
struct Recorded {
    success: BTreeMap<&'static str, u64>,
    failures: u64,
    rejected: u64,
    prompt_tokens: u64,
    generation_tokens: u64,
    queue: Histogram,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
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

    /// The Prometheus text exposition, with the engine's gauges.
    pub fn render(&self, engine: EngineStats) -> String {
        let r = self.with(|r| r.clone());
        let mut out = String::new();
        let samples: [(&str, &str, &str, u64); 16] = [
            ("hearth_requests_running", "gauge", "Requests in the running batch.", engine.running as u64),
            (
                "hearth_requests_waiting",
                "gauge",
                "Requests admitted and waiting for a batch slot.",
                engine.waiting as u64,
            ),
            ("hearth_kv_cache_bytes", "gauge", "Bytes of KV cache blocks in use.", engine.kv_cache_bytes),
            ("hearth_kv_cache_blocks_used", "gauge", "KV cache blocks in use.", engine.kv_blocks_used),
            (
                "hearth_constrained_tokens_total",
                "counter",
                "Tokens sampled under a structured-output constraint.",
                engine.constrained_tokens,
            ),
            (
                "hearth_constraint_mask_microseconds_total",
                "counter",
                "Time spent in structured-output constraints: computing and applying masks, advancing them.",
                engine.constraint_nanos / 1000,
            ),
            ("hearth_kv_cache_blocks_total", "gauge", "KV cache blocks in the pool.", engine.kv_blocks_total),
            (
                "hearth_num_preemptions_total",
                "counter",
                "Sequences preempted for lack of KV blocks (recomputed later).",
                engine.preemptions,
            ),
            (
                "hearth_prefix_cache_queries_total",
                "counter",
                "Prompt tokens looked up in the prefix cache.",
                engine.prompt_tokens_queried,
            ),
            (
                "hearth_prefix_cache_hits_total",
                "counter",
                "Prompt tokens served from the prefix cache.",
                engine.prompt_tokens_cached,
            ),
            ("hearth_batch_steps_total", "counter", "Forward steps run by the engine.", engine.steps),
            (
                "hearth_batch_tokens_total",
                "counter",
                "Tokens processed by forward steps (prompt and decode).",
                engine.batch_tokens,
            ),
            ("hearth_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", r.prompt_tokens),
            (
                "hearth_generation_tokens_total",
                "counter",
                "Generated tokens of finished requests.",
                r.generation_tokens,
            ),
            ("hearth_request_failures_total", "counter", "Requests that failed after admission.", r.failures),
            (
                "hearth_requests_rejected_total",
                "counter",
                "Requests refused with 429 because the queue was full.",
                r.rejected,
            ),
        ];
        for (name, kind, help, value) in samples {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        let _ = writeln!(out, "# HELP hearth_request_success_total Finished requests by finish reason.\n# TYPE hearth_request_success_total counter");
        for reason in ["stop", "length"] {
            let _ = writeln!(
                out,
                "hearth_request_success_total{{finished_reason=\"{reason}\"}} {}",
                r.success.get(reason).unwrap_or(&0)
            );
        }
        r.queue.render(&mut out, "hearth_request_queue_time_seconds", "Time from request arrival to its admission.");
        r.ttft.render(&mut out, "hearth_time_to_first_token_seconds", "Time from request arrival to its first token.");
        r.itl.render(&mut out, "hearth_inter_token_latency_seconds", "Time between consecutive tokens of a request.");
        r.e2e.render(&mut out, "hearth_e2e_request_latency_seconds", "Time from request arrival to its last token.");
        let _ = writeln!(out, "# HELP hearth_http_requests_total HTTP responses by endpoint and status.\n# TYPE hearth_http_requests_total counter");
        for ((endpoint, status), count) in &r.http {
            let _ = writeln!(out, "hearth_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {count}");
        }
        let _ = writeln!(out, "# HELP hearth_key_requests_total Finished requests per API key name.\n# TYPE hearth_key_requests_total counter");
        for (key, usage) in &r.keys {
            let _ = writeln!(out, "hearth_key_requests_total{{key=\"{key}\"}} {}", usage.requests);
        }
        let _ = writeln!(
            out,
            "# HELP hearth_key_tokens_total Tokens per API key name and kind.\n# TYPE hearth_key_tokens_total counter"
        );
        for (key, usage) in &r.keys {
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

/// Times one request's tokens and records them once it ends.
#[derive(Debug)]
pub struct RequestObserver {
    metrics: std::sync::Arc<Metrics>,
    key: Option<String>,
    arrived: Instant,
    last_token: Option<Instant>,
}

impl RequestObserver {
    /// Starts timing a request that arrived at `arrived`, authenticated with `key` (if auth is on).
    pub fn new(metrics: std::sync::Arc<Metrics>, key: Option<String>, arrived: Instant) -> Self {
        Self { metrics, key, arrived, last_token: None }
    }

    /// The engine admitted the request to its batch.
    pub fn admitted(&self) {
        let seconds = self.arrived.elapsed().as_secs_f64();
        self.metrics.with(|r| r.queue.observe(seconds));
    }

    /// A token arrived from the engine.
    pub fn token(&mut self) {
        let now = Instant::now();
        let since = self.last_token.unwrap_or(self.arrived);
        let seconds = now.duration_since(since).as_secs_f64();
        let first = self.last_token.is_none();
        self.metrics.with(|r| if first { r.ttft.observe(seconds) } else { r.itl.observe(seconds) });
        self.last_token = Some(now);
    }

    /// The request finished.
    pub fn finished(&self, reason: FinishReason, usage: Usage) {
        let e2e = self.arrived.elapsed().as_secs_f64();
        self.metrics.with(|r| {
            let reason = match reason {
                FinishReason::Stop => "stop",
                FinishReason::Length => "length",
                FinishReason::ToolCalls => "tool_calls",
            };
            *r.success.entry(reason).or_default() += 1;
            r.prompt_tokens += u64::from(usage.prompt_tokens);
            r.generation_tokens += u64::from(usage.completion_tokens);
            r.e2e.observe(e2e);
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
        self.metrics.with(|r| r.failures += 1);
    }
}
