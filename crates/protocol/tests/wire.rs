//! The mirror against real OpenAI JSON: requests from the SDK parse, and every key we emit in a response
//! exists at the same place in OpenAI's own responses (a renamed or misplaced field fails here).

use hearth_protocol::{
    Capability, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest,
    EmbeddingList, EmbeddingRequest, ErrorBody, ModelList, Prompt, ToolChoice,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every key of `ours` is present in `theirs` at the same path, recursively (arrays by first element).
#[track_caller]
fn assert_keys_within(ours: &Value, theirs: &Value, path: &str) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let other = b.get(key).unwrap_or_else(|| panic!("we emit `{path}.{key}`, OpenAI does not"));
                assert_keys_within(value, other, &format!("{path}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                assert_keys_within(x, y, &format!("{path}[0]"));
            }
        }
        _ => {}
    }
}

/// Parses a real response, writes it back, and checks the keys against the original.
#[track_caller]
fn roundtrip<T: DeserializeOwned + Serialize>(name: &str) {
    let real = fixture(name);
    let parsed: T = serde_json::from_value(real.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ours = serde_json::to_value(&parsed).unwrap();
    assert_keys_within(&ours, &real, name);
}

#[test]
fn sdk_requests_parse_with_their_extra_fields() {
    let req: ChatCompletionRequest = serde_json::from_value(fixture("chat_request_sdk.json")).unwrap();
    assert_eq!(req.messages.len(), 4);
    assert_eq!(req.max_completion_tokens, Some(64));
    assert_eq!(req.sampling.stop.unwrap().into_vec(), ["\n\n", "END"]);
    assert_eq!(req.stream_options.unwrap().include_usage, Some(true));
    assert_eq!(req.sampling.top_p, Some(1.0));
}

#[test]
fn tool_requests_parse_with_their_history() {
    let req: ChatCompletionRequest = serde_json::from_value(fixture("chat_request_tools.json")).unwrap();
    let tools = req.tools.unwrap();
    assert_eq!(tools[0].function.name, "get_current_weather");
    assert_eq!(tools[0].function.parameters.as_ref().unwrap()["required"][0], "location");
    assert!(matches!(req.tool_choice, Some(ToolChoice::Named(ref n)) if n.function.name == "get_current_weather"));
    assert_eq!(req.parallel_tool_calls, Some(false));
    let call = &req.messages[1].tool_calls.as_ref().unwrap()[0];
    assert_eq!((call.id.as_str(), call.function.name.as_str()), ("call_abc123", "get_current_weather"));
    assert!(req.messages[1].content.is_none());
    assert_eq!(req.messages[2].tool_call_id.as_deref(), Some("call_abc123"));
    let mode: ChatCompletionRequest =
        serde_json::from_value(serde_json::json!({"model": "m", "messages": [], "tool_choice": "required"})).unwrap();
    assert!(matches!(mode.tool_choice, Some(ToolChoice::Mode(ref m)) if m == "required"));
}

#[test]
fn legacy_completion_requests_parse() {
    let req: CompletionRequest = serde_json::from_value(fixture("completion_request_sdk.json")).unwrap();
    assert!(matches!(&req.prompt, Prompt::Texts(texts) if texts.len() == 2));
    assert_eq!((req.logprobs, req.n, req.max_tokens), (Some(2), Some(2), Some(7)));
    assert_eq!(req.sampling.logit_bias.unwrap()["50256"], -100.0);
    for (prompt, shape) in [
        (serde_json::json!("hi"), "text"),
        (serde_json::json!([1, 2, 3]), "tokens"),
        (serde_json::json!([[1, 2], [3]]), "token lists"),
    ] {
        let req: CompletionRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "prompt": prompt})).unwrap();
        let parsed = match req.prompt {
            Prompt::Text(_) => "text",
            Prompt::Texts(_) => "texts",
            Prompt::Tokens(_) => "tokens",
            Prompt::TokenLists(_) => "token lists",
        };
        assert_eq!(parsed, shape);
    }
}

#[test]
fn embeddings_use_openai_field_names() {
    roundtrip::<EmbeddingList>("embedding_list.json");
    // What the Python SDK sends when the caller sets no encoding: it asks for base64 and decodes itself.
    let req: EmbeddingRequest = serde_json::from_value(serde_json::json!({
        "model": "m", "input": ["a", "b"], "encoding_format": "base64"
    }))
    .unwrap();
    assert!(matches!(req.input, Prompt::Texts(ref t) if t.len() == 2));
}

#[test]
fn logprobs_keep_their_order_and_field_names() {
    roundtrip::<ChatCompletion>("chat_completion_logprobs.json");
    roundtrip::<Completion>("completion.json");
    // Straight from the text: a `Value` would sort the keys.
    let path = format!("{}/tests/fixtures/completion.json", env!("CARGO_MANIFEST_DIR"));
    let completion: Completion = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let logprobs = completion.choices[0].logprobs.clone().unwrap();
    let first = logprobs.top_logprobs[0].as_ref().unwrap();
    assert_eq!(first.0[0], ("\n\n".to_string(), -0.0104));
    assert_eq!(serde_json::to_value(first).unwrap(), serde_json::json!({"\n\n": -0.0104, "\n": -4.651}));
}

#[test]
fn responses_use_openai_field_names() {
    roundtrip::<ChatCompletion>("chat_completion.json");
    roundtrip::<ChatCompletionChunk>("chat_completion_chunk.json");
    roundtrip::<ChatCompletionChunk>("chat_completion_usage_chunk.json");
    roundtrip::<ErrorBody>("error.json");
    roundtrip::<ChatCompletion>("chat_completion_tool_calls.json");
    roundtrip::<ChatCompletionChunk>("chat_completion_tool_call_chunk.json");
}

#[test]
fn model_list_uses_openai_field_names() {
    let real = fixture("models.json");
    let list: ModelList = serde_json::from_value(serde_json::json!({
        "object": "list",
        "data": [{"id": "m", "object": "model", "created": 1, "owned_by": "hearth", "max_model_len": 8192,
                  "capabilities": ["chat", "completions"]}]
    }))
    .unwrap();
    let mut ours = serde_json::to_value(&list).unwrap();
    assert_eq!(list.data[0].capabilities, [Capability::Chat, Capability::Completions]);
    // `max_model_len` is vLLM's extension and `capabilities` Hearth's; everything else must be OpenAI's.
    for extension in ["max_model_len", "capabilities"] {
        ours["data"][0].as_object_mut().unwrap().remove(extension);
    }
    assert_keys_within(&ours, &real, "models");
}
