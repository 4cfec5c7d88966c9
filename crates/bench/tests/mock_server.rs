//! `run()` against a hand-written OpenAI-compatible SSE server on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_bench::{run, BenchArgs};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Prompt tokens the mock reports in its usage chunk, whatever the prompt.
const MOCK_PROMPT_TOKENS: u64 = 11;
/// Content chunks (and completion tokens) the mock streams per request.
const MOCK_OUTPUT_TOKENS: u64 = 4;

/// How the mock answers one chat completion.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// 200 with a chunked SSE stream of content, a usage chunk and `[DONE]`, one write per chunk.
    Stream,
    /// 429 with an OpenAI error body.
    TooManyRequests,
    /// 200, then an `error` chunk in a `Connection: close` body.
    ErrorChunk,
}

/// One request as the mock received it.
#[derive(Debug)]
struct Received {
    head: String,
    body: String,
}

struct MockServer {
    base_url: String,
    chat_requests: Arc<Mutex<Vec<Received>>>,
}

/// Starts the mock; `reply_to` maps the 1-based arrival number of a chat request to its reply.
async fn start_mock(reply_to: fn(usize) -> Reply) -> MockServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let chat_requests = Arc::new(Mutex::new(Vec::new()));
    let arrivals = Arc::new(AtomicUsize::new(0));
    let received = chat_requests.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let (received, arrivals) = (received.clone(), arrivals.clone());
            tokio::spawn(async move { serve(socket, received, arrivals, reply_to).await });
        }
    });
    MockServer { base_url, chat_requests }
}

async fn serve(
    mut socket: TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    arrivals: Arc<AtomicUsize>,
    reply_to: fn(usize) -> Reply,
) {
    let request = read_request(&mut socket).await;
    if request.head.starts_with("GET /v1/models ") {
        let body = r#"{"object":"list","data":[{"id":"mock-model","object":"model"},{"id":"other","object":"model"}]}"#;
        write_with_length(&mut socket, "200 OK", body).await;
        return;
    }
    assert!(request.head.starts_with("POST /v1/chat/completions "), "{}", request.head);
    received.lock().unwrap().push(request);
    match reply_to(arrivals.fetch_add(1, Ordering::SeqCst) + 1) {
        Reply::Stream => write_chunked_stream(&mut socket).await,
        Reply::TooManyRequests => {
            let body = r#"{"error":{"message":"queue full","type":"rate_limit","code":429}}"#;
            write_with_length(&mut socket, "429 Too Many Requests", body).await;
        }
        Reply::ErrorChunk => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
            let body = "data: {\"error\":{\"message\":\"engine exploded\"}}\n\ndata: [DONE]\n\n";
            socket.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
        }
    }
    socket.shutdown().await.unwrap();
}

async fn read_request(socket: &mut TcpStream) -> Received {
    let mut bytes = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = socket.read(&mut buffer).await.unwrap();
        assert_ne!(read, 0, "client closed before sending a full request");
        bytes.extend_from_slice(&buffer[..read]);
        let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
        let content_length = head
            .lines()
            .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .map_or(0, |v| v.parse::<usize>().unwrap());
        if bytes.len() >= head_end + 4 + content_length {
            let body = String::from_utf8(bytes[head_end + 4..head_end + 4 + content_length].to_vec()).unwrap();
            return Received { head, body };
        }
    }
}

async fn write_with_length(socket: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await.unwrap();
}

