//! Model files are untrusted input: a damaged GGUF (flipped bytes, extreme counts and sizes, cut short)
//! must load as an error or as a model that runs, never panic or abort. Each case mutates the tiny model's
//! file, then goes the whole way a served model goes: header, tokenizer, template, weights and one forward
//! pass.

use std::panic::AssertUnwindSafe;

use hearth_models::{SeqStep, WeightFormat};
use hearth_server::model;

use crate::util::{init, tiny_model};

/// Mutated files tried in CI; `HEARTH_DAMAGED_FILES=N` tries N.
const CASES: usize = 1500;

/// A deterministic xorshift generator, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values that break naive size arithmetic when they land on a count, length, offset or dimension.
const EXTREMES: [u64; 8] = [0, 1, 0xFF, 0xFFFF_FFFF, 1 << 32, 1 << 40, i64::MAX as u64, u64::MAX];

fn mutate(original: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = original.to_vec();
    // The header (metadata, vocabulary, tensor table) is at the front; most mutations aim there.
    for _ in 0..1 + rng.below(3) {
        let front = bytes.len().min(32 << 10);
        match rng.below(4) {
            0 => {
                let at = rng.below(front);
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(front - 8);
                let value = EXTREMES[rng.below(EXTREMES.len())];
                bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            2 => {
                let at = rng.below(front - 4);
                let value = EXTREMES[rng.below(EXTREMES.len())] as u32;
                bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            _ => bytes.truncate(rng.below(bytes.len())),
        }
        if bytes.len() < 64 {
            break;
        }
    }
    bytes
}

/// Loads `path` as the server would and, if that works, runs one forward pass; `Err` is any refusal.
fn load_and_run(path: &std::path::Path) -> Result<(), String> {
    let (served, lm) =
        model::load(path, None, WeightFormat::AsStored, None, Default::default()).map_err(|e| e.to_string())?;
    let prompt = served.tokenizer.encode_completion_prompt("Hello there").map_err(|e| e.to_string())?;
    let blocks: Vec<u32> = (0..4).collect();
    let mut pool = lm.new_pool(16, blocks.len());
    let step = SeqStep { tokens: &prompt[..prompt.len().min(48)], start: 0, blocks: &blocks, want_logits: true };
    lm.forward(&mut pool, &[step]).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn damaged_model_files_are_errors_not_crashes() {
    init();
    let original = std::fs::read(tiny_model()).unwrap();
    let path = std::env::temp_dir().join(format!("hearth-damaged-{}.gguf", std::process::id()));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let cases = std::env::var("HEARTH_DAMAGED_FILES").map_or(CASES, |n| n.parse().unwrap());
    let (mut refused, mut ran) = (0, 0);
    for case in 0..cases {
        let bytes = mutate(&original, &mut rng);
        std::fs::write(&path, &bytes).unwrap();
        match std::panic::catch_unwind(AssertUnwindSafe(|| load_and_run(&path))) {
            Ok(Ok(())) => ran += 1,
            Ok(Err(_)) => refused += 1,
            Err(_) => {
                let kept = std::env::temp_dir().join(format!("hearth-damaged-case-{case}.gguf"));
                std::fs::copy(&path, &kept).unwrap();
                panic!("case {case} panicked; the file is kept at {}", kept.display());
            }
        }
    }
    std::fs::remove_file(&path).unwrap();
    eprintln!("{cases} damaged files: {refused} refused, {ran} loaded and ran");
    assert!(refused > cases / 4 && ran > 0, "{refused} refused, {ran} ran: the mutations do not reach both outcomes");
}
