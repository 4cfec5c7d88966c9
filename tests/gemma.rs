//! The real Gemma 3 270M (`models/gemma-3-270m-Q4_K_M.gguf`: a base model with a SentencePiece vocabulary,
//! Q4_K/Q5_0/Q6_K/Q8_0 blocks and sliding-window layers) against llama.cpp's answers in
//! `tests/fixtures/gemma3-reference.json` (made by `make_gemma_reference.py`), and as a user meets it over
//! HTTP: `/v1/completions` works, `/v1/chat/completions` explains that a base model has no chat template.

use axum::http::StatusCode;
use hearth_models::ops::log_sum_exp;
use hearth_models::{CausalLm, SeqStep, WeightFormat};
use hearth_server::model::{self, ServedModel};
use serde_json::{json, Value};

use crate::util::{call, config, init, root};

/// Where llama.cpp's greedy token leads its runner-up by less than this, the two implementations (whose
/// log-probabilities differ by up to ~0.2 here) may pick differently; comparisons stop there.
const CLOSE_CALL: f64 = 0.3;
/// Greedy tokens compared per prompt.
const COMPARED: usize = 16;

fn gemma() -> std::path::PathBuf {
    root().join("models/gemma-3-270m-Q4_K_M.gguf")
}

fn reference() -> Value {
    let path = root().join("tests/fixtures/gemma3-reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn load() -> (ServedModel, Box<dyn CausalLm>) {
    init();
    model::load(&gemma(), None, WeightFormat::AsStored, None, Default::default()).unwrap()
}

/// Greedy tokens after `prompt`, with the first step's log-probabilities.
fn greedy(model: &dyn CausalLm, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<f32>) {
    let blocks: Vec<u32> = (0..16).collect();
    let mut pool = model.new_pool(16, blocks.len());
    let mut logits = model
        .forward(&mut pool, &[SeqStep { tokens: prompt, start: 0, blocks: &blocks, want_logits: true }])
        .unwrap()
        .remove(0);
    let norm = log_sum_exp(&logits);
    let first: Vec<f32> = logits.iter().map(|l| l - norm).collect();
    let mut tokens = Vec::new();
    for i in 0..steps {
        let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as u32;
        tokens.push(best);
        let step = SeqStep { tokens: &[best], start: prompt.len() + i, blocks: &blocks, want_logits: true };
        logits = model.forward(&mut pool, &[step]).unwrap().remove(0);
    }
    (tokens, first)
}

/// Greedy steps of a case before llama.cpp's first close call (at most [`COMPARED`]).
fn sure_steps(case: &Value) -> usize {
    let margins: Vec<f64> = case["margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
    margins.iter().take(COMPARED).position(|&m| m < CLOSE_CALL).unwrap_or(COMPARED)
}

#[test]
fn gemma3_continues_raw_prompts_as_llama_cpp() {
    let (served, model) = load();
    let reference = reference();
    let mut compared = 0;
    for case in reference["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let expected_ids = ids(&case["prompt_ids"]);
        assert_eq!(served.tokenizer.encode_completion_prompt(prompt).unwrap(), expected_ids, "prompt ids: {prompt:?}");
        let expected = ids(&case["tokens"]);
        let (tokens, first) = greedy(model.as_ref(), &expected_ids, expected.len());
        // The first token, against llama.cpp's f32 run (the same weights dequantized: exact activations) and
        // its quantized run. Both engines round activations to 8 bits per block; on this model, whose
        // activations have large outliers, that moves log-probabilities away from the exact ones, in either
        // engine's direction, and which way a value near a rounding edge goes depends on the last bits of
        // the matmul before it. Measured with three of our kernel orders that agree to 4e-7 of the output
        // scale: greedy tokens up to 0.14 from the exact run and 0.17 from llama.cpp's quantized run; 0.3
        // further down the top 5. So: the exact run's greedy token within 0.2 of ours and its top 5 within
        // 0.3 + 5 %; llama.cpp's quantized greedy token within 0.2 of ours, where that run picks the exact
        // greedy token (on one prompt it picks another; its continuation is then not compared).
        let entry = |v: &Value| (v[0].as_u64().unwrap() as usize, v[1].as_f64().unwrap() as f32);
        let exact: Vec<(usize, f32)> = case["exact_top_logprobs"].as_array().unwrap().iter().map(entry).collect();
        for (rank, &(id, lp)) in exact.iter().enumerate() {
            let tolerance = if rank == 0 { 0.2 } else { 0.3 + 0.05 * lp.abs() };
            assert!((first[id] - lp).abs() <= tolerance, "{prompt:?}: token {id} {} vs the exact {lp}", first[id]);
        }
        let (id, lp) = entry(&case["top_logprobs"][0][0]);
        if id != exact[0].0 {
            continue;
        }
        assert!((first[id] - lp).abs() <= 0.2, "{prompt:?}: greedy token {id} {} vs llama.cpp's {lp}", first[id]);
        let sure = sure_steps(case);
        assert_eq!(tokens[..sure], expected[..sure], "{prompt:?}: the continuation up to step {sure}");
        compared += sure;
    }
    // Measured: 28 greedy tokens fall before a close call (two prompts over all 16).
    assert!(compared >= 28, "only {compared} greedy tokens compared");
}

#[tokio::test]
async fn a_base_model_serves_completions_and_explains_chat() {
    init();
    let mut config = config(gemma(), WeightFormat::AsStored);
    config.model.served_model_name = Some("gemma".into());
    let state = hearth_server::start(&config).unwrap();
    let case = &reference()["cases"][0];
    // Up to llama.cpp's first close call: beyond it, either token is a faithful continuation.
    let body = json!({"model": "gemma", "prompt": case["prompt"], "max_tokens": sure_steps(case), "temperature": 0});
    let (status, text) = call(&state, "POST", "/v1/completions", Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let expected = case["text"].as_str().unwrap();
    let ours = answer["choices"][0]["text"].as_str().unwrap();
    assert!(expected.starts_with(ours), "{ours:?} is not how llama.cpp continues: {expected:?}");
    assert_eq!(answer["usage"]["prompt_tokens"], case["prompt_ids"].as_array().unwrap().len());

    let chat = json!({"model": "gemma", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, text) = call(&state, "POST", "/v1/chat/completions", Some(&chat.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], "model_not_chat");
    assert!(error["error"]["message"].as_str().unwrap().contains("/v1/completions"), "{text}");
}