/// A role chunk, content chunks, a finish chunk, the usage chunk and `[DONE]`, cut so that HTTP chunks split SSE lines.
async fn write_chunked_stream(socket: &mut TcpStream) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    let delta = |delta: &str| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{delta}}}]}}\n\n");
    let mut events = vec![delta(r#"{"role":"assistant","content":""}"#)];
    events.extend((0..MOCK_OUTPUT_TOKENS).map(|i| delta(&format!(r#"{{"content":" word{i}"}}"#))));
    events.push("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n".to_owned());
    events.push(format!(
        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{MOCK_PROMPT_TOKENS},\"completion_tokens\":{MOCK_OUTPUT_TOKENS}}}}}\n\n"
    ));
    events.push("data: [DONE]\n\n".to_owned());
    let stream = events.concat();
    // Uneven pieces: most cut through the middle of a `data:` line or its closing blank line.
    for piece in stream.as_bytes().chunks(37) {
        let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        socket.write_all(&chunk).await.unwrap();
        socket.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    socket.write_all(b"0\r\n\r\n").await.unwrap();
}

fn args(base_url: &str, concurrency: usize, requests: usize) -> BenchArgs {
    BenchArgs {
        base_url: base_url.to_owned(),
        model: None,
        concurrency,
        requests: Some(requests),
        prompt_tokens: 24,
        max_tokens: MOCK_OUTPUT_TOKENS as usize,
        shared_prefix_tokens: 8,
        warmup: 1,
        seed: 5,
        json: false,
        json_object: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_tokens_and_requests_of_a_clean_run() {
    let mock = start_mock(|_| Reply::Stream).await;
    let report = run(args(&mock.base_url, 3, 7)).await.unwrap();

    assert_eq!(report.settings.model, "mock-model");
    assert_eq!((report.completed, report.failed, report.rejected), (7, 0, 0));
    assert!(report.errors.is_empty());
    assert_eq!(report.mean_prompt_tokens, Some(MOCK_PROMPT_TOKENS as f64));
    assert_eq!(report.total_output_tokens, 7 * MOCK_OUTPUT_TOKENS);
    assert!(report.duration_s > 0.0 && report.output_throughput > 0.0);
    let expected_total = 7.0 * (MOCK_PROMPT_TOKENS + MOCK_OUTPUT_TOKENS) as f64 / report.duration_s;
    assert!((report.total_token_throughput - expected_total).abs() < 1e-6);
    for summary in [report.ttft_ms, report.tpot_ms, report.itl_ms, report.e2e_ms] {
        let summary = summary.expect("every latency has samples");
        assert!(summary.p50 <= summary.p95 && summary.p95 <= summary.p99);
    }

    let requests = mock.chat_requests.lock().unwrap();
    assert_eq!(requests.len(), 1 + 7, "one warmup plus the measured requests");
    let host = mock.base_url.trim_start_matches("http://").trim_end_matches("/v1");
    let mut prompts = Vec::new();
    for request in requests.iter() {
        let head = request.head.to_ascii_lowercase();
        assert!(head.contains(&format!("\r\nhost: {host}\r\n")), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["model"], "mock-model");
        assert_eq!((body["stream"].as_bool(), body["ignore_eos"].as_bool()), (Some(true), Some(true)));
        assert_eq!((body["temperature"].as_u64(), body["max_tokens"].as_u64()), (Some(0), Some(MOCK_OUTPUT_TOKENS)));
        assert_eq!(body["stream_options"]["include_usage"], true);
        let prompt = body["messages"][0]["content"].as_str().unwrap().to_owned();
        assert_eq!(prompt.split(' ').skip(1).count(), 24);
        prompts.push(prompt);
    }
    let prefix = |p: &String| p.split(' ').take(9).collect::<Vec<_>>().join(" ");
    assert!(prompts.iter().all(|p| prefix(p) == prefix(&prompts[0])), "8 shared words");
    prompts.sort();
    prompts.dedup();
    assert_eq!(prompts.len(), 8, "every request has its own remainder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separates_rejected_from_failed_requests() {
    // Arrival 1 is the warmup; of the nine measured ones, a third each is rejected, fails, succeeds.
    let mock = start_mock(|arrival| match arrival % 3 {
        _ if arrival == 1 => Reply::Stream,
        2 => Reply::TooManyRequests,
        0 => Reply::ErrorChunk,
        _ => Reply::Stream,
    })
    .await;
    let report =
        run(BenchArgs { model: Some("chosen".into()), json: true, ..args(&mock.base_url, 2, 9) }).await.unwrap();

    assert_eq!(report.settings.model, "chosen");
    assert_eq!((report.completed, report.failed, report.rejected), (3, 3, 3));
    assert_eq!(report.errors.get("HTTP 429 Too Many Requests: queue full"), Some(&3));
    assert_eq!(report.errors.get("error chunk: engine exploded"), Some(&3));
    assert_eq!(report.total_output_tokens, 3 * MOCK_OUTPUT_TOKENS);
    let json: Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rejected"], 3);
    assert!(json["ttft_ms"]["p99"].is_number());
}

#[tokio::test]
async fn refuses_https_and_a_failing_warmup() {
    let error = run(args("https://127.0.0.1:1/v1", 1, 1)).await.unwrap_err().to_string();
    assert!(error.contains("https is not supported"), "{error}");

    let mock = start_mock(|_| Reply::TooManyRequests).await;
    let error = run(args(&mock.base_url, 1, 1)).await.unwrap_err().to_string();
    assert!(error.contains("warmup request 1 of 1 failed: HTTP 429"), "{error}");
}
