//! The engine on a tiny random-weight model: batching must not change what a sequence generates.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hearth_engine::{
    spawn, EngineConfig, EngineHandle, Event, FinishReason, GenerateRequest, SamplingParams, SubmitError,
};
use hearth_models::{tiny, GgufFile, WeightFormat};

/// Written once per test binary: tests run in parallel, and rewriting the file under a reader truncates it.
fn tiny_model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hearth-engine-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        tiny::write_llama(&dir, 42).unwrap()
    })
}

fn engine(config: EngineConfig) -> EngineHandle {
    let model = hearth_models::load(&GgufFile::open(tiny_model()).unwrap(), WeightFormat::AsStored).unwrap();
    spawn(model, config).unwrap()
}

/// An engine whose KV pool holds exactly `blocks` blocks of 16 positions.
fn engine_with_blocks(blocks: usize, config: EngineConfig) -> EngineHandle {
    let model = hearth_models::load(&GgufFile::open(tiny_model()).unwrap(), WeightFormat::AsStored).unwrap();
    let kv_cache_bytes = blocks * 16 * model.kv_bytes_per_token();
    spawn(model, EngineConfig { kv_cache_bytes, block_size: 16, ..config }).unwrap()
}

fn request(prompt: &[u32], max_tokens: usize, sampling: SamplingParams) -> GenerateRequest {
    GenerateRequest { prompt: prompt.to_vec(), max_tokens, n: 1, sampling, stop_tokens: vec![], constraint: None }
}

