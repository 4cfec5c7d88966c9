//! The paged KV cache through HTTP on the tiny model: a small pool preempts without changing any answer,
//! prefix-cache hits show in `usage`, and a request that can never fit the pool is refused up front.

use axum::http::StatusCode;
use hearth_models::{GgufFile, WeightFormat};
use hearth_server::AppState;
use serde_json::{json, Value};

use crate::util::{call, engine_stats, tiny_model, tiny_state_with};

const MODEL: &str = "tiny-llama";

/// A fresh app on the tiny model whose KV pool holds `blocks` blocks of 16 positions.
fn state_with_blocks(blocks: usize, prefix_caching: bool) -> AppState {
    let model = hearth_models::load(&GgufFile::open(&tiny_model()).unwrap(), WeightFormat::AsStored).unwrap();
    let bytes = (blocks * 16 * model.kv_bytes_per_token()) as u64;
    let state = tiny_state_with(|c| {
        c.engine.kv_cache_memory = Some(bytes);
        c.engine.limits.prefix_caching = prefix_caching;
        c.engine.limits.max_batch_tokens = 64;
    });
    assert_eq!(engine_stats(&state).kv_blocks_total, blocks as u64);
    state
}

async fn chat(state: &AppState, body: Value) -> (StatusCode, Value) {
    let (status, text) = call(state, "POST", "/v1/chat/completions", Some(&body.to_string())).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn request(system: &str, question: &str, max_tokens: usize) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_streams_in_a_64_block_pool_all_match_their_solo_runs() {
    // Each request needs about 8 blocks (≈ 25 prompt + 100 generated positions); 16 at once need twice
    // the pool, so sequences are preempted and recomputed, and every answer must still be its solo answer.
    let state = state_with_blocks(64, true);
    let requests: Vec<Value> = (0..16).map(|i| request("Be brief.", &format!("Question number {i}?"), 100)).collect();
    let mut solo = Vec::new();
    for body in &requests {
        let (status, body) = chat(&state, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        solo.push(body["choices"][0]["message"]["content"].as_str().unwrap().to_string());
    }
    assert_eq!(engine_stats(&state).preemptions, 0, "one at a time fits");
    let together = futures::future::join_all(requests.iter().map(|body| chat(&state, body.clone()))).await;
    for (i, (status, body)) in together.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"].as_str().unwrap(), solo[i], "request {i}");
        assert_eq!(body["usage"]["completion_tokens"], 100);
    }
    let stats = engine_stats(&state);
    assert!(stats.preemptions > 0, "the pool was too small for all 16 at once");
    // The last answers can arrive just before the engine publishes its counters.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while engine_stats(&state).kv_blocks_used > 0 {
        assert!(std::time::Instant::now() < deadline, "blocks still in use after every request finished");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (_, metrics) = call(&state, "GET", "/metrics", None).await;
    let preemptions = format!(
        "hearth_num_preemptions_total{{model_name=\"{}\"}} {}",
        crate::util::served_ids(&state).0,
        stats.preemptions
    );
    assert!(metrics.contains(&preemptions), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_system_prompt_is_reused_and_reported() {
    let system = "You are the assistant of a very long system prompt. ".repeat(4);
    for prefix_caching in [true, false] {
        let state = state_with_blocks(256, prefix_caching);
        let (_, first) = chat(&state, request(&system, "First?", 4)).await;
        let (_, second) = chat(&state, request(&system, "Second?", 4)).await;
        assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
        let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
        if prefix_caching {
            let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
            assert!(cached >= 16 && cached % 16 == 0 && cached < prompt, "cached {cached} of {prompt}");
        } else {
            assert_eq!(cached, 0, "--no-prefix-cache reuses nothing");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_can_never_fit_the_pool_is_a_400() {
    let state = state_with_blocks(4, true);
    let (_, models) = call(&state, "GET", "/v1/models", None).await;
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["max_model_len"], 64, "the pool bounds the context");
    let (status, body) = chat(&state, request("", "Hi", 100)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let (status, body) = chat(&state, request("", "Hi", 8)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
