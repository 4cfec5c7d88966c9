//! Running Hearth safely: auth, limits, overload, metrics, logs and shutdown, on the tiny model.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hearth_server::ServeOptions;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{body_text, call, call_with, captured_logs, tiny_state, tiny_state_with};

const MODEL: &str = "tiny-llama";

fn chat_body(max_tokens: u32, stream: bool) -> String {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens,
           "ignore_eos": true, "stream": stream})
    .to_string()
}

fn request(method: &str, path: &str, key: Option<&str>, body: Option<String>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    builder.body(body.map_or_else(Body::empty, Body::from)).unwrap()
}

#[tokio::test]
async fn every_route_but_the_probes_needs_the_key() {
    let state = tiny_state_with(|c| c.server.api_keys = vec!["sk-right".into()]);
    let message = json!({"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let routes: [(&str, &str, Option<String>, StatusCode); 15] = [
        (
            "POST",
            "/v1/responses",
            Some(json!({"model": MODEL, "input": "a", "max_output_tokens": 2}).to_string()),
            StatusCode::OK,
        ),
        ("GET", "/v1/responses/resp_none", None, StatusCode::NOT_FOUND),
        ("DELETE", "/v1/responses/resp_none", None, StatusCode::NOT_FOUND),
        ("POST", "/v1/messages", Some(message.to_string()), StatusCode::OK),
        ("POST", "/v1/messages/count_tokens", Some(message.to_string()), StatusCode::OK),
        ("POST", "/v1/chat/completions", Some(chat_body(2, false)), StatusCode::OK),
        (
            "POST",
            "/v1/completions",
            Some(json!({"model": MODEL, "prompt": "a", "max_tokens": 2}).to_string()),
            StatusCode::OK,
        ),
        // The tiny app serves no embedding model: past auth, the model is unknown.
        ("POST", "/v1/embeddings", Some(json!({"model": "e", "input": "a"}).to_string()), StatusCode::NOT_FOUND),
        ("POST", "/tokenize", Some(json!({"prompt": "a"}).to_string()), StatusCode::OK),
        ("POST", "/detokenize", Some(json!({"tokens": [1]}).to_string()), StatusCode::OK),
        ("GET", "/v1/models", None, StatusCode::OK),
        ("GET", "/v1/models/tiny-llama", None, StatusCode::OK),
        ("GET", "/metrics", None, StatusCode::OK),
        ("GET", "/v1/nowhere", None, StatusCode::NOT_FOUND),
        ("POST", "/v1/models", None, StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, path, body, allowed) in routes {
        for key in [None, Some("sk-wrong"), Some("sk-righ"), Some("SK-RIGHT")] {
            let response = call_with(&state, request(method, path, key, body.clone())).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}");
            let error: Value = serde_json::from_str(&body_text(response).await).unwrap();
            assert_eq!(error["error"]["type"], "authentication_error");
            if !path.starts_with("/v1/messages") {
                assert_eq!(error["error"]["code"], "invalid_api_key");
            }
        }
        let response = call_with(&state, request(method, path, Some("sk-right"), body.clone())).await;
        assert_eq!(response.status(), allowed, "{method} {path} with the right key");
    }
    for probe in ["/health", "/ready"] {
        assert_eq!(call_with(&state, request("GET", probe, None, None)).await.status(), StatusCode::OK, "{probe}");
    }
}

#[tokio::test]
async fn an_oversized_body_is_a_413_error_object() {
    let huge = format!(
        "{{\"model\": \"{MODEL}\", \"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}",
        "a".repeat(5 << 20)
    );
    let (status, text) = call(&tiny_state(), "POST", "/v1/chat/completions", Some(&huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let state = tiny_state_with(|c| {
        c.engine.limits.max_running = 1;
        c.engine.limits.max_waiting = 1;
    });
    // Two long generations take the only running slot and the only waiting slot.
    let busy: Vec<_> = (0..2)
        .map(|_| call_with(&state, request("POST", "/v1/chat/completions", None, Some(chat_body(480, true)))))
        .collect();
    let busy = futures_util_join(busy).await;
    assert!(busy.iter().all(|r| r.status() == StatusCode::OK));
    let response = call_with(&state, request("POST", "/v1/chat/completions", None, Some(chat_body(2, false)))).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let error: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    let metrics = call(&state, "GET", "/metrics", None).await.1;
    assert!(metrics.contains("hearth_requests_rejected_total 1"), "{metrics}");
    drop(busy);
}

async fn futures_util_join(
    requests: Vec<impl std::future::Future<Output = axum::response::Response>>,
) -> Vec<axum::response::Response> {
    let mut out = Vec::new();
    for r in requests {
        out.push(r.await);
    }
    out
}

/// Reads `name`'s value (the first sample line that starts with it) from Prometheus text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
}

#[tokio::test]
async fn metrics_count_known_requests() {
    let state = tiny_state_with(|c| c.server.api_keys = vec!["sk-a".into()]);
    let before = body_text(call_with(&state, request("GET", "/metrics", Some("sk-a"), None)).await).await;
    let mut prompt = 0.0;
    for _ in 0..3 {
        let response =
            call_with(&state, request("POST", "/v1/chat/completions", Some("sk-a"), Some(chat_body(5, false)))).await;
        let body: Value = serde_json::from_str(&body_text(response).await).unwrap();
        prompt += body["usage"]["prompt_tokens"].as_f64().unwrap();
    }
    let after = body_text(call_with(&state, request("GET", "/metrics", Some("sk-a"), None)).await).await;
    let delta = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(delta("hearth_generation_tokens_total"), 15.0);
    assert_eq!(delta("hearth_prompt_tokens_total"), prompt);
    let (model, _) = crate::util::served_ids(&state);
    let length = format!("hearth_request_success_total{{model_name=\"{model}\",finished_reason=\"length\"}}");
    assert_eq!(delta(&length), 3.0);
    assert_eq!(delta("hearth_time_to_first_token_seconds_count"), 3.0);
    assert_eq!(delta("hearth_request_queue_time_seconds_count"), 3.0);
    assert_eq!(delta("hearth_inter_token_latency_seconds_count"), 12.0);
    assert_eq!(sample(&after, "hearth_key_requests_total{key=\"key-1\"}"), 3.0);
    assert!(!after.contains("sk-a"), "metrics never show a key");
    for line in after.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a Prometheus sample: {line}");
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let state = tiny_state();
    let mut given = request("GET", "/v1/models", None, None);
    given.headers_mut().insert("x-request-id", "trace-42".parse().unwrap());
    assert_eq!(call_with(&state, given).await.headers()["x-request-id"], "trace-42");
    let made = call_with(&state, request("GET", "/v1/models", None, None)).await;
    assert_eq!(made.headers()["x-request-id"].len(), 24);
}

/// Sends one chat whose prompt is `marker`, tagged with request id `marker`; returns the logs so far.
async fn logs_after_chat(log_content: bool, marker: &str) -> String {
    let state = tiny_state_with(|c| c.server.log_content = log_content);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": marker}], "max_tokens": 3});
    let mut chat = request("POST", "/v1/chat/completions", None, Some(body.to_string()));
    chat.headers_mut().insert("x-request-id", format!("id-{marker}").parse().unwrap());
    let response = call_with(&state, chat).await;
    assert_eq!(response.status(), StatusCode::OK);
    let _ = body_text(response).await;
    captured_logs()
}

#[tokio::test]
async fn prompts_are_never_logged_unless_asked() {
    let quiet = logs_after_chat(false, "PRIVATE-PATIENT-7731").await;
    assert!(quiet.contains("id-PRIVATE-PATIENT-7731"), "the request itself is logged, by id");
    assert!(
        !quiet.contains("content: \"PRIVATE-PATIENT-7731") && !quiet.contains("\"PRIVATE-PATIENT-7731\""),
        "the prompt leaked into the logs"
    );
    let loud = logs_after_chat(true, "PRIVATE-PATIENT-9902").await;
    assert!(loud.contains("\"PRIVATE-PATIENT-9902\""), "--log-content logs the prompt");
}

/// Sends a streaming chat over a real socket; returns the reader once the first event arrived.
async fn open_stream(address: std::net::SocketAddr, max_tokens: u32) -> (tokio::net::TcpStream, Vec<u8>) {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = chat_body(max_tokens, true);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut received = vec![0u8; 4096];
    let n = socket.read(&mut received).await.unwrap();
    received.truncate(n);
    (socket, received)
}

async fn read_rest(mut socket: tokio::net::TcpStream, mut received: Vec<u8>) -> String {
    tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut received)).await.unwrap().unwrap();
    String::from_utf8_lossy(&received).into_owned()
}

