//! What agents speak, on the tiny models: reasoning split from the answer (and constraints held until it
//! ends), the Responses and Messages routes' auth and error shapes, and rejections as error objects.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hearth_models::tiny::{self, TinySpec};
use hearth_models::WeightFormat;
use hearth_server::AppState;
use serde_json::{json, Value};

use crate::util::{body_text, call, call_with, config, init, tiny_state, tiny_state_with};

const THINKER: &str = "tiny-thinking";

/// The tiny model with `<think>` tokens and a template that opens the reasoning.
fn thinking_state() -> AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE
        .get_or_init(|| {
            init();
            let dir = std::env::temp_dir().join(format!("hearth-e2e-thinking-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let spec = TinySpec { thinking: true, ..TinySpec::default() };
            let path = tiny::write_llama_with(&dir, 11, spec, "tiny-thinking.gguf").unwrap();
            hearth_server::start(&config(path, WeightFormat::AsStored)).unwrap()
        })
        .clone()
}

async fn post(state: &AppState, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, text) = call(state, "POST", path, Some(&body.to_string())).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text})))
}

/// The `data:` payloads of an SSE body, `[DONE]` left out.
fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": THINKER, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12,
                          "temperature": 0});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn a_thinking_models_reasoning_is_apart_from_its_answer() {
    let state = thinking_state();
    assert!(state.models.chat(None).await.unwrap().thinking.is_some(), "detected from the template and the vocabulary");
    // The generation prompt opened `<think>`: every token of an answer that never closes it is reasoning.
    let (status, whole) = post(&state, "/v1/chat/completions", chat(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let message = &whole["choices"][0]["message"];
    let reasoning = message["reasoning_content"].as_str().expect("reasoning_content");
    assert!(!reasoning.is_empty(), "{whole}");
    assert_eq!(message["reasoning"], message["reasoning_content"], "vLLM's newer name carries the same");
    assert_eq!(message["content"], "", "{whole}");

    // Streamed, the same reasoning arrives as `delta.reasoning_content`.
    let (_, text) =
        call(&state, "POST", "/v1/chat/completions", Some(&chat(json!({"stream": true})).to_string())).await;
    let streamed: String = sse_data(&text)
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, reasoning);

    // `enable_thinking: false` closes the reasoning in the prompt: the answer is content.
    let body = chat(json!({"chat_template_kwargs": {"enable_thinking": false}}));
    let (_, whole) = post(&state, "/v1/chat/completions", body).await;
    let message = &whole["choices"][0]["message"];
    assert!(message.get("reasoning_content").is_none(), "{whole}");
    assert!(!message["content"].as_str().unwrap().is_empty(), "{whole}");
}

#[tokio::test]
async fn structured_output_is_constrained_after_the_reasoning_not_inside_it() {
    let state = thinking_state();
    // A strong bias makes `</think>` the first token: allowed inside the reasoning, where nothing is
    // constrained; had the JSON grammar applied from the first token, it would have been masked and the
    // JSON would have been written inside the reasoning.
    let close = (tiny::THINK + 1).to_string();
    let body = chat(json!({"max_tokens": 60, "response_format": {"type": "json_object"}, "logit_bias": {close: 100}}));
    let (status, whole) = post(&state, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {whole}"));
    assert!(parsed.is_object(), "{whole}");
}

#[tokio::test]
async fn responses_and_messages_carry_reasoning_in_their_own_shapes() {
    let state = thinking_state();
    let input = json!({"model": THINKER, "input": "hi", "max_output_tokens": 8, "temperature": 0});
    let (status, response) = post(&state, "/v1/responses", input).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["output"][0]["type"], "reasoning", "{response}");
    assert!(response["output"][0]["content"][0]["text"].as_str().is_some_and(|t| !t.is_empty()), "{response}");
    assert!(response["usage"]["output_tokens_details"]["reasoning_tokens"].as_u64().unwrap() > 0, "{response}");

    let body = json!({"model": THINKER, "max_tokens": 8, "temperature": 0,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (status, message) = post(&state, "/v1/messages", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["content"][0]["type"], "thinking", "{message}");
    assert_eq!(message["stop_reason"], "max_tokens");
    let mut body = body;
    body["thinking"] = json!({"type": "disabled"});
    let (_, message) = post(&state, "/v1/messages", body).await;
    assert_eq!(message["content"][0]["type"], "text", "`thinking: disabled` turns it off: {message}");
}

#[tokio::test]
async fn anthropic_clients_authenticate_with_x_api_key_and_get_anthropic_errors() {
    let state = tiny_state_with(|c| c.server.api_keys = vec!["sk-right".into()]);
    let body = json!({"model": "tiny-llama", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let request = |key: Option<(&str, &str)>, path: &str| {
        let mut builder = Request::builder().method("POST").uri(path).header("content-type", "application/json");
        if let Some((name, value)) = key {
            builder = builder.header(name, value);
        }
        builder.header("anthropic-version", "2023-06-01").body(Body::from(body.to_string())).unwrap()
    };
    for path in ["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens"] {
        for key in [None, Some(("x-api-key", "sk-wrong")), Some(("authorization", "Bearer sk-wrong"))] {
            let response = call_with(&state, request(key, path)).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path} {key:?}");
            let error: Value = serde_json::from_str(&body_text(response).await).unwrap();
            assert_eq!(
                (error["type"].as_str(), error["error"]["type"].as_str()),
                (Some("error"), Some("authentication_error"))
            );
        }
        for key in [("x-api-key", "sk-right"), ("authorization", "Bearer sk-right")] {
            let response = call_with(&state, request(Some(key), path)).await;
            assert_eq!(response.status(), StatusCode::OK, "{path} {key:?}");
        }
    }
    // Each endpoint's traffic and errors are counted under its route.
    let metrics = Request::builder().uri("/metrics").header("x-api-key", "sk-right").body(Body::empty()).unwrap();
    let metrics = body_text(call_with(&state, metrics).await).await;
    for line in [
        r#"hearth_http_requests_total{endpoint="/v1/messages",status="401"} 6"#,
        r#"hearth_http_requests_total{endpoint="/v1/messages",status="200"} 4"#,
        r#"hearth_http_requests_total{endpoint="/v1/messages/count_tokens",status="200"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn messages_errors_have_anthropics_shape_and_status() {
    let state = tiny_state();
    let message = |extra: Value| {
        let mut body = json!({"model": "tiny-llama", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body.to_string()
    };
    let cases: [(String, StatusCode, &str); 5] = [
        (r#"{"model": "#.into(), StatusCode::BAD_REQUEST, "invalid_request_error"),
        (json!({"model": "tiny-llama", "messages": []}).to_string(), StatusCode::BAD_REQUEST, "invalid_request_error"),
        (message(json!({"model": "nope"})), StatusCode::NOT_FOUND, "not_found_error"),
        (message(json!({"max_tokens": 0})), StatusCode::BAD_REQUEST, "invalid_request_error"),
        (
            message(json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]})),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
    ];
    for (body, status, kind) in cases {
        let (got, text) = call(&state, "POST", "/v1/messages", Some(&body)).await;
        assert_eq!(got, status, "{body}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["type"], "error", "{text}");
        assert_eq!(error["error"]["type"], kind, "{text}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    }
    let too_large = "x".repeat(hearth_server::app::MAX_BODY_BYTES + 1);
    let (got, text) = call(&state, "POST", "/v1/messages", Some(&too_large)).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["type"], "request_too_large");
}

#[tokio::test]
async fn a_stored_response_is_continued_retrieved_and_deleted() {
    let state = tiny_state();
    let (status, first) =
        post(&state, "/v1/responses", json!({"model": "tiny-llama", "input": "hello there", "max_output_tokens": 4}))
            .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let id = first["id"].as_str().unwrap();
    let (_, got) = call(&state, "GET", &format!("/v1/responses/{id}"), None).await;
    assert_eq!(serde_json::from_str::<Value>(&got).unwrap(), first);
    let follow_up = json!({"model": "tiny-llama", "input": "and?", "previous_response_id": id, "max_output_tokens": 2});
    let (status, second) = post(&state, "/v1/responses", follow_up.clone()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let (first_in, second_in) =
        (first["usage"]["input_tokens"].as_u64().unwrap(), second["usage"]["input_tokens"].as_u64().unwrap());
    assert!(second_in > first_in, "the stored conversation is the follow-up's prefix: {first_in} then {second_in}");
    assert!(
        second["usage"]["input_tokens_details"]["cached_tokens"].as_u64().unwrap() > 0,
        "its prefix is cached: {second}"
    );
    let (status, deleted) = call(&state, "DELETE", &format!("/v1/responses/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    for (method, body) in [("GET", None), ("DELETE", None)] {
        let (status, text) = call(&state, method, &format!("/v1/responses/{id}"), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["type"], "invalid_request_error");
    }
    let (status, gone) = post(&state, "/v1/responses", follow_up).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    let unstored = json!({"model": "tiny-llama", "input": "hi", "max_output_tokens": 1, "store": false});
    let (_, response) = post(&state, "/v1/responses", unstored).await;
    let (status, _) = call(&state, "GET", &format!("/v1/responses/{}", response["id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "`store: false` is not kept");
}

#[tokio::test]
async fn rejections_are_error_objects_naming_what_is_wrong() {
    let state = tiny_state();
    let (status, error) = post(&state, "/v1/completions", json!({"model": "tiny-llama", "prompt": [[]]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["param"], "prompt", "{error}");
    for path in ["/v1/models/%FF", "/v1/responses/%FF%FE"] {
        let (status, text) = call(&state, "GET", path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        assert_eq!(error["error"]["type"], "invalid_request_error", "{text}");
    }
    let (status, error) = post(&state, "/v1/responses", json!({"model": "tiny-llama", "input": []})).await;
    assert_eq!((status, error["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("input")), "{error}");
    let hosted = json!({"model": "tiny-llama", "input": "hi", "tools": [{"type": "web_search"}]});
    let (status, error) = post(&state, "/v1/responses", hosted).await;
    assert_eq!((status, error["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("tools[0].type")), "{error}");
    let body = json!({"model": "tiny-llama", "input": "hi", "max_output_tokens": -1});
    let (status, error) = post(&state, "/v1/responses", body).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("max_output_tokens")),
        "{error}"
    );
}
