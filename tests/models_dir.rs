//! One server, many models (issue 15): a models directory served by name, loads on demand shared by
//! concurrent requests, unloads under `--max-loaded-models` and the memory budget (never of a model that
//! serves a request), idle unloading, pinning, the admin routes, and hostile files beside good ones.
//! Mechanics run on tiny random-weight models; the end-to-end case runs the real SmolLM2, Gemma 3 and
//! MiniLM files, each answer checked against a single-model server's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use hearth_models::tiny;
use hearth_server::config::Config;
use hearth_server::AppState;
use serde_json::{json, Value};

use crate::util::{call, call_with, config, default_embedding_model, default_model, init, root, tiny_model};

/// A fresh directory for one test.
fn models_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes tiny models `names` (each with its own weights) into `dir`.
fn tiny_models(dir: &Path, names: &[&str]) {
    for (seed, name) in names.iter().enumerate() {
        let written = tiny::write_llama_with(dir, 11 + seed as u64, Default::default(), &format!("{name}.gguf"));
        written.unwrap();
    }
}

/// A server of `dir` alone (no model named at start), its configuration changed by `adjust`.
fn serve_dir(dir: &Path, adjust: impl FnOnce(&mut Config)) -> AppState {
    init();
    let mut config = config(tiny_model(), hearth_models::WeightFormat::AsStored);
    config.model.path = None;
    config.models.dirs = vec![dir.to_path_buf()];
    config.engine.kv_cache_memory = Some(8 << 20);
    adjust(&mut config);
    hearth_server::start(&config).unwrap()
}

async fn post(state: &AppState, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, text) = call(state, "POST", path, Some(&body.to_string())).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// A greedy completion of `model`; returns the status and the text (or the error body).
async fn complete(state: &AppState, model: &str, max_tokens: u32) -> (StatusCode, String) {
    let body = json!({"model": model, "prompt": "The quick brown fox", "max_tokens": max_tokens, "temperature": 0});
    let (status, body) = post(state, "/v1/completions", body).await;
    let text = body["choices"][0]["text"].as_str().map_or_else(|| body.to_string(), str::to_string);
    (status, text)
}

