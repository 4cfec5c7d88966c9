//! A fuzz harness over request parsing and preparation: mutated JSON into every endpoint's extractor
//! (`AppJson`) and, when it parses, into its `prepare` function, on the real default model's tokenizer,
//! template and constraint compiler and the real embedding tokenizer. No input may panic or get a 5xx.
//!
//! Inputs come from a seeded generator (input `i` from seed `i`), so a failure names the input that
//! reproduces it. CI runs [`DEFAULT_INPUTS`]; `HEARTH_FUZZ_INPUTS=1000000` runs more, on every core.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::Request;
use hearth_models::WeightFormat;
use hearth_protocol::messages::MessagesRequest;
use hearth_protocol::responses::ResponsesRequest;
use hearth_protocol::{ChatCompletionRequest, CompletionRequest, DetokenizeRequest, EmbeddingRequest, TokenizeRequest};
use hearth_server::error::ApiError;
use hearth_server::extract::AppJson;
use hearth_server::model::{self, ServedEmbedder, ServedModel};
use hearth_server::prepare;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::util::{default_embedding_model, default_model};

/// Inputs a CI run checks.
const DEFAULT_INPUTS: u64 = 20_000;

/// xorshift64*: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Field names of every request type, and of what nests inside them.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "id",
    "type",
    "function",
    "arguments",
    "parameters",
    "description",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "json_schema",
    "schema",
    "strict",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "stop",
    "n",
    "logprobs",
    "top_logprobs",
    "stream",
    "stream_options",
    "include_usage",
    "ignore_eos",
    "prompt",
    "echo",
    "best_of",
    "suffix",
    "input",
    "encoding_format",
    "dimensions",
    "tokens",
    "add_special_tokens",
    "add_generation_prompt",
    "functions",
    "function_call",
    "text",
    "image_url",
    "properties",
    "required",
    "enum",
    "items",
    "additionalProperties",
    "anyOf",
    "$ref",
    "$defs",
    "pattern",
    "minLength",
    "maxItems",
    "format",
];

const STRINGS: &[&str] = &[
    "",
    "a",
    "smollm2",
    "minilm",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "json_object",
    "json_schema",
    "auto",
    "required",
    "none",
    "float",
    "base64",
    "object",
    "string",
    "array",
    "integer",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "\u{E000}0000000000000000:0\u{E001}",
    "🙂",
    "\n",
    " ",
    "{",
    "}",
    "{{ raise_exception('boom') }}",
    "42",
    "-1",
    "49151",
    "49152",
    "0",
    "é",
    "\u{0}",
    "#/$defs/a",
    "[a-z]+",
    "date-time",
    "The quick brown fox jumps over the lazy dog. ",
];

const INTEGERS: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    4,
    5,
    16,
    17,
    20,
    21,
    100,
    300,
    1024,
    2048,
    2049,
    8191,
    8192,
    8193,
    49151,
    49152,
    i64::MAX,
    i64::MIN,
    1 << 53,
];

const FLOATS: &[f64] = &[0.5, -0.0, 1e308, -1e308, 2.0, 2.5, -2.5, 1e-300, 100.0, -100.5, 0.999];

/// A random JSON value, `depth` levels deep at most.
fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(*rng.pick(INTEGERS)),
        3 => json!(*rng.pick(FLOATS)),
        4 => Value::String(rng.pick(STRINGS).to_string()),
        5 => Value::String(rng.pick(STRINGS).repeat(1 + rng.below(3000))),
        6 | 7 => Value::Array((0..rng.below(5)).map(|_| value(rng, depth - 1)).collect()),
        _ => {
            let mut object = Map::new();
            for _ in 0..rng.below(5) {
                object.insert(rng.pick(KEYS).to_string(), value(rng, depth - 1));
            }
            Value::Object(object)
        }
    }
}

