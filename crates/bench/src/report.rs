//! Folding per-request records into a [`Report`], and printing it as vLLM-style table.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::client::{Failure, RequestRecord};

/// The settings a run used, echoed in its report so a JSON result stands on its own.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// Base URL of the endpoint under test.
    pub base_url: String,
    /// Model id sent in every request.
    pub model: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Measured requests (warmup excluded).
    pub requests: usize,
    /// Requested approximate prompt length, in tokens.
    pub prompt_tokens: usize,
    /// Leading prompt tokens identical across requests.
    pub shared_prefix_tokens: usize,
    /// Output tokens requested per request.
    pub max_tokens: usize,
    /// Warmup requests run before measuring.
    pub warmup: usize,
    /// Seed of prompt generation.
    pub seed: u64,
    /// Whether requests ask for `response_format: json_object`.
    pub json_object: bool,
}

/// Results of one benchmark run. Latencies are in milliseconds, throughputs per second of the measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was run.
    pub settings: RunSettings,
    /// Requests whose stream ran to `[DONE]` with content.
    pub completed: usize,
    /// Requests that failed for any reason other than a 429.
    pub failed: usize,
    /// Requests the server turned away with 429.
    pub rejected: usize,
    /// Distinct error messages of failed and rejected requests, with how often each occurred.
    pub errors: BTreeMap<String, usize>,
    /// Mean server-counted prompt tokens over completed requests that reported usage; `None` if none did.
    pub mean_prompt_tokens: Option<f64>,
    /// Sum of output tokens over completed requests.
    pub total_output_tokens: u64,
    /// First request start to last request end, in seconds.
    pub duration_s: f64,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Prompt plus output tokens per second.
    pub total_token_throughput: f64,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Time to first token.
    pub ttft_ms: Option<LatencySummary>,
    /// Time per output token after the first, one sample per request.
    pub tpot_ms: Option<LatencySummary>,
    /// Inter-token latency, every gap of every request pooled.
    pub itl_ms: Option<LatencySummary>,
    /// End-to-end request latency.
    pub e2e_ms: Option<LatencySummary>,
}

/// Mean and nearest-rank percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The largest sample: a stall that touches few samples shows here, not in the percentiles.
    pub max: f64,
}

impl LatencySummary {
    /// Summarizes `samples`; `None` when there are none.
    pub fn from_durations(samples: impl IntoIterator<Item = Duration>) -> Option<Self> {
        let mut millis: Vec<f64> = samples.into_iter().map(|d| d.as_secs_f64() * 1e3).collect();
        if millis.is_empty() {
            return None;
        }
        millis.sort_by(f64::total_cmp);
        Some(Self {
            mean: millis.iter().sum::<f64>() / millis.len() as f64,
            p50: percentile(&millis, 50.0),
            p95: percentile(&millis, 95.0),
            p99: percentile(&millis, 99.0),
            max: millis[millis.len() - 1],
        })
    }
}