/// Serves the tiny model on 127.0.0.1 with `grace`, runs 4 streams, and shuts down while they run.
async fn shutdown_during_streams(grace: Duration) -> Vec<String> {
    let state = tiny_state_with(|c| c.engine.limits.max_batch_tokens = 4);
    let lifecycle = state.lifecycle.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hearth_server::serve(
        listener,
        hearth_server::app(state),
        async move {
            let _ = stopped.await;
            tokio::spawn(lifecycle.drain(grace));
        },
        ServeOptions::plain(Duration::from_secs(30)),
    ));
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(open_stream(address, 480).await);
    }
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "new connections are refused while draining");
    let mut bodies = Vec::new();
    for (socket, received) in streams {
        bodies.push(read_rest(socket, received).await);
    }
    tokio::time::timeout(Duration::from_secs(20), server).await.unwrap().unwrap().unwrap();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_streams_finish() {
    for body in shutdown_during_streams(Duration::from_secs(30)).await {
        assert!(body.contains("\"finish_reason\":\"length\""), "{body}");
        assert!(body.trim_end().ends_with("data: [DONE]") || body.contains("data: [DONE]"), "{body}");
        assert!(!body.contains("\"error\""), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_grace_period_end_with_an_error_event() {
    let bodies = shutdown_during_streams(Duration::ZERO).await;
    assert!(bodies.iter().any(|b| b.contains("\"code\":\"engine_unavailable\"")), "{bodies:?}");
    for body in bodies {
        assert!(body.contains("data: [DONE]"), "every stream still ends properly: {body}");
    }
}

/// Set in the child process that runs inside a network namespace with only loopback.
const ZERO_EGRESS_CHILD: &str = "HEARTH_ZERO_EGRESS_CHILD";

/// Proves nothing at run time needs the network: this test binary re-runs itself under `unshare -n`
/// (a new network namespace whose only interface is loopback), where the child serves a chat request
/// with the real default model. Needs root, as CI has.
#[test]
fn serves_with_no_network_but_loopback() {
    if std::env::var_os(ZERO_EGRESS_CHILD).is_some() {
        return zero_egress_child();
    }
    let me = std::env::current_exe().unwrap();
    let script = format!(
        "ip link set lo up && exec '{}' --exact operations::serves_with_no_network_but_loopback --nocapture",
        me.display()
    );
    let output = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .env(ZERO_EGRESS_CHILD, "1")
        .output()
        .expect("running unshare (util-linux)");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the child failed:\n{log}");
    assert!(log.contains("zero-egress child served"), "the child did not run its request:\n{log}");
}

fn zero_egress_child() {
    let interfaces = std::fs::read_to_string("/proc/net/dev").unwrap();
    let names: Vec<&str> = interfaces.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(names, ["lo"], "the namespace must have loopback only");
    crate::util::init();
    let state =
        hearth_server::start(&crate::util::config(crate::util::default_model(), hearth_models::WeightFormat::AsStored))
            .unwrap();
    let (model, _) = crate::util::served_ids(&state);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(hearth_server::serve(listener, hearth_server::app(state), std::future::pending(), ServeOptions::plain(Duration::from_secs(30))));
        let body = json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4}).to_string();
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body.as_bytes()).await.unwrap();
        let mut response = String::new();
        socket.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"completion_tokens\":"), "{response}");
    });
    println!("zero-egress child served a chat completion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = hearth_server::app(tiny_state());
    tokio::spawn(hearth_server::serve(
        listener,
        app,
        std::future::pending(),
        ServeOptions::plain(Duration::from_millis(300)),
    ));
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server kept a half-sent request open past its header timeout");
    let (status, _) = call(&tiny_state(), "GET", "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_operator_caps_max_tokens() {
    let state = tiny_state_with(|c| c.server.max_tokens_limit = Some(10));
    let over = call_with(&state, request("POST", "/v1/chat/completions", None, Some(chat_body(11, false)))).await;
    assert_eq!(over.status(), StatusCode::BAD_REQUEST);
    let error: Value = serde_json::from_str(&body_text(over).await).unwrap();
    assert_eq!(error["error"]["param"], "max_tokens");
    let unset = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "ignore_eos": true});
    let response = call_with(&state, request("POST", "/v1/chat/completions", None, Some(unset.to_string()))).await;
    let body: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 10, "without max_tokens the cap applies: {body}");
}

