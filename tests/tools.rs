//! Function calling through HTTP on the tiny random-weight model: whatever the weights, a call the
//! constraint demands is well-formed, streamed or not; bad tool requests are 400s naming the field.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::util::{call, tiny_state};

const MODEL: &str = "tiny-llama";

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                           "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time"}}
    ])
}

fn request(tool_choice: Value) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "weather in Paris?"}], "tools": weather_tools(),
           "tool_choice": tool_choice, "max_tokens": 120, "temperature": 0})
}

async fn post(path: &str, body: &Value) -> (StatusCode, String) {
    call(&tiny_state(), "POST", path, Some(&body.to_string())).await
}

/// The calls of a streamed answer, each `(id, name, arguments)` accumulated from its deltas, and the
/// finish reason.
fn streamed_calls(text: &str) -> (Vec<(String, String, String)>, Value) {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = Value::Null;
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(data).unwrap();
        let choice = &chunk["choices"][0];
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
        for delta in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let index = delta["index"].as_u64().unwrap() as usize;
            if let Some(id) = delta["id"].as_str() {
                assert_eq!(index, calls.len(), "a call's first delta comes in order: {data}");
                assert_eq!(delta["type"], "function", "{data}");
                calls.push((id.into(), delta["function"]["name"].as_str().unwrap().into(), String::new()));
            }
            calls[index].2.push_str(delta["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    (calls, finish)
}

#[track_caller]
fn assert_valid_call(name: &str, arguments: &str) {
    let arguments: Value = serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{arguments:?}: {e}"));
    match name {
        "get_weather" => {
            assert_eq!(arguments.as_object().unwrap().len(), 1, "{arguments}");
            assert!(arguments["city"].as_str().is_some_and(|c| c.chars().count() <= 12), "{arguments}");
        }
        "get_time" => assert_eq!(arguments, json!({})),
        other => panic!("called an unknown function {other}"),
    }
}

#[tokio::test]
async fn required_calls_are_valid_and_stream_as_they_fold() {
    // One call: in the tiny byte-level vocabulary a call takes about 60 tokens, so several would not fit.
    let mut body = request(json!("required"));
    body["parallel_tool_calls"] = json!(false);
    let (status, text) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let whole: Value = serde_json::from_str(&text).unwrap();
    let choice = &whole["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{whole}");
    assert!(choice["message"]["content"].is_null(), "{whole}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{whole}");
    for call in calls {
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(call["type"], "function");
        assert_valid_call(call["function"]["name"].as_str().unwrap(), call["function"]["arguments"].as_str().unwrap());
    }

    let mut streaming = body;
    streaming["stream"] = json!(true);
    let (status, text) = post("/v1/chat/completions", &streaming).await;
    assert_eq!(status, StatusCode::OK);
    let (streamed, finish) = streamed_calls(&text);
    assert_eq!(finish, "tool_calls");
    let folded: Vec<(String, String)> = calls
        .iter()
        .map(|c| (c["function"]["name"].as_str().unwrap().into(), c["function"]["arguments"].as_str().unwrap().into()))
        .collect();
    let streamed: Vec<(String, String)> = streamed.into_iter().map(|(_, name, args)| (name, args)).collect();
    assert_eq!(streamed, folded, "greedy: the streamed calls are the folded ones");
}

#[tokio::test]
async fn a_named_function_is_called_once() {
    let (status, text) =
        post("/v1/chat/completions", &request(json!({"type": "function", "function": {"name": "get_weather"}}))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let whole: Value = serde_json::from_str(&text).unwrap();
    let calls = whole["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{whole}");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_valid_call("get_weather", calls[0]["function"]["arguments"].as_str().unwrap());
}

#[tokio::test]
async fn none_answers_in_text() {
    let (status, text) = post("/v1/chat/completions", &request(json!("none"))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let whole: Value = serde_json::from_str(&text).unwrap();
    assert!(whole["choices"][0]["message"].get("tool_calls").is_none(), "{whole}");
    assert_ne!(whole["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn bad_tool_requests_name_their_field() {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = request(json!("auto"));
        edit(&mut body);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (request(json!({"type": "function", "function": {"name": "nope"}})), "tool_choice"),
        (request(json!("sometimes")), "tool_choice"),
        (with(&|b| b.as_object_mut().unwrap().remove("tools").map(drop).unwrap()), "tool_choice"),
        (with(&|b| b["tools"][0]["function"]["name"] = json!("get weather")), "tools[0].function.name"),
        (with(&|b| b["tools"][0]["type"] = json!("retrieval")), "tools[0].type"),
        (with(&|b| b["tools"][1]["function"]["name"] = json!("get_weather")), "tools"),
        (
            with(&|b| {
                b["tools"][0]["function"]["parameters"] =
                    json!({"type": "object", "properties": {"a": {"type": "no-such-type"}}})
            }),
            "tools",
        ),
        (with(&|b| b["tools"][0]["function"]["parameters"] = json!("city")), "tools[0].function.parameters"),
        (with(&|b| b["response_format"] = json!({"type": "json_object"})), "response_format"),
        (with(&|b| b["functions"] = json!([{"name": "f"}])), "functions"),
        (with(&|b| b["messages"] = json!([{"role": "tool", "content": "22 C"}])), "messages[0].tool_call_id"),
    ];
    for (body, param) in cases {
        let (status, text) = post("/v1/chat/completions", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["param"], param, "{text}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn tool_history_renders_in_the_documented_format() {
    let messages = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 C, sunny"}
    ]);
    let (status, text) = post("/tokenize", &json!({"model": MODEL, "messages": messages})).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let tokens = serde_json::from_str::<Value>(&text).unwrap()["tokens"].clone();
    let (_, text) = post("/detokenize", &json!({"model": MODEL, "tokens": tokens})).await;
    let prompt = serde_json::from_str::<Value>(&text).unwrap()["prompt"].as_str().unwrap().to_string();
    assert!(
        prompt.contains("assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\nuser\n<tool_response>"),
        "{prompt}"
    );
    assert!(prompt.contains("<tool_response>\n22 C, sunny\n</tool_response>\n"), "{prompt}");

    let mut answer = request(json!("auto"));
    answer["messages"] = messages;
    let (status, text) = post("/v1/chat/completions", &answer).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}
