//! The HTTP side: one hyper HTTP/1.1 connection per request, streamed chat completions timed chunk by chunk.
//!
//! A fresh connection per request keeps every request independent (no pool to share or queue behind), and
//! `TCP_NODELAY` keeps small SSE chunks from being held back, so the timings are the server's.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::report::RunSettings;
use crate::sse::{SseEvent, SseParser};

/// An `http://host[:port][/prefix]` base URL, split into what a raw HTTP/1.1 connection needs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port` to connect to and to send as the `Host` header.
    authority: String,
    /// Path prefix without a trailing slash, e.g. `/v1`.
    path_prefix: String,
}

impl Endpoint {
    /// Parses a base URL such as `http://127.0.0.1:8080/v1`; only plain `http://` is supported.
    pub fn parse(base_url: &str) -> anyhow::Result<Self> {
        let uri: Uri = base_url.parse().with_context(|| format!("invalid --base-url {base_url:?}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!("--base-url {base_url:?}: https is not supported, use an http:// URL"),
            _ => bail!("--base-url {base_url:?} must start with http://"),
        }
        let authority = uri.authority().with_context(|| format!("--base-url {base_url:?} has no host"))?;
        let authority = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
        let path_prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self { authority, path_prefix })
    }

    /// `GET {base}/models` and returns the first model id.
    pub async fn first_model_id(&self) -> anyhow::Result<String> {
        let url = format!("{}/models", self.path_prefix);
        let response = self.send(Method::GET, &url, Bytes::new()).await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.with_context(|| format!("GET {url}"))?.to_bytes();
        if status != StatusCode::OK {
            bail!("GET {url} returned {status}: {}", error_message(&body));
        }
        let models: Value = serde_json::from_slice(&body).with_context(|| format!("GET {url}: body is not JSON"))?;
        models["data"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("GET {url} lists no models; pass --model"))
    }

    /// Sends one streaming chat completion and times it; never fails, failures are part of the outcome.
    pub async fn stream_chat_completion(&self, chat: &ChatRequest<'_>) -> RequestRecord {
        let started = Instant::now();
        let result = self.timed_stream(chat, started).await;
        RequestRecord { started, finished: Instant::now(), result }
    }

    async fn timed_stream(&self, chat: &ChatRequest<'_>, started: Instant) -> Result<CompletedRequest, Failure> {
        let url = format!("{}/chat/completions", self.path_prefix);
        let response =
            self.send(Method::POST, &url, chat.body()).await.map_err(|e| Failure::Failed(format!("{e:#}")))?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let message = format!("HTTP {status}: {}", error_message(&body));
            return Err(if status == StatusCode::TOO_MANY_REQUESTS {
                Failure::Rejected(message)
            } else {
                Failure::Failed(message)
            });
        }
        read_stream(response.into_body(), started).await.map_err(Failure::Failed)
    }

    async fn send(&self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Response<Incoming>> {
        let stream =
            TcpStream::connect(&self.authority).await.with_context(|| format!("connect {}", self.authority))?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The driver ends when the response body is finished or dropped; its error, if any, reaches `sender` too.
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        Ok(sender.send_request(request).await?)
    }
}

/// What every chat request of a run shares; only the prompt text differs.
#[derive(Debug, Clone)]
pub struct ChatRequest<'a> {
    /// Model id sent in the request.
    pub model: &'a str,
    /// The single user message.
    pub prompt: &'a str,
    /// Output tokens to generate (the server is asked to ignore EOS, so exactly this many unless a
    /// structured output completes first).
    pub max_tokens: usize,
    /// Ask for `response_format: json_object`.
    pub json_object: bool,
}

impl<'a> ChatRequest<'a> {
    /// The request of a run with `settings` for `prompt`.
    pub fn new(settings: &'a RunSettings, prompt: &'a str) -> Self {
        Self { model: &settings.model, prompt, max_tokens: settings.max_tokens, json_object: settings.json_object }
    }