#[tokio::test]
async fn a_request_past_its_deadline_ends_with_504() {
    let state = tiny_state_with(|c| {
        c.server.request_timeout = Some(Duration::from_millis(1));
        c.engine.limits.max_batch_tokens = 1;
    });
    let response = call_with(&state, request("POST", "/v1/chat/completions", None, Some(chat_body(480, false)))).await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let error: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(error["error"]["code"], "timeout");
    let streamed = call_with(&state, request("POST", "/v1/chat/completions", None, Some(chat_body(480, true)))).await;
    let text = body_text(streamed).await;
    assert!(text.contains("\"code\":\"timeout\"") && text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn a_handler_panic_is_a_500_and_the_server_keeps_serving() {
    let state = tiny_state();
    // A route that panics, behind exactly the layers every real route has.
    async fn boom() -> StatusCode {
        panic!("a bug in a handler")
    }
    let panicking = axum::Router::new().route("/boom", axum::routing::get(boom));
    let router = hearth_server::app::layered(panicking, state.clone());
    let response = tower::ServiceExt::oneshot(router, request("GET", "/boom", None, None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let error: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(error["error"]["type"], "server_error");
    assert!(!error["error"]["message"].as_str().unwrap().contains("a bug"), "panic details stay in the log");
    assert!(captured_logs().contains("handler panicked"));
    let (status, body) = call(&state, "POST", "/v1/chat/completions", Some(&chat_body(2, false))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(state.models.engines_alive());
}
