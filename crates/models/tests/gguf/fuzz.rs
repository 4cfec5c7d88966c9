//! The fuzz loop: input `i` comes from seed `i` (so a failure names the input that reproduces it), half
//! mutated real headers ([`mutate`]: the tiny models' files and the hostile corpus), half generated
//! ([`generate`]). Each is parsed in memory by `Header::read`; it must return, within the input's length
//! plus [`SLACK`] bytes of heap. An accepted header must answer every lookup, and a generated header
//! without a hostile choice must be accepted and read back as written.
//!
//! CI runs [`DEFAULT_INPUTS`]; `HEARTH_GGUF_FUZZ_INPUTS=N` runs N, and `HEARTH_GGUF_FUZZ_SEED=i` input
//! `i` alone. A failing input is written to the temporary directory, to inspect or to add to the corpus.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use hearth_models::gguf::{Header, TensorType, Value};
use hearth_models::tiny::{self, TinySpec};

use super::alloc::{peak_while, SLACK};
use super::generate::{generate, Expected};
use super::hostile;
use super::mutate::{mutate, Seed};
use super::writer::{kind, Val};

/// Inputs a CI run checks: about 20 s on two idle cores, 40 s on two busy ones.
const DEFAULT_INPUTS: u64 = 1_500_000;

/// xorshift64*: small, fast and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Real headers first (the tiny models' files, [`REAL`] of them), then the hostile corpus.
fn seeds() -> Vec<Seed> {
    let dir = std::env::temp_dir().join(format!("hearth-gguf-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let small = TinySpec { dim: 32, ffn: 32, ..TinySpec::default() };
    let thinking = TinySpec { head_scale: Some(1.0), thinking: true, ..small };
    let mut seeds = Vec::new();
    for (name, spec) in [("tiny.gguf", small), ("tiny-thinking.gguf", thinking)] {
        let path = tiny::write_llama_with(&dir, 7, spec, name).unwrap();
        seeds.push(Seed::new(std::fs::read(path).unwrap()));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let mut corpus: Vec<_> = std::fs::read_dir(hostile::dir()).unwrap().map(|e| e.unwrap().path()).collect();
    corpus.sort();
    for path in corpus {
        seeds.push(Seed::new(std::fs::read(&path).unwrap()));
    }
    seeds
}

/// How many of the seeds are real headers.
const REAL: usize = 2;

/// Input `i`, and what it must read back as if it is a well-formed generated header.
fn input(i: u64, seeds: &[Seed]) -> (Vec<u8>, Option<Expected>) {
    let mut rng = Rng::new(i);
    if rng.below(2) == 0 {
        // Half the mutations start from a real header, which parses as far as the mutation lets it.
        let seed = if rng.below(2) == 0 { &seeds[rng.below(REAL)] } else { rng.pick(seeds) };
        (mutate(&mut rng, seed, seeds), None)
    } else {
        let generated = generate(&mut rng);
        (generated.bytes, generated.expected)
    }
}

/// What one input did.
enum Outcome {
    Accepted,
    Refused,
}

/// Parses input `i`; `Err` says what went wrong.
fn check(i: u64, bytes: &[u8], expected: Option<&Expected>) -> Result<(Outcome, usize), String> {
    let (parsed, peak) = peak_while(Some(i), || Header::read(Cursor::new(bytes)));
    let over = peak.saturating_sub(bytes.len());
    if over > SLACK {
        return Err(format!("parsing {} bytes took {peak} bytes of heap", bytes.len()));
    }
    let header = match (parsed, expected) {
        (Err(e), Some(_)) => return Err(format!("a well-formed header was refused: {e}")),
        (Err(e), None) if e.to_string().is_empty() => return Err("refused without a reason".into()),
        (Err(_), None) => return Ok((Outcome::Refused, over)),
        (Ok(header), _) => header,
    };
    for info in header.tensor_infos() {
        if header.tensor_info(info.name) != Some(info) || info.shape().is_empty() {
            return Err(format!("tensor `{}` does not look itself up", info.name));
        }
    }
    for key in ["general.architecture", "general.alignment", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", ""] {
        if let Some(Value::Array(array)) = header.value(key) {
            let decoded = [array.to_i64s().map(|v| v.len()), array.to_f32s().map(|v| v.len())];
            let strings = array.strings().map(|s| s.count());
            if decoded.iter().chain([&strings]).flatten().any(|&n| n != array.len()) {
                return Err(format!("`{key}` decodes to the wrong number of elements"));
            }
        }
    }
    if let Some(expected) = expected {
        reads_back(&header, expected)?;
    }
    Ok((Outcome::Accepted, over))
}

/// A scalar value's type and bits, as the writer writes them.
fn bits(value: &Value<'_>) -> Option<(u8, u64)> {
    Some(match *value {
        Value::U8(x) => (kind::U8, x.into()),
        Value::I8(x) => (kind::I8, x as u8 as u64),
        Value::U16(x) => (kind::U16, x.into()),
        Value::I16(x) => (kind::I16, x as u16 as u64),
        Value::U32(x) => (kind::U32, x.into()),
        Value::I32(x) => (kind::I32, x as u32 as u64),
        Value::F32(x) => (kind::F32, x.to_bits().into()),
        Value::Bool(x) => (kind::BOOL, x.into()),
        Value::U64(x) => (kind::U64, x),
        Value::I64(x) => (kind::I64, x as u64),
        Value::F64(x) => (kind::F64, x.to_bits()),
        Value::String(_) | Value::Array(_) => return None,
    })
}

/// `bits` of type `kind` as the parser reads them: the low bytes, and a bool as 0 or 1.
fn written(kind: u8, bits: u64) -> (u8, u64) {
    let bytes = super::writer::width(kind).unwrap();
    let low = if bytes == 8 { bits } else { bits & ((1 << (8 * bytes)) - 1) };
    (kind, if kind == kind::BOOL { u64::from(low != 0) } else { low })
}

/// Whether `value` is what `val` wrote.
fn same(value: &Value<'_>, val: &Val) -> bool {
    match (value, val) {
        (Value::String(s), Val::Str(bytes)) => s.as_bytes() == bytes,
        (Value::Array(array), Val::Array(element, items)) if array.len() == items.len() => match *element {
            kind::STRING => {
                let strings: Option<Vec<Vec<u8>>> = array.strings().map(|s| s.map(|s| s.into_owned().into()).collect());
                strings == Some(items.iter().map(|i| if let Val::Str(s) = i { s.clone() } else { vec![] }).collect())
            }
            kind::BOOL => {
                let ours: Vec<bool> = items.iter().map(|i| matches!(i, Val::Scalar(_, b) if *b as u8 != 0)).collect();
                array.to_bools() == Some(ours)
            }
            kind::F32 | kind::F64 => {
                let f = |v: &Val| match *v {
                    Val::Scalar(kind::F32, bits) => f32::from_bits(bits as u32),
                    Val::Scalar(_, bits) => f64::from_bits(bits) as f32,
                    _ => f32::NAN,
                };
                let ours: Vec<u32> = items.iter().map(|i| f(i).to_bits()).collect();
                array.to_f32s().map(|v| v.iter().map(|x| x.to_bits()).collect()) == Some(ours)
            }
            element => {
                let int = |v: &Val| match *v {
                    Val::Scalar(_, bits) => match written(element, bits) {
                        (kind::I8, b) => Some(b as u8 as i8 as i64),
                        (kind::I16, b) => Some(b as u16 as i16 as i64),
                        (kind::I32, b) => Some(b as u32 as i32 as i64),
                        (kind::I64, b) => Some(b as i64),
                        (_, b) => i64::try_from(b).ok(),
                    },
                    _ => None,
                };
                array.to_i64s() == items.iter().map(int).collect::<Option<Vec<_>>>()
            }
        },
        (value, Val::Scalar(kind, b)) => bits(value) == Some(written(*kind, *b)),
        _ => false,
    }
}

/// Every key and tensor of a well-formed generated header reads back as written.
fn reads_back(header: &Header, expected: &Expected) -> Result<(), String> {
    for (key, val) in &expected.keys {
        match header.value(key) {
            Some(value) if same(&value, val) => {}
            other => return Err(format!("`{key}` reads back as {other:?}, not {val:?}")),
        }
    }
    if header.tensor_infos().count() != expected.tensors.len() {
        return Err(format!("{} tensors read back, not {}", header.tensor_infos().count(), expected.tensors.len()));
    }
    for (name, ne, dtype) in &expected.tensors {
        let shape: Vec<usize> = ne.iter().rev().map(|&d| d as usize).collect();
        match header.tensor_info(name) {
            Some(info) if info.shape() == shape && Some(info.dtype) == TensorType::from_id(*dtype) => {}
            other => return Err(format!("tensor `{name}` reads back as {other:?}, not {ne:?} of type {dtype}")),
        }
    }
    Ok(())
}

#[test]
fn fuzzed_headers_are_refused_or_read_within_their_size() {
    let seeds = seeds();
    let var = |name: &str| std::env::var(name).ok().map(|n| n.parse::<u64>().expect("a number"));
    let inputs = match var("HEARTH_GGUF_FUZZ_SEED") {
        Some(i) => i..i + 1,
        None => 0..var("HEARTH_GGUF_FUZZ_INPUTS").unwrap_or(DEFAULT_INPUTS),
    };
    let workers =
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(inputs.end as usize - inputs.start as usize);
    let start = Instant::now();
    let results: Vec<(Vec<String>, u64, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (seeds, inputs) = (&seeds, inputs.clone());
                scope.spawn(move || {
                    let (mut failures, mut accepted, mut most_over) = (Vec::new(), 0u64, 0usize);
                    for i in inputs.skip(w).step_by(workers) {
                        let (bytes, expected) = input(i, seeds);
                        let result = catch_unwind(AssertUnwindSafe(|| check(i, &bytes, expected.as_ref())));
                        let failure = match result {
                            Ok(Ok((outcome, over))) => {
                                accepted += matches!(outcome, Outcome::Accepted) as u64;
                                most_over = most_over.max(over);
                                continue;
                            }
                            Ok(Err(why)) => why.chars().take(400).collect(),
                            Err(panic) => {
                                let message = panic.downcast_ref::<&str>().map(|s| s.to_string());
                                let message = message.or_else(|| panic.downcast_ref::<String>().cloned());
                                format!("panicked: {}", message.unwrap_or_default())
                            }
                        };
                        let kept = std::env::temp_dir().join(format!("hearth-gguf-fuzz-input-{i}.gguf"));
                        std::fs::write(&kept, &bytes).unwrap();
                        failures.push(format!("input {i} ({}): {failure}", kept.display()));
                        if failures.len() >= 10 {
                            break;
                        }
                    }
                    (failures, accepted, most_over)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = inputs.end - inputs.start;
    let accepted: u64 = results.iter().map(|r| r.1).sum();
    let most_over = results.iter().map(|r| r.2).max().unwrap_or(0);
    eprintln!(
        "gguf fuzz: {count} inputs from {} seeds on {workers} threads in {:.1?}: {accepted} accepted, {} refused; \
         at most {most_over} bytes of heap beyond an input's length",
        seeds.len(),
        start.elapsed(),
        count - accepted,
    );
    let failures: Vec<String> = results.into_iter().flat_map(|r| r.0).collect();
    assert!(
        failures.is_empty(),
        "{} failing inputs (HEARTH_GGUF_FUZZ_SEED=<input> reruns one):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