/// Nearest-rank percentile: the smallest sample with at least `p`% of the samples at or below it.
///
/// `sorted` must be non-empty and ascending.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    /// Aggregates the measured requests of a run.
    pub fn from_records(settings: RunSettings, records: &[RequestRecord]) -> Self {
        let duration = match (records.iter().map(|r| r.started).min(), records.iter().map(|r| r.finished).max()) {
            (Some(first_start), Some(last_end)) => last_end - first_start,
            _ => Duration::ZERO,
        };
        let duration_s = duration.as_secs_f64();
        let per_second = |amount: f64| if duration_s > 0.0 { amount / duration_s } else { 0.0 };

        let mut errors = BTreeMap::new();
        let (mut failed, mut rejected) = (0, 0);
        for record in records {
            let (counter, message) = match &record.result {
                Ok(_) => continue,
                Err(Failure::Rejected(message)) => (&mut rejected, message),
                Err(Failure::Failed(message)) => (&mut failed, message),
            };
            *counter += 1;
            *errors.entry(message.clone()).or_insert(0) += 1;
        }

        let completed: Vec<_> = records.iter().filter_map(|r| r.result.as_ref().ok()).collect();
        let prompt_counts: Vec<u64> = completed.iter().filter_map(|c| c.prompt_tokens).collect();
        let total_prompt_tokens: u64 = prompt_counts.iter().sum();
        let total_output_tokens: u64 = completed.iter().map(|c| c.output_tokens).sum();
        let mean_prompt_tokens =
            (!prompt_counts.is_empty()).then(|| total_prompt_tokens as f64 / prompt_counts.len() as f64);

        let time_per_output_token = completed
            .iter()
            .filter(|c| c.output_tokens > 1)
            .map(|c| c.end_to_end.saturating_sub(c.ttft).div_f64((c.output_tokens - 1) as f64));
        Self {
            settings,
            completed: completed.len(),
            failed,
            rejected,
            errors,
            mean_prompt_tokens,
            total_output_tokens,
            duration_s,
            output_throughput: per_second(total_output_tokens as f64),
            total_token_throughput: per_second((total_prompt_tokens + total_output_tokens) as f64),
            request_throughput: per_second(completed.len() as f64),
            ttft_ms: LatencySummary::from_durations(completed.iter().map(|c| c.ttft)),
            tpot_ms: LatencySummary::from_durations(time_per_output_token),
            itl_ms: LatencySummary::from_durations(completed.iter().flat_map(|c| c.inter_token_latencies.clone())),
            e2e_ms: LatencySummary::from_durations(completed.iter().map(|c| c.end_to_end)),
        }
    }
}

