//! Hearth's GGUF tokenizers against llama.cpp, token for token.
//!
//! `tests/fixtures/tokenizer-reference.json` (written by `make_tokenizer_reference.py`, which documents
//! how) holds llama.cpp's ids and text for tricky strings under real vocabularies: Gemma 3's
//! SentencePiece vocabulary as shipped and with `add_space_prefix` set (as Llama 2, Mistral and Phi-3
//! files have it), and SmolLM2's byte-level BPE vocabulary under each supported family of
//! `tokenizer.ggml.pre`. Each tokenizer is built the way the server builds it, from the real file's
//! metadata, with the override the fixture names.

use std::path::PathBuf;
use std::time::Instant;

use hearth_models::GgufFile;
use hearth_text::{RenderedPrompt, Tokenizer};
use serde_json::Value;

use crate::util::root;

/// Control tokens llama.cpp also ends generation on because they name fill-in-the-middle roles
/// (`<reponame>` in SmolLM2); Hearth serves chat and completions, not FIM, so they stay ordinary.
const FIM_TOKENS: &[&str] = &["<reponame>", "<|repo_name|>", "<fim_pad>", "<|fim_pad|>", "<|file_sep|>", "<fim-pad>"];

fn reference() -> Value {
    let path = root().join("tests/fixtures/tokenizer-reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn variant(name: &str) -> Value {
    let all = reference()["variants"].as_array().unwrap().clone();
    all.into_iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no variant {name} in the fixture"))
}

fn model_file(name: &str) -> PathBuf {
    let path = root().join("models").join(name);
    assert!(path.exists(), "{} is missing: the tokenizer reference tests read its metadata", path.display());
    path
}

/// The tokenizer the server would build for the variant's file, with the variant's overrides.
fn tokenizer(variant: &Value) -> Tokenizer {
    let file = GgufFile::open(&model_file(variant["source"].as_str().unwrap())).unwrap();
    let mut vocab = hearth_server::model::vocab(&file).unwrap();
    for (key, value) in variant["overrides"].as_object().unwrap() {
        match key.as_str() {
            "tokenizer.ggml.pre" => vocab.pre = Some(value.as_str().unwrap().to_string()),
            "tokenizer.ggml.add_space_prefix" => vocab.add_space_prefix = Some(value.as_bool().unwrap()),
            other => panic!("the fixture overrides {other}, which this test does not know"),
        }
    }
    Tokenizer::from_gguf(&vocab).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks every case of one variant; returns how many it checked and every mismatch.
fn check(name: &str) -> (usize, Vec<String>) {
    let variant = variant(name);
    let t = tokenizer(&variant);
    let mut wrong = Vec::new();
    let mut expect = |what: &str, text: &str, ours: &dyn std::fmt::Debug, theirs: &dyn std::fmt::Debug| {
        let (ours, theirs) = (format!("{ours:?}"), format!("{theirs:?}"));
        if ours != theirs {
            wrong.push(format!("{name} {what} {text:?}:\n    ours       {ours}\n    llama.cpp  {theirs}"));
        }
    };
    let cases = variant["cases"].as_array().unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let (plain, parsed, special) = (ids(&case["plain"]), ids(&case["parsed"]), ids(&case["special"]));
        expect("plain", text, &t.encode_text(text).unwrap(), &plain);
        expect("parsed", text, &t.encode_with_control(text).unwrap(), &parsed);
        expect("completion prompt", text, &t.encode_completion_prompt(text).unwrap(), &special);
        expect("plain text", text, &t.decode(&plain).unwrap(), &case["plain_text"].as_str().unwrap());
        expect("parsed text", text, &t.decode(&parsed).unwrap(), &case["parsed_text"].as_str().unwrap());
        // A chat prompt whose text is all message content: the plain ids, with BOS/EOS as llama-server adds them.
        let whole = 0..text.len();
        let all_content = RenderedPrompt { text: text.to_string(), content_spans: vec![whole] };
        let with_specials: Vec<u32> = special[..special.len() - parsed.len()].iter().chain(&plain).copied().collect();
        expect("content-only chat prompt", text, &t.encode_prompt(&all_content).unwrap(), &with_specials);
    }
    for (id, piece) in variant["pieces"].as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        expect("token bytes", id.to_string().as_str(), &hex(&t.token_bytes(id)), &piece.as_str().unwrap());
    }
    let eog = ids(&variant["eog"]);
    let ours = t.end_of_generation();
    let fim = |id: &u32| FIM_TOKENS.iter().any(|f| t.token_bytes(*id) == f.as_bytes());
    let theirs: Vec<u32> = eog.iter().filter(|id| !fim(id)).copied().collect();
    let mut sorted = ours.to_vec();
    sorted.sort_unstable();
    expect("end of generation", "", &sorted, &theirs);
    (cases.len(), wrong)
}

#[track_caller]
fn check_all(names: &[&str]) {
    let (mut checked, mut wrong) = (0, Vec::new());
    for name in names {
        let (n, w) = check(name);
        checked += n;
        wrong.extend(w);
    }
    assert!(wrong.is_empty(), "{} mismatches in {checked} cases:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn gemma_sentencepiece_matches_llama_cpp() {
    check_all(&["gemma"]);
}

#[test]
fn sentencepiece_with_a_space_prefix_matches_llama_cpp() {
    check_all(&["gemma-space-prefix"]);
}

#[test]
fn byte_level_bpe_pre_tokenizers_match_llama_cpp() {
    check_all(&["smollm2-smollm", "smollm2-default", "smollm2-gpt-2", "smollm2-llama-bpe", "smollm2-qwen2"]);
}

#[test]
fn a_long_prompt_encodes_in_linear_time() {
    // One 350 KB piece of text with no special token in it, so SentencePiece merges over all of it at once.
    let t = tokenizer(&variant("gemma"));
    let unit = "The quick brown fox jumps over the lazy dog; 1234567 naïve 日本語 🙂 ";
    let count = |n: usize| t.encode_text(&unit.repeat(n)).unwrap().len();
    let (first, next) = (count(1), count(2) - count(1));
    let text = unit.repeat(5_000);
    let started = Instant::now();
    let long = t.encode_text(&text).unwrap();
    let took = started.elapsed();
    assert_eq!(long.len(), first + 4_999 * next, "the repeated unit tokenizes the same way throughout");
    assert!(long.len() > 100_000, "{} tokens", long.len());
    assert_eq!(t.decode(&long).unwrap(), text);
    // A quadratic merge loop takes minutes here; ours takes well under a second in release builds.
    assert!(took.as_secs() < 30, "{} tokens took {took:?}", long.len());
}