    fn body(&self) -> Bytes {
        let mut body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": self.prompt}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "ignore_eos": true,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if self.json_object {
            body["response_format"] = json!({"type": "json_object"});
        }
        Bytes::from(body.to_string())
    }
}

/// One request's timings and its outcome.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the request started (before connecting).
    pub started: Instant,
    /// When the stream ended or the request failed.
    pub finished: Instant,
    /// The measurements, or why there are none.
    pub result: Result<CompletedRequest, Failure>,
}

/// Measurements of a request whose stream ran to `[DONE]`.
#[derive(Debug, Clone)]
pub struct CompletedRequest {
    /// Request start to the first chunk with non-empty content.
    pub ttft: Duration,
    /// Gaps between consecutive content chunks.
    pub inter_token_latencies: Vec<Duration>,
    /// Request start to the end of the stream.
    pub end_to_end: Duration,
    /// Prompt tokens as counted by the server (from the usage chunk), if it sent one.
    pub prompt_tokens: Option<u64>,
    /// `usage.completion_tokens`, or the number of content chunks if the server sent no usage.
    pub output_tokens: u64,
}

/// Why a request produced no measurements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered 429: admission control turned the request away.
    Rejected(String),
    /// Anything else: connection error, non-200 status, an `error` chunk, a malformed or truncated stream.
    Failed(String),
}

async fn read_stream(mut body: Incoming, started: Instant) -> Result<CompletedRequest, String> {
    let mut parser = SseParser::default();
    let mut stream = StreamTimings::default();
    while !stream.saw_done {
        let Some(frame) = body.frame().await else {
            // Body over: a last event without its closing blank line still counts.
            if let Some(event) = parser.finish() {
                stream.accept(event, Instant::now())?;
            }
            break;
        };
        let frame = frame.map_err(|e| format!("reading stream: {e}"))?;
        let Ok(bytes) = frame.into_data() else { continue };
        let arrived = Instant::now();
        for event in parser.push(&bytes) {
            stream.accept(event, arrived)?;
        }
    }
    stream.complete(started)
}

/// What a stream has shown so far: when content arrived, the usage chunk, and whether `[DONE]` came.
#[derive(Debug, Default)]
struct StreamTimings {
    content_times: Vec<Instant>,
    /// `(prompt_tokens, completion_tokens)` from the usage chunk.
    usage: Option<(u64, u64)>,
    saw_done: bool,
}

impl StreamTimings {
    /// Takes one event that arrived at `arrived`; an `error` chunk or malformed JSON fails the request.
    fn accept(&mut self, event: SseEvent, arrived: Instant) -> Result<(), String> {
        let data = match event {
            SseEvent::Done => {
                self.saw_done = true;
                return Ok(());
            }
            // Events after [DONE] in the same frame are not part of the stream.
            SseEvent::Data(_) if self.saw_done => return Ok(()),
            SseEvent::Data(data) => data,
        };
        let chunk: Value = serde_json::from_str(&data).map_err(|e| format!("chunk is not JSON ({e}): {data}"))?;
        if let Some(error) = chunk.get("error") {
            return Err(format!("error chunk: {}", error_value_message(error)));
        }
        let content = chunk["choices"][0]["delta"]["content"].as_str().unwrap_or_default();
        if !content.is_empty() {
            self.content_times.push(arrived);
        }
        if let Some(counts) = usage_counts(&chunk["usage"]) {
            self.usage = Some(counts);
        }
        Ok(())
    }

    fn complete(self, started: Instant) -> Result<CompletedRequest, String> {
        if !self.saw_done {
            return Err("stream ended without data: [DONE]".to_owned());
        }
        let Some(&first) = self.content_times.first() else {
            return Err("stream had no content chunks".to_owned());
        };
        Ok(CompletedRequest {
            ttft: first - started,
            inter_token_latencies: self.content_times.windows(2).map(|pair| pair[1] - pair[0]).collect(),
            end_to_end: started.elapsed(),
            prompt_tokens: self.usage.map(|(prompt, _)| prompt),
            output_tokens: self.usage.map_or(self.content_times.len() as u64, |(_, completion)| completion),
        })
    }
}