/// Valid requests of every endpoint to start mutating from.
fn seeds() -> Vec<Value> {
    let weather = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}});
    vec![
        json!({"model": "smollm2", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}], "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "stop": ["\n"],
            "logit_bias": {"42": -100}, "n": 2, "logprobs": true, "top_logprobs": 3, "seed": 1, "stream": true,
            "stream_options": {"include_usage": true}}),
        json!({"model": "smollm2", "messages": [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
            "tools": [weather], "tool_choice": "required", "parallel_tool_calls": false}),
        json!({"model": "smollm2", "messages": [{"role": "user", "content": [{"type": "text", "text": "JSON"}]}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}},
                "required": ["a"]}}}, "max_completion_tokens": 64}),
        json!({"model": "smollm2", "prompt": ["a", "b"], "max_tokens": 5, "echo": true, "best_of": 1, "suffix": "",
            "logprobs": 2}),
        json!({"model": "smollm2", "prompt": [[1, 2, 3], [4]], "n": 3, "ignore_eos": true}),
        json!({"model": "minilm", "input": ["hello", "world"], "encoding_format": "float"}),
        json!({"model": "minilm", "input": [[101, 7592, 102]], "dimensions": 384}),
        json!({"model": "smollm2", "prompt": "hi <|im_end|>", "add_special_tokens": false}),
        json!({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": false}),
        json!({"tokens": [1, 2, 3, 49151]}),
        json!({"model": "smollm2", "max_tokens": 16, "system": [{"type": "text", "text": "Be brief."}],
            "stop_sequences": ["\n"], "top_k": 5, "thinking": {"type": "disabled"},
            "messages": [{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object",
                "properties": {"city": {"type": "string"}}}}], "tool_choice": {"type": "any"}}),
        json!({"model": "smollm2", "instructions": "Be brief.", "max_output_tokens": 32, "store": false,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_weather"}, "metadata": {"k": "v"}}),
        json!({"model": "smollm2", "input": "JSON", "reasoning": {"effort": "none"}, "top_p": 0.5,
            "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object",
                "properties": {"a": {"type": "integer"}}}}}}),
    ]
}

/// Replaces, removes or adds something somewhere in `v`.
fn mutate(rng: &mut Rng, v: &mut Value) {
    let descend = rng.below(3) != 0;
    match v {
        Value::Object(object) if descend && !object.is_empty() => {
            let key = object.keys().nth(rng.below(object.len())).unwrap().clone();
            mutate(rng, object.get_mut(&key).unwrap());
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len());
            mutate(rng, &mut items[i]);
        }
        Value::Object(object) if rng.below(2) == 0 && !object.is_empty() => {
            let key = object.keys().nth(rng.below(object.len())).unwrap().clone();
            object.remove(&key);
        }
        Value::Object(object) => {
            object.insert(rng.pick(KEYS).to_string(), value(rng, 3));
        }
        Value::Array(items) if rng.below(2) == 0 && !items.is_empty() => {
            let copy = items[rng.below(items.len())].clone();
            items.extend(std::iter::repeat_n(copy, 1 + rng.below(40)));
        }
        other => *other = value(rng, 3),
    }
}

/// Input `i`: a seed mutated a few times, written as JSON, sometimes with its bytes damaged.
fn input(i: u64, seeds: &[Value]) -> Vec<u8> {
    let mut rng = Rng::new(i);
    let mut v = rng.pick(seeds).clone();
    for _ in 0..1 + rng.below(4) {
        mutate(&mut rng, &mut v);
    }
    let mut bytes = serde_json::to_vec(&v).unwrap();
    if rng.below(10) == 0 && !bytes.is_empty() {
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = rng.next() as u8,
                1 => bytes.truncate(at),
                _ => bytes.insert(at, *rng.pick(b"{}[]\",:\\0")),
            }
            if bytes.is_empty() {
                break;
            }
        }
    }
    bytes
}

/// What every endpoint's preparation runs against.
struct Served {
    model: ServedModel,
    embedder: ServedEmbedder,
}

/// The body through the real extractor, as a handler would receive it.
fn extract<T: DeserializeOwned>(runtime: &tokio::runtime::Runtime, bytes: &[u8]) -> Result<T, ApiError> {
    let request = Request::builder().body(Body::from(bytes.to_vec())).unwrap();
    runtime.block_on(AppJson::<T>::from_request(request, &())).map(|AppJson(t)| t)
}

