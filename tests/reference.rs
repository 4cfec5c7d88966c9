//! The real default model against an independent implementation's answers (llama.cpp's tokenizer,
//! chat template and greedy log-probabilities), recorded in `tests/fixtures/smollm2-reference.json`.

use hearth_models::{CausalLm, SeqStep, WeightFormat};
use hearth_server::model;
use serde_json::Value;

use crate::util::{default_model, init, root, text_messages};

fn reference() -> Value {
    let path = root().join("tests/fixtures/smollm2-reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn load(weights: WeightFormat) -> (model::ServedModel, Box<dyn CausalLm>) {
    init();
    model::load(&default_model(), None, weights, None, Default::default()).unwrap()
}

#[test]
fn tokenizer_matches_llama_cpp() {
    let (served, _) = load(WeightFormat::AsStored);
    let t = &served.tokenizer;
    for case in reference()["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(t.encode_text(text).unwrap(), ids(&case["ids_plain"]), "plain: {text:?}");
        assert_eq!(
            t.encode_with_control(text).unwrap(),
            ids(&case["ids_with_special_tokens_parsed"]),
            "control: {text:?}"
        );
        assert_eq!(t.decode(&ids(&case["ids_plain"])).unwrap(), text, "round trip: {text:?}");
    }
    assert_eq!(t.end_of_generation(), [2, 0], "<|im_end|> (EOS) and <|endoftext|> end generation");
}

#[test]
fn chat_template_renders_like_llama_cpp() {
    let (served, _) = load(WeightFormat::AsStored);
    for case in reference()["chat_template"].as_array().unwrap() {
        let messages = text_messages(&case["messages"]);
        let rendered = served
            .template
            .as_ref()
            .unwrap()
            .render(&messages, &[], case["add_generation_prompt"].as_bool().unwrap(), &Default::default())
            .unwrap();
        assert_eq!(rendered.text, case["prompt"].as_str().unwrap());
        assert_eq!(served.tokenizer.encode_prompt(&rendered).unwrap(), ids(&case["prompt_ids"]));
    }
}

/// Measured spread between implementations of the same weights: dense f32 matmuls match llama.cpp's top
/// token within 0.001 but its 5th within 0.17; activation quantization (Q8_0/Q8_1) and llama.cpp's f16
/// KV cache move tail log-probabilities by up to 0.42 on this 30-layer model. A real bug moves them by nats.
const TOLERANCE: f32 = 0.5;

#[test]
fn first_token_log_probabilities_match_llama_cpp() {
    let cases = reference()["greedy_reference"]["cases"].as_array().unwrap().clone();
    for weights in [WeightFormat::AsStored, WeightFormat::Q8_0] {
        let (served, model) = load(weights);
        for case in &cases {
            let prompt = served.tokenizer.encode_with_control(case["prompt"].as_str().unwrap()).unwrap();
            let blocks: Vec<u32> = (0..prompt.len().div_ceil(16) as u32).collect();
            let mut pool = model.new_pool(16, blocks.len());
            let step = SeqStep { tokens: &prompt, start: 0, blocks: &blocks, want_logits: true };
            let logits = model.forward(&mut pool, &[step]).unwrap().remove(0);
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
            for top in case["first_token_top5"].as_array().unwrap() {
                let id = top["id"].as_u64().unwrap() as usize;
                let ours = logits[id] - log_sum;
                let theirs = top["logprob"].as_f64().unwrap() as f32;
                assert!((ours - theirs).abs() < TOLERANCE, "{weights:?} token {id}: {ours} vs llama.cpp {theirs}");
            }
            let mut ranked: Vec<usize> = (0..logits.len()).collect();
            ranked.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            let ours: Vec<u64> = ranked[..8].iter().map(|&i| i as u64).collect();
            let theirs: Vec<u64> =
                case["first_token_top5"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
            assert_eq!(ours[0], theirs[0], "{weights:?} greedy first token");
            // Near-ties may swap places at the tail; each of llama.cpp's top 5 must still rank in our top 8.
            assert!(
                theirs.iter().all(|t| ours.contains(t)),
                "{weights:?}: our top 8 {ours:?}, llama.cpp's top 5 {theirs:?}"
            );
        }
    }
}