/// Width of the label column, as in vLLM's report.
const LABEL_WIDTH: usize = 41;
/// Width of the whole table.
const TABLE_WIDTH: usize = 50;
/// Error messages listed under the table at most; the JSON report has all of them.
const MAX_LISTED_ERRORS: usize = 5;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, label: &str, value: String| writeln!(f, "{label:<LABEL_WIDTH$}{value}");
        let settings = &self.settings;
        writeln!(f, "{:=^TABLE_WIDTH$}", " Serving Benchmark Result ")?;
        row(f, "Model:", settings.model.clone())?;
        row(f, "Concurrency / requests:", format!("{} / {}", settings.concurrency, settings.requests))?;
        row(f, "Successful / failed / rejected:", format!("{} / {} / {}", self.completed, self.failed, self.rejected))?;
        let mean_prompt = self.mean_prompt_tokens.map_or_else(|| "n/a (no usage)".to_owned(), |m| format!("{m:.1}"));
        row(f, "Mean prompt tokens:", mean_prompt)?;
        row(f, "Total output tokens:", self.total_output_tokens.to_string())?;
        row(f, "Benchmark duration (s):", format!("{:.2}", self.duration_s))?;
        row(f, "Output token throughput (tok/s):", format!("{:.2}", self.output_throughput))?;
        row(f, "Total token throughput (tok/s):", format!("{:.2}", self.total_token_throughput))?;
        row(f, "Request throughput (req/s):", format!("{:.2}", self.request_throughput))?;
        let sections = [
            ("Time to First Token", "TTFT", &self.ttft_ms),
            ("Time per Output Token (excl. 1st token)", "TPOT", &self.tpot_ms),
            ("Inter-token Latency", "ITL", &self.itl_ms),
            ("End-to-end Latency", "E2E", &self.e2e_ms),
        ];
        for (title, short, summary) in sections {
            writeln!(f, "{:-^TABLE_WIDTH$}", title)?;
            let values = summary.map_or_else(
                || "-".to_owned(),
                |s| format!("{:.2} / {:.2} / {:.2} / {:.2} / {:.2}", s.mean, s.p50, s.p95, s.p99, s.max),
            );
            row(f, &format!("Mean / P50 / P95 / P99 / Max {short} (ms):"), values)?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "{:-^TABLE_WIDTH$}", "Errors")?;
            for (message, count) in self.errors.iter().take(MAX_LISTED_ERRORS) {
                writeln!(f, "{count:>6} x {message}")?;
            }
            if self.errors.len() > MAX_LISTED_ERRORS {
                writeln!(
                    f,
                    "{:>6}   ... {} more distinct errors (see --json)",
                    "",
                    self.errors.len() - MAX_LISTED_ERRORS
                )?;
            }
        }
        write!(f, "{:=^TABLE_WIDTH$}", "")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::client::CompletedRequest;

    #[test]
    fn nearest_rank_percentiles_on_known_lists() {
        let one_to_hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        for (p, expected) in [(50.0, 50.0), (95.0, 95.0), (99.0, 99.0), (100.0, 100.0), (0.0, 1.0)] {
            assert_eq!(percentile(&one_to_hundred, p), expected, "p{p}");
        }
        let four = [10.0, 20.0, 30.0, 40.0];
        assert_eq!([50.0, 95.0, 99.0].map(|p| percentile(&four, p)), [20.0, 40.0, 40.0]);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
    }

    #[test]
    fn summary_sorts_and_converts_to_millis() {
        let samples = [30, 10, 20].map(Duration::from_millis);
        let summary = LatencySummary::from_durations(samples).unwrap();
        assert_eq!(summary, LatencySummary { mean: 20.0, p50: 20.0, p95: 30.0, p99: 30.0, max: 30.0 });
        assert_eq!(LatencySummary::from_durations([]), None);
    }

    fn settings() -> RunSettings {
        RunSettings {
            base_url: "http://127.0.0.1:1/v1".into(),
            model: "m".into(),
            concurrency: 2,
            requests: 3,
            prompt_tokens: 10,
            shared_prefix_tokens: 0,
            max_tokens: 5,
            warmup: 0,
            seed: 0,
            json_object: false,
        }
    }

    #[test]
    fn aggregates_counts_throughput_and_tpot() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let completed = CompletedRequest {
            ttft: ms(100),
            inter_token_latencies: vec![ms(10); 4],
            end_to_end: ms(500),
            prompt_tokens: Some(12),
            output_tokens: 5,
        };
        let records = [
            RequestRecord { started: start, finished: start + ms(500), result: Ok(completed.clone()) },
            RequestRecord { started: start + ms(500), finished: start + ms(1000), result: Ok(completed) },
            RequestRecord {
                started: start,
                finished: start + ms(1),
                result: Err(Failure::Rejected("HTTP 429 Too Many Requests: busy".into())),
            },
        ];
        let report = Report::from_records(settings(), &records);
        assert_eq!((report.completed, report.failed, report.rejected), (2, 0, 1));
        assert_eq!(report.errors.values().sum::<usize>(), 1);
        assert_eq!(report.mean_prompt_tokens, Some(12.0));
        assert_eq!(report.total_output_tokens, 10);
        assert!((report.duration_s - 1.0).abs() < 1e-9);
        assert!((report.output_throughput - 10.0).abs() < 1e-9);
        assert!((report.total_token_throughput - 34.0).abs() < 1e-9);
        assert!((report.tpot_ms.unwrap().mean - 100.0).abs() < 1e-9);
        assert!((report.itl_ms.unwrap().p99 - 10.0).abs() < 1e-9);
        let table = report.to_string();
        assert!(table.contains("Successful / failed / rejected:          2 / 0 / 1"), "{table}");
        assert!(
            table.contains("Mean / P50 / P95 / P99 / Max TTFT (ms):  100.00 / 100.00 / 100.00 / 100.00 / 100.00"),
            "{table}"
        );
    }

    #[test]
    fn empty_run_reports_zeros_not_nan() {
        let report = Report::from_records(settings(), &[]);
        assert_eq!((report.duration_s, report.output_throughput), (0.0, 0.0));
        assert!(report.ttft_ms.is_none() && report.mean_prompt_tokens.is_none());
        assert!(report.to_string().contains("Mean / P50 / P95 / P99 / Max E2E (ms):   -"));
    }
}