/// The endpoints, in the order [`check`] reports them.
const ENDPOINTS: [&str; 7] = ["chat", "completions", "embeddings", "tokenize", "detokenize", "messages", "responses"];

/// Feeds one input to every endpoint; returns the errors a client must never see (5xx) and which
/// endpoints prepared it.
fn check(served: &Served, runtime: &tokio::runtime::Runtime, bytes: &[u8]) -> (Vec<String>, [bool; 7]) {
    let (model, embedder) = (&served.model, &served.embedder);
    let results: [Result<(), ApiError>; 7] = [
        extract::<ChatCompletionRequest>(runtime, bytes).and_then(|r| prepare::chat(&r, model, None).map(drop)),
        extract::<CompletionRequest>(runtime, bytes).and_then(|r| prepare::completion(&r, model, None).map(drop)),
        extract::<EmbeddingRequest>(runtime, bytes)
            .and_then(|r| prepare::embedding_inputs(&r.input, embedder).map(drop)),
        extract::<TokenizeRequest>(runtime, bytes).and_then(|r| prepare::tokenize(&r, model).map(drop)),
        extract::<DetokenizeRequest>(runtime, bytes).and_then(|r| prepare::detokenize(&r, model).map(drop)),
        extract::<MessagesRequest>(runtime, bytes).and_then(|r| prepare::messages(&r, model, None).map(drop)),
        extract::<ResponsesRequest>(runtime, bytes).and_then(|r| prepare::responses(&r, &[], model, None).map(drop)),
    ];
    let prepared = std::array::from_fn(|i| results[i].is_ok());
    let errors = ENDPOINTS
        .iter()
        .zip(results)
        .filter_map(|(endpoint, result)| match result {
            Err(e) if e.status().is_server_error() => Some(format!("{endpoint}: {} {e}", e.status())),
            _ => None,
        })
        .collect();
    (errors, prepared)
}

#[test]
fn request_parsing_and_preparation_never_panic_nor_fail_on_the_server() {
    let inputs: u64 = std::env::var("HEARTH_FUZZ_INPUTS").map_or(DEFAULT_INPUTS, |n| n.parse().expect("a count"));
    let (model, _) =
        model::load(&default_model(), Some("smollm2".into()), WeightFormat::AsStored, None, Default::default())
            .expect("the default model");
    let embedder = model::load_embedder(&default_embedding_model(), Some("minilm".into())).expect("the embedder");
    let served = Served { model, embedder };
    let seeds = seeds();
    let workers = if inputs > DEFAULT_INPUTS { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { 1 };
    let started = Instant::now();
    let (failures, prepared): (Vec<String>, [u64; 7]) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers as u64)
            .map(|worker| {
                let (served, seeds) = (&served, &seeds);
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    let (mut failures, mut prepared) = (Vec::new(), [0u64; 7]);
                    for i in (worker..inputs).step_by(workers) {
                        let bytes = input(i, seeds);
                        match catch_unwind(AssertUnwindSafe(|| check(served, &runtime, &bytes))) {
                            Ok((errors, ok)) => {
                                failures.extend(errors.into_iter().map(|e| format!("input {i}: {e}")));
                                prepared.iter_mut().zip(ok).for_each(|(n, ok)| *n += u64::from(ok));
                            }
                            Err(_) => failures.push(format!("input {i} panicked: {}", String::from_utf8_lossy(&bytes))),
                        }
                        if failures.len() > 20 {
                            break;
                        }
                    }
                    (failures, prepared)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).fold((Vec::new(), [0; 7]), |(mut all, mut counts), (f, p)| {
            all.extend(f);
            counts.iter_mut().zip(p).for_each(|(n, p)| *n += p);
            (all, counts)
        })
    });
    let prepared: Vec<String> = ENDPOINTS.iter().zip(prepared).map(|(e, n)| format!("{e} {n}")).collect();
    eprintln!(
        "fuzz: {inputs} inputs on {workers} threads in {:.1?}; prepared: {}",
        started.elapsed(),
        prepared.join(", ")
    );
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