/// Each listed model's id and state.
async fn states(state: &AppState) -> Vec<(String, String)> {
    let (status, text) = call(state, "GET", "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_str(&text).unwrap();
    let data = list["data"].as_array().unwrap();
    data.iter().map(|m| (m["id"].as_str().unwrap().into(), m["status"]["value"].as_str().unwrap().into())).collect()
}

fn state_of(states: &[(String, String)], id: &str) -> String {
    states.iter().find(|(m, _)| m == id).map_or_else(|| "missing".into(), |(_, s)| s.clone())
}

/// A sample of `/metrics`: the value of the line that starts with `series`, 0 when absent.
async fn metric(state: &AppState, series: &str) -> f64 {
    let (_, text) = call(state, "GET", "/metrics", None).await;
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_models_dir_serves_each_file_by_name_and_follows_the_directory() {
    let dir = models_dir("names");
    tiny_models(&dir, &["alpha", "beta"]);
    let state = serve_dir(&dir, |_| {});
    assert_eq!(states(&state).await, [("alpha".into(), "available".into()), ("beta".into(), "available".into())]);
    let (status, text) = complete(&state, "alpha", 4).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let listed = states(&state).await;
    assert_eq!((state_of(&listed, "alpha"), state_of(&listed, "beta")), ("loaded".into(), "available".into()));
    let (status, body) = post(&state, "/v1/completions", json!({"model": "gamma", "prompt": "x"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("model_not_found")));
    // Files come and go without a restart.
    tiny_models(&dir, &["gamma"]);
    assert_eq!(state_of(&states(&state).await, "gamma"), "available");
    assert_eq!(complete(&state, "gamma", 4).await.0, StatusCode::OK);
    std::fs::remove_file(dir.join("beta.gguf")).unwrap();
    assert_eq!(state_of(&states(&state).await, "beta"), "missing");
    // Without `model`, a server of several models cannot guess.
    let (status, body) = post(&state, "/tokenize", json!({"prompt": "hi"})).await;
    assert_eq!((status, body["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("model")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_during_a_load_wait_for_that_one_load() {
    let dir = models_dir("shared");
    tiny_models(&dir, &["alpha"]);
    let state = serve_dir(&dir, |_| {});
    let requests = (0..6).map(|_| complete(&state, "alpha", 4));
    let answers = futures::future::join_all(requests).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
    assert!(answers.windows(2).all(|w| w[0].1 == w[1].1), "greedy answers agree: {answers:?}");
    assert_eq!(metric(&state, r#"hearth_model_loads_total{model_name="alpha"}"#).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_loaded_model_at_a_time_alternates_with_the_same_answers() {
    let dir = models_dir("alternate");
    tiny_models(&dir, &["alpha", "beta"]);
    let state = serve_dir(&dir, |c| c.models.max_loaded = Some(1));
    let first = (complete(&state, "alpha", 8).await, complete(&state, "beta", 8).await);
    for _ in 0..2 {
        assert_eq!(complete(&state, "alpha", 8).await, first.0);
        assert_eq!(complete(&state, "beta", 8).await, first.1);
    }
    assert_ne!(first.0 .1, first.1 .1, "two models, two answers");
    let listed = states(&state).await;
    assert_eq!((state_of(&listed, "alpha"), state_of(&listed, "beta")), ("available".into(), "loaded".into()));
    assert_eq!(metric(&state, r#"hearth_model_unloads_total{model_name="alpha",reason="count"}"#).await, 3.0);
    assert_eq!(metric(&state, r#"hearth_model_unloads_total{model_name="beta",reason="count"}"#).await, 2.0);
}

/// Starts a streamed completion of `model` and waits for its first chunk; returns the rest of the body.
async fn start_stream(state: &AppState, model: &str, max_tokens: u32) -> axum::body::BodyDataStream {
    let body = json!({"model": model, "prompt": "Once", "max_tokens": max_tokens, "temperature": 0,
        "stream": true, "ignore_eos": true});
    let request = Request::post("/v1/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = call_with(state, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body().into_data_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: {"), "{first:?}");
    stream
}

/// Reads the rest of a stream; asserts it ran to its length and `[DONE]` without an error.
async fn finish_stream(mut stream: axum::body::BodyDataStream) {
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_serving_a_stream_is_never_unloaded() {
    let dir = models_dir("busy");
    tiny_models(&dir, &["alpha", "beta"]);
    let state = serve_dir(&dir, |c| c.models.max_loaded = Some(1));
    let stream = start_stream(&state, "alpha", 400).await;
    let asked = Instant::now();
    let request = Request::post("/v1/completions")
        .header("content-type", "application/json")
        .body(Body::from(json!({"model": "beta", "prompt": "x", "max_tokens": 2}).to_string()))
        .unwrap();
    let refused = call_with(&state, request).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: Value = serde_json::from_str(&crate::util::body_text(refused).await).unwrap();
    assert_eq!(body["error"]["code"], "model_busy", "{body}");
    assert!(asked.elapsed() >= Duration::from_secs(2), "it waited for the stream to end first");
    finish_stream(stream).await;
    assert_eq!(complete(&state, "beta", 2).await.0, StatusCode::OK, "once the stream ended, beta loads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_beside_a_stream_does_not_cut_it() {
    let dir = models_dir("beside");
    tiny_models(&dir, &["alpha", "beta"]);
    let state = serve_dir(&dir, |_| {});
    let stream = start_stream(&state, "alpha", 300).await;
    assert_eq!(complete(&state, "beta", 4).await.0, StatusCode::OK);
    finish_stream(stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_unloads_the_least_recently_used_and_refuses_what_never_fits() {
    let dir = models_dir("budget");
    tiny_models(&dir, &["alpha", "beta", "gamma"]);
    let size = std::fs::metadata(dir.join("alpha.gguf")).unwrap().len();
    // Room for two models' weights and KV pools, not three.
    let state = serve_dir(&dir, |c| c.models.memory = Some(2 * (size + (8 << 20)) + (1 << 20)));
    for model in ["alpha", "beta", "alpha", "gamma"] {
        assert_eq!(complete(&state, model, 2).await.0, StatusCode::OK);
    }
    let listed = states(&state).await;
    let got: Vec<String> = ["alpha", "beta", "gamma"].iter().map(|m| state_of(&listed, m)).collect();
    assert_eq!(got, ["loaded", "available", "loaded"], "beta was the least recently used");
    assert_eq!(metric(&state, r#"hearth_model_unloads_total{model_name="beta",reason="memory"}"#).await, 1.0);

    let tight = serve_dir(&dir, |c| c.models.memory = Some(size));
    let (status, body) = post(&tight, "/v1/completions", json!({"model": "alpha", "prompt": "x"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("model_load_failed"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("memory budget"), "{body}");
    assert_eq!(state_of(&states(&tight).await, "alpha"), "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_models_are_unloaded_unless_pinned() {
    let dir = models_dir("idle");
    tiny_models(&dir, &["alpha", "beta"]);
    let state = serve_dir(&dir, |c| {
        c.models.idle_unload = Some(Duration::from_millis(600));
        c.models.pinned = vec!["alpha".into()];
    });
    assert_eq!(complete(&state, "alpha", 2).await.0, StatusCode::OK);
    assert_eq!(complete(&state, "beta", 2).await.0, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state_of(&states(&state).await, "beta") != "available" {
        assert!(Instant::now() < deadline, "beta was never unloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state_of(&states(&state).await, "alpha"), "loaded", "pinned");
    assert_eq!(metric(&state, r#"hearth_model_unloads_total{model_name="beta",reason="idle"}"#).await, 1.0);
    let (status, body) = post(&state, "/models/unload", json!({"model": "alpha"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_routes_load_and_unload_and_aliases_name_models() {
    let dir = models_dir("admin");
    tiny_models(&dir, &["alpha"]);
    let state = serve_dir(&dir, |c| c.models.aliases = [("fast".into(), "alpha".into())].into());
    let (status, body) = post(&state, "/models/load", json!({"model": "fast"})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"success": true})));
    assert_eq!(state_of(&states(&state).await, "alpha"), "loaded");
    let (status, text) = call(&state, "GET", "/v1/models/fast", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains(r#""aliases":["fast"]"#), "{text}");
    assert_eq!(post(&state, "/models/unload", json!({"model": "alpha"})).await.0, StatusCode::OK);
    assert_eq!(state_of(&states(&state).await, "alpha"), "available");
    let (status, body) = post(&state, "/models/unload", json!({"model": "alpha"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not loaded: {body}");
    assert_eq!(post(&state, "/models/load", json!({"model": "nope"})).await.0, StatusCode::NOT_FOUND);
    // A request reloads it.
    let (status, body) =
        post(&state, "/v1/completions", json!({"model": "fast", "prompt": "x", "max_tokens": 2})).await;
    assert_eq!((status, body["model"].as_str()), (StatusCode::OK, Some("alpha")));
    assert_eq!(metric(&state, r#"hearth_model_loads_total{model_name="alpha"}"#).await, 2.0);
    assert_eq!(metric(&state, r#"hearth_model_unloads_total{model_name="alpha",reason="admin"}"#).await, 1.0);
}

/// A hostile file in the models directory: its id, whether its header is refused (else its load is), and
/// the reason its error must give.
struct Hostile {
    id: String,
    header: bool,
    reason: String,
}

/// Copies the committed hostile corpus (`tests/fixtures/hostile-gguf.json` says how each fails) into `dir`,
/// with two damaged copies of a good file.
fn hostile_files(dir: &Path) -> Vec<Hostile> {
    let manifest = std::fs::read_to_string(root().join("tests/fixtures/hostile-gguf.json")).unwrap();
    let manifest: Vec<Value> = serde_json::from_str(&manifest).unwrap();
    let mut files = Vec::new();
    for case in manifest {
        let file = case["file"].as_str().unwrap();
        std::fs::copy(root().join("tests/fixtures/hostile-gguf").join(file), dir.join(file)).unwrap();
        files.push(Hostile {
            id: file.trim_end_matches(".gguf").into(),
            header: case["stage"] == "header",
            reason: case["reason"].as_str().unwrap().into(),
        });
    }
    let good = std::fs::read(tiny_model()).unwrap();
    for (id, bytes) in [("cut-short", &good[..good.len() / 2]), ("no-header", &good[4096..])] {
        std::fs::write(dir.join(format!("{id}.gguf")), bytes).unwrap();
        files.push(Hostile { id: id.into(), header: true, reason: String::new() });
    }
    files
}

/// The listing of model `id` in `state`.
async fn listing(state: &AppState, id: &str) -> Value {
    let (status, text) = call(state, "GET", &format!("/v1/models/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_are_listed_as_failed_and_the_good_models_keep_serving() {
    let dir = models_dir("hostile");
    tiny_models(&dir, &["good"]);
    let hostile = hostile_files(&dir);
    assert!(hostile.len() > 30);
    let state = serve_dir(&dir, |_| {});
    for file in &hostile {
        let id = &file.id;
        let before = listing(&state, id).await;
        // The listing reads the header (and the metadata that sizes the model); weights load only when the
        // model is asked for.
        let listed = before["status"]["value"].as_str().unwrap();
        assert!(listed == "failed" || (!file.header && listed == "available"), "{before}");
        let (status, body) =
            post(&state, "/v1/completions", json!({"model": id, "prompt": "x", "max_tokens": 2})).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{id}: {body}");
        assert_eq!(body["error"]["code"], "model_load_failed", "{id}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&file.reason), "{id}: `{message}` lacks `{}`", file.reason);
        assert!(!message.contains(&dir.display().to_string()), "no server paths: {message}");
        let after = listing(&state, id).await;
        assert_eq!(after["status"]["value"], "failed", "{after}");
        assert!(after["status"]["reason"].as_str().unwrap().contains(&file.reason), "{after}");
        assert_eq!(complete(&state, "good", 2).await.0, StatusCode::OK, "after {id}");
    }
}

/// Greedy chat and completion answers of the real SmolLM2 and Gemma 3 (and a MiniLM embedding).
#[derive(Debug, PartialEq)]
struct Answers {
    smollm2: String,
    gemma: String,
    embedding: Vec<f64>,
}

async fn real_answers(state: &AppState, smollm2: &str, gemma: &str, minilm: &str) -> Answers {
    Answers {
        smollm2: smollm2_chat(state, smollm2).await,
        gemma: gemma_completion(state, gemma).await,
        embedding: embedding(state, minilm).await,
    }
}

async fn smollm2_chat(state: &AppState, model: &str) -> String {
    let chat = json!({"model": model, "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 12, "temperature": 0});
    let (status, body) = post(state, "/v1/chat/completions", chat).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

async fn gemma_completion(state: &AppState, model: &str) -> String {
    let (status, text) = complete(state, model, 12).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

async fn embedding(state: &AppState, model: &str) -> Vec<f64> {
    let (status, body) = post(state, "/v1/embeddings", json!({"model": model, "input": "a red apple"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"][0]["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_real_models_one_loaded_at_a_time_answer_as_their_own_servers() {
    let gemma = root().join("models/gemma-3-270m-Q4_K_M.gguf");
    let dir = models_dir("real");
    for (path, name) in
        [(default_model(), "smollm2.gguf"), (gemma.clone(), "gemma.gguf"), (default_embedding_model(), "minilm")]
    {
        std::os::unix::fs::symlink(path, dir.join(name)).unwrap();
    }
    // Each model alone, as a single-model server serves it.
    let single = |path: PathBuf| {
        let mut config = config(path, hearth_models::WeightFormat::AsStored);
        config.engine.kv_cache_memory = Some(64 << 20);
        config.model.embedding = Some(hearth_server::config::EmbeddingModelConfig {
            path: default_embedding_model(),
            served_model_name: None,
            optional: false,
        });
        hearth_server::start(&config).unwrap()
    };
    let (smollm2_alone, gemma_alone) = (single(default_model()), single(gemma));
    let expected = Answers {
        smollm2: smollm2_chat(&smollm2_alone, "SmolLM2-135M-Instruct.Q4_1").await,
        gemma: gemma_completion(&gemma_alone, "gemma-3-270m-Q4_K_M").await,
        embedding: embedding(&smollm2_alone, "all-MiniLM-L6-v2").await,
    };
    drop((smollm2_alone, gemma_alone));

    let state = serve_dir(&dir, |c| {
        c.models.max_loaded = Some(1);
        c.engine.kv_cache_memory = Some(64 << 20);
    });
    for round in 0..2 {
        assert_eq!(real_answers(&state, "smollm2", "gemma", "minilm").await, expected, "round {round}");
    }
    // Six loads in two rounds, each unloading the one before.
    assert_eq!(metric(&state, r#"hearth_model_unloads_total{model_name="smollm2",reason="count"}"#).await, 2.0);
    assert_eq!(metric(&state, r#"hearth_model_unloads_total{model_name="gemma",reason="count"}"#).await, 2.0);
    // The embedding model is wrong for chat, and a chat model for embeddings.
    let (status, _) = post(&state, "/v1/chat/completions", json!({"model": "minilm", "messages": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(&state, "/v1/embeddings", json!({"model": "gemma", "input": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Unloaded by hand, reloaded by the next request.
    assert_eq!(post(&state, "/models/unload", json!({"model": "minilm"})).await.0, StatusCode::OK);
    assert_eq!(real_answers(&state, "smollm2", "gemma", "minilm").await, expected);
}