/// `(prompt_tokens, completion_tokens)` of a `usage` object; `None` when absent or `null`.
fn usage_counts(usage: &Value) -> Option<(u64, u64)> {
    Some((usage["prompt_tokens"].as_u64()?, usage["completion_tokens"].as_u64()?))
}

/// The `error.message` of an OpenAI error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) if value.get("error").is_some() => error_value_message(&value["error"]),
        _ => String::from_utf8_lossy(body).trim().chars().take(200).collect(),
    }
}

fn error_value_message(error: &Value) -> String {
    error["message"].as_str().map_or_else(|| error.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parses_host_port_and_prefix() {
        let endpoint = Endpoint::parse("http://127.0.0.1:8080/v1/").unwrap();
        assert_eq!((endpoint.authority.as_str(), endpoint.path_prefix.as_str()), ("127.0.0.1:8080", "/v1"));
        let endpoint = Endpoint::parse("http://localhost").unwrap();
        assert_eq!((endpoint.authority.as_str(), endpoint.path_prefix.as_str()), ("localhost:80", ""));
    }

    #[test]
    fn endpoint_rejects_https_with_a_clear_message() {
        let error = Endpoint::parse("https://api.openai.com/v1").unwrap_err().to_string();
        assert!(error.contains("https is not supported"), "{error}");
        assert!(Endpoint::parse("127.0.0.1:8080").is_err());
    }

    #[test]
    fn error_message_prefers_openai_error_shape() {
        assert_eq!(error_message(br#"{"error":{"message":"queue full","type":"x"}}"#), "queue full");
        assert_eq!(error_message(b"plain text\n"), "plain text");
    }

    fn timings_of(events: &[&str]) -> Result<CompletedRequest, String> {
        let started = Instant::now();
        let mut stream = StreamTimings::default();
        for &event in events {
            let event = if event == "[DONE]" { SseEvent::Done } else { SseEvent::Data(event.to_owned()) };
            stream.accept(event, Instant::now())?;
        }
        stream.complete(started)
    }

    #[test]
    fn output_tokens_come_from_usage_or_else_content_chunks() {
        let content = r#"{"choices":[{"delta":{"content":"hi"}}]}"#;
        let role_only = r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#;
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#;
        let with_usage = timings_of(&[role_only, content, content, usage, "[DONE]"]).unwrap();
        assert_eq!((with_usage.prompt_tokens, with_usage.output_tokens), (Some(9), 4));
        assert_eq!(with_usage.inter_token_latencies.len(), 1);
        let without_usage = timings_of(&[content, content, content, "[DONE]"]).unwrap();
        assert_eq!((without_usage.prompt_tokens, without_usage.output_tokens), (None, 3));
    }

    #[test]
    fn error_chunks_missing_done_and_empty_streams_fail() {
        let error = timings_of(&[r#"{"error":{"message":"boom"}}"#]).unwrap_err();
        assert_eq!(error, "error chunk: boom");
        assert!(timings_of(&[r#"{"choices":[{"delta":{"content":"a"}}]}"#]).unwrap_err().contains("[DONE]"));
        assert!(timings_of(&["[DONE]"]).unwrap_err().contains("no content"));
        assert!(timings_of(&["not json"]).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn request_body_asks_for_exact_length_streamed_output_with_usage() {
        let body = ChatRequest { model: "m", prompt: " a b", max_tokens: 5, json_object: false }.body();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["messages"][0]["content"], " a b");
        assert_eq!((body["max_tokens"].as_u64(), body["ignore_eos"].as_bool()), (Some(5), Some(true)));
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}