async fn collect(engine: &EngineHandle, request: GenerateRequest) -> (Vec<u32>, FinishReason) {
    let mut events = engine.submit(request).unwrap();
    let mut tokens = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Token { id, .. } => tokens.push(id),
            Event::Finished { reason, usage, .. } => {
                assert_eq!(usage.completion_tokens as usize, tokens.len());
                return (tokens, reason);
            }
            Event::Admitted { .. } => {}
            Event::Failed(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("stream ended without Finished");
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![1, 2, 3], (10..60).collect(), vec![200, 17, 5, 99, 128, 7, 7], (0..130).map(|i| i * 3 % 256).collect()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_greedy_equals_one_by_one() {
    // A small token budget forces prompts to be split across steps and to share steps with decodes.
    let engine =
        engine(EngineConfig { max_running: 8, max_waiting: 8, max_batch_tokens: 48, ..EngineConfig::default() });
    let mut alone = Vec::new();
    for p in prompts() {
        alone.push(collect(&engine, request(&p, 24, SamplingParams::GREEDY)).await);
    }
    let together = futures_join(&engine, prompts().into_iter().map(|p| request(&p, 24, SamplingParams::GREEDY))).await;
    assert_eq!(alone, together);
    assert!(alone.iter().all(|(t, r)| t.len() == 24 && *r == FinishReason::Length));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_sampling_is_independent_of_batch_mates() {
    let engine = engine(EngineConfig::default());
    let seeded = SamplingParams { temperature: 1.0, top_p: 0.9, seed: Some(5), ..SamplingParams::default() };
    let (alone, _) = collect(&engine, request(&[5, 6, 7], 16, seeded.clone())).await;
    let mut batch: Vec<GenerateRequest> =
        prompts().into_iter().map(|p| request(&p, 16, SamplingParams { seed: None, ..seeded.clone() })).collect();
    batch.insert(2, request(&[5, 6, 7], 16, seeded));
    let together = futures_join(&engine, batch).await;
    assert_eq!(together[2].0, alone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_tokens_finish_with_stop_and_are_not_sent() {
    let engine = engine(EngineConfig::default());
    let (greedy, _) = collect(&engine, request(&[9, 8, 7], 12, SamplingParams::GREEDY)).await;
    let stop = greedy[5];
    let first = greedy.iter().position(|&t| t == stop).unwrap();
    let mut req = request(&[9, 8, 7], 12, SamplingParams::GREEDY);
    req.stop_tokens = vec![stop];
    let (tokens, reason) = {
        let mut events = engine.submit(req).unwrap();
        let mut tokens = Vec::new();
        loop {
            match events.recv().await.unwrap() {
                Event::Token { id, .. } => tokens.push(id),
                Event::Finished { reason, usage, .. } => {
                    assert_eq!(usage.completion_tokens as usize, first + 1, "the stop token counts as generated");
                    break (tokens, reason);
                }
                Event::Admitted { .. } => {}
                Event::Failed(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(tokens, greedy[..first]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_is_evicted() {
    let engine = engine(EngineConfig::default());
    let mut events = engine.submit(request(&[1, 2, 3], 500, SamplingParams::GREEDY)).unwrap();
    assert!(matches!(events.recv().await, Some(Event::Admitted { cached_tokens: 0 })));
    assert!(matches!(events.recv().await, Some(Event::Token { .. })));
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(1);
    while engine.stats().running > 0 {
        assert!(Instant::now() < deadline, "sequence still running 1 s after its client left");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let generated = engine.stats().generated_tokens;
    assert!(generated < 500, "the abandoned request ran to the end ({generated} tokens)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_is_bounded() {
    let engine =
        engine(EngineConfig { max_running: 1, max_waiting: 1, max_batch_tokens: 16, ..EngineConfig::default() });
    let _a = engine.submit(request(&[1], 400, SamplingParams::GREEDY)).unwrap();
    let _b = engine.submit(request(&[2], 400, SamplingParams::GREEDY)).unwrap();
    let refused = engine.submit(request(&[3], 4, SamplingParams::GREEDY));
    assert_eq!(refused.unwrap_err(), hearth_engine::SubmitError::Overloaded("2 requests in flight".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_prompt_tokens_are_bounded() {
    let config = EngineConfig {
        max_running: 1,
        max_waiting: 8,
        max_batch_tokens: 16,
        max_waiting_prompt_tokens: 300,
        ..EngineConfig::default()
    };
    let engine = engine(config);
    let long: Vec<u32> = (0..200).collect();
    let _a = engine.submit(request(&long, 300, SamplingParams::GREEDY)).unwrap();
    while engine.stats().running == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _b = engine.submit(request(&long, 300, SamplingParams::GREEDY)).unwrap();
    // One request always gets in however long its prompt; a second waiting prompt of 200 exceeds 300.
    let refused = engine.submit(request(&long, 4, SamplingParams::GREEDY));
    assert!(
        matches!(refused, Err(hearth_engine::SubmitError::Overloaded(ref m)) if m.contains("prompt tokens waiting")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_error_fails_the_request_not_the_engine() {
    let engine = engine(EngineConfig::default());
    let mut events = engine.submit(request(&[100_000], 4, SamplingParams::GREEDY)).unwrap();
    assert!(matches!(events.recv().await, Some(Event::Admitted { .. })));
    assert!(matches!(events.recv().await, Some(Event::Failed(_))));
    let (tokens, _) = collect(&engine, request(&[1, 2], 4, SamplingParams::GREEDY)).await;
    assert_eq!(tokens.len(), 4);
}

/// Submits all requests at once and collects them concurrently.
async fn futures_join(
    engine: &EngineHandle,
    requests: impl IntoIterator<Item = GenerateRequest>,
) -> Vec<(Vec<u32>, FinishReason)> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let engine = engine.clone();
            tokio::spawn(async move { collect(&engine, r).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Every choice's tokens and finish reason, by choice index.
async fn collect_choices(engine: &EngineHandle, request: GenerateRequest) -> Vec<(Vec<u32>, FinishReason)> {
    let n = request.n;
    let mut events = engine.submit(request).unwrap();
    let mut choices = vec![(Vec::new(), None); n];
    while let Some(event) = events.recv().await {
        match event {
            Event::Token { choice, id, .. } => {
                assert!(choices[choice].1.is_none(), "token after the choice finished");
                choices[choice].0.push(id);
            }
            Event::Finished { choice, reason, usage } => {
                assert_eq!(usage.completion_tokens as usize, choices[choice].0.len());
                choices[choice].1 = Some(reason);
            }
            Event::Admitted { .. } => {}
            Event::Failed(e) => panic!("generation failed: {e}"),
        }
    }
    choices.into_iter().map(|(tokens, reason)| (tokens, reason.expect("every choice finishes"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choices_share_the_prefilled_prompt() {
    let engine = engine(EngineConfig { max_batch_tokens: 32, prefix_caching: false, ..EngineConfig::default() });
    let prompt: Vec<u32> = (0..90).map(|i| i * 7 % 256).collect();
    let (greedy, _) = collect(&engine, request(&prompt, 12, SamplingParams::GREEDY)).await;
    let mut greedy_n = request(&prompt, 12, SamplingParams::GREEDY);
    greedy_n.n = 3;
    let steps_before = engine.stats().batch_tokens;
    let choices = collect_choices(&engine, greedy_n).await;
    assert!(choices.iter().all(|(tokens, _)| *tokens == greedy), "a forked cache must decode like the original");
    let batch_tokens = engine.stats().batch_tokens - steps_before;
    assert_eq!(batch_tokens, 90 + 3 * 11, "the prompt is prefilled once, then each choice decodes");

    let seeded = SamplingParams { temperature: 1.5, seed: Some(9), ..SamplingParams::default() };
    let (solo, _) = collect(&engine, request(&prompt, 12, seeded.clone())).await;
    let mut sampled = request(&prompt, 12, seeded);
    sampled.n = 4;
    let choices = collect_choices(&engine, sampled.clone()).await;
    assert_eq!(choices[0].0, solo, "choice 0 of a seeded request samples like the request alone");
    assert!(choices[1..].iter().any(|(tokens, _)| *tokens != solo), "the other choices draw their own tokens");
    assert_eq!(collect_choices(&engine, sampled).await, choices, "seeded choices are reproducible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_choice_stops_while_the_others_go_on() {
    let engine = engine(EngineConfig::default());
    // Long enough that the worker cannot finish choice 1 before the cancel reaches it.
    let mut req = request(&[4, 5, 6], 400, SamplingParams::GREEDY);
    req.n = 2;
    let mut events = engine.submit(req).unwrap();
    let mut counts = [0usize; 2];
    let mut finished = [false; 2];
    while let Some(event) = events.recv().await {
        match event {
            Event::Token { choice, .. } => {
                counts[choice] += 1;
                if choice == 1 && counts[1] == 3 {
                    events.cancel(1);
                }
            }
            Event::Finished { choice, .. } => finished[choice] = true,
            Event::Admitted { .. } => {}
            Event::Failed(e) => panic!("{e}"),
        }
    }
    assert_eq!(counts[0], 400);
    assert!(finished[0] && !finished[1]);
    assert!(counts[1] < 400, "choice 1 kept generating after it was cancelled: {} tokens", counts[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_pool_preempts_and_every_output_equals_its_solo_run() {
    // 8 sequences of 20 + 60 tokens need 5 blocks each (40 in all); the pool has 16, so sequences are
    // preempted and recomputed, and must still produce exactly their solo outputs.
    let prompts: Vec<Vec<u32>> = (0..8u32).map(|i| (0..20).map(|t| (t * 13 + i * 31) % 256).collect()).collect();
    for prefix_caching in [true, false] {
        let config = EngineConfig { max_running: 8, max_batch_tokens: 64, prefix_caching, ..EngineConfig::default() };
        let engine = engine_with_blocks(16, config);
        let mut alone = Vec::new();
        for p in &prompts {
            alone.push(collect(&engine, request(p, 60, SamplingParams::GREEDY)).await);
        }
        assert_eq!(engine.stats().preemptions, 0, "one at a time fits");
        let together = futures_join(&engine, prompts.iter().map(|p| request(p, 60, SamplingParams::GREEDY))).await;
        assert_eq!(together, alone, "prefix caching {prefix_caching}");
        assert!(engine.stats().preemptions > 0, "the pool was too small for all at once");
        // The last tokens can arrive just before the engine publishes its counters.
        let deadline = Instant::now() + Duration::from_secs(1);
        while engine.stats().kv_blocks_used > 0 {
            assert!(Instant::now() < deadline, "blocks still in use after every request finished");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_prefix_comes_from_the_cache() {
    let engine = engine(EngineConfig::default());
    let system: Vec<u32> = (0..100).map(|t| (t * 7) % 256).collect();
    let first = [system.clone(), vec![1, 2, 3]].concat();
    let second = [system.clone(), vec![9, 8, 7, 6]].concat();
    let usage = |req| {
        let engine = engine.clone();
        async move {
            let mut events = engine.submit(req).unwrap();
            let mut tokens = Vec::new();
            loop {
                match events.recv().await.unwrap() {
                    Event::Token { id, .. } => tokens.push(id),
                    Event::Finished { usage, .. } => break (tokens, usage.cached_tokens),
                    Event::Admitted { .. } => {}
                    Event::Failed(e) => panic!("{e}"),
                }
            }
        }
    };
    let (a, cached) = usage(request(&first, 8, SamplingParams::GREEDY)).await;
    assert_eq!(cached, 0);
    let (b, cached) = usage(request(&second, 8, SamplingParams::GREEDY)).await;
    assert_eq!(cached, 96, "the 6 full blocks of the shared 100 tokens");
    let (a_again, cached) = usage(request(&first, 8, SamplingParams::GREEDY)).await;
    assert_eq!(cached, 96, "the 7th block is only reused when one more token is left to compute");
    assert_eq!(a_again, a, "cached keys and values give the same tokens");
    let uncached = engine_with_blocks(64, EngineConfig { prefix_caching: false, ..EngineConfig::default() });
    assert_eq!(collect(&uncached, request(&second, 8, SamplingParams::GREEDY)).await.0, b);
    let stats = engine.stats();
    assert_eq!((stats.prompt_tokens_cached, stats.prompt_tokens_queried), (192, 103 + 104 + 103));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_can_never_fit_is_refused() {
    let engine = engine_with_blocks(4, EngineConfig::default());
    assert_eq!(engine.kv_capacity_tokens(), 64);
    assert!(matches!(engine.submit(request(&[1; 40], 25, SamplingParams::GREEDY)), Err(SubmitError::TooLarge(_))));
    assert!(engine.submit(request(&[1; 40], 24, SamplingParams::GREEDY)).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_prompt_is_prefilled_in_chunks_while_streams_keep_decoding() {
    let engine = engine(EngineConfig { max_batch_tokens: 32, ..EngineConfig::default() });
    let mut streams: Vec<_> =
        (0..4u32).map(|i| engine.submit(request(&[i + 1, 2, 3], 400, SamplingParams::GREEDY)).unwrap()).collect();
    for s in &mut streams {
        while !matches!(s.recv().await, Some(Event::Token { .. })) {}
    }
    let before = engine.stats();
    let prompt: Vec<u32> = (0..400).map(|t| t % 256).collect();
    let mut long = engine.submit(request(&prompt, 4, SamplingParams::GREEDY)).unwrap();
    while !matches!(long.recv().await, Some(Event::Token { .. })) {}
    let after = engine.stats();
    let steps = after.steps - before.steps;
    let generated = after.generated_tokens - before.generated_tokens;
    // 32-token steps, 4 of them decodes: the prompt needs at least 400 / 28 steps, and every one of them
    // also gave each running stream its next token.
    assert!(steps >= 400 / 28, "the prompt was prefilled in {steps} steps");
    assert!(generated >= 4 * (steps - 1), "{generated} tokens decoded over {steps} steps");
    drop(streams);
}
