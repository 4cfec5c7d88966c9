//! Headers generated from nothing: metadata of every value type and tensors of random shapes, types and
//! offsets, where each choice is now and then made hostile (a count, length or dimension that lies or is
//! extreme, an unknown type, a nested array, a misaligned or distant offset, a duplicate, invalid UTF-8,
//! data or a header cut short). A header without a hostile choice must parse and read back as written.

use super::fuzz::Rng;
use super::mutate::EXTREMES;
use super::writer::{kind, width, Dtype, Val, Writer, F16, F32, IQ2_XXS, Q4_0, Q4_K, Q8_0};

/// What a well-formed generated header reads back as.
pub struct Expected {
    /// Every key and its value.
    pub keys: Vec<(String, Val)>,
    /// Every tensor: name, GGUF shape (innermost first), type id.
    pub tensors: Vec<(String, Vec<u64>, u32)>,
}

/// A generated header, with what it reads back as when no choice in it was hostile.
pub struct Generated {
    pub bytes: Vec<u8>,
    pub expected: Option<Expected>,
}

/// Keys real files have, and some that only test the parser.
const KEYS: &[&str] = &[
    "general.architecture",
    "general.name",
    "general.alignment",
    "general.file_type",
    "llama.block_count",
    "llama.rope.freq_base",
    "tokenizer.ggml.model",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.merges",
    "tokenizer.chat_template",
    "",
    "a",
];

const TENSORS: &[&str] = &["token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_q.weight", ""];

/// Tensor types: some known ones (I8, F64 and MXFP4 among them), and ids GGML does not define.
const TYPES: &[Dtype] = &[
    F32,
    F16,
    Q4_0,
    Q8_0,
    Q4_K,
    IQ2_XXS,
    Dtype { id: 24, block: 1, bytes: 1 },
    Dtype { id: 28, block: 1, bytes: 8 },
    Dtype { id: 39, block: 32, bytes: 17 },
];
const UNKNOWN_TYPES: &[u32] = &[4, 5, 31, 32, 33, 36, 37, 38, 40, 255, 1 << 16, u32::MAX];

/// Text with multi-byte characters.
const PIECES: &[&str] = &["a", "Z", "0", " ", ".", "\n", "é", "\u{2581}", "日", "\u{1F600}", "<|im_end|>"];

struct Gen<'a> {
    rng: &'a mut Rng,
    /// A choice is hostile once in `odds`.
    odds: usize,
    hostile: bool,
}

impl Gen<'_> {
    /// Whether to make this choice hostile.
    fn hostile(&mut self) -> bool {
        let hostile = self.rng.below(self.odds) == 0;
        self.hostile |= hostile;
        hostile
    }

    /// `actual`, or now and then a count or length that lies.
    fn size(&mut self, actual: u64) -> u64 {
        if !self.hostile() {
            return actual;
        }
        match self.rng.below(4) {
            0 => *self.rng.pick(EXTREMES),
            1 => actual + 1 + self.rng.below(8) as u64,
            2 => actual.saturating_sub(1 + self.rng.below(8) as u64),
            _ => self.rng.next(),
        }
    }

    /// UTF-8 text, or now and then not.
    fn text(&mut self) -> Vec<u8> {
        let pieces = if self.rng.below(16) == 0 { self.rng.below(300) } else { self.rng.below(12) };
        let mut text: Vec<u8> = (0..pieces).flat_map(|_| self.rng.pick(PIECES).bytes()).collect();
        if self.hostile() {
            let at = self.rng.below(text.len() + 1);
            text.insert(at, *self.rng.pick(&[0xFF, 0xC3, 0x80, 0xED]));
        }
        text
    }

    /// A well-formed value of any type.
    fn value(&mut self) -> Val {
        match self.rng.below(13) as u8 {
            kind::STRING => Val::Str(self.text()),
            kind::ARRAY => {
                let element = self.rng.below(13) as u8;
                let element = if element == kind::ARRAY { kind::STRING } else { element };
                let len = if self.rng.below(8) == 0 { self.rng.below(2000) } else { self.rng.below(8) };
                let items = (0..len).map(|_| match element {
                    kind::STRING => Val::Str(self.text()),
                    _ => Val::Scalar(element, self.rng.next()),
                });
                Val::Array(element, items.collect())
            }
            fixed => Val::Scalar(fixed, self.rng.next()),
        }
    }

    /// Writes `value`, its lengths and element types now and then made hostile.
    fn write(&mut self, w: &mut Writer, value: &Val) {
        match value {
            Val::Scalar(kind, bits) => {
                w.raw(&bits.to_le_bytes()[..width(*kind).unwrap()]);
            }
            Val::Str(s) => {
                let len = self.size(s.len() as u64);
                w.u64(len).raw(s);
            }
            Val::Array(element, items) => {
                let element = if self.hostile() { *self.rng.pick(&[9, 13, 99, u32::MAX]) } else { u32::from(*element) };
                let len = self.size(items.len() as u64);
                w.u32(element).u64(len);
                items.iter().for_each(|item| self.write(w, item));
            }
        }
    }

    /// A name not yet `taken` (unless hostile), from `names` or numbered.
    fn name(&mut self, names: &[&str], taken: impl Fn(&str) -> bool, i: usize, numbered: &str) -> String {
        let name = if self.rng.below(2) == 0 { self.rng.pick(names).to_string() } else { format!("{numbered}{i}") };
        if taken(&name) && !self.hostile() {
            return format!("{numbered}{i}");
        }
        name
    }
}

/// A header from seed `rng`.
pub fn generate(rng: &mut Rng) -> Generated {
    let odds = *rng.pick(&[3, 10, 40, usize::MAX]);
    let mut g = Gen { rng, odds, hostile: false };
    let key_count = if g.rng.below(16) == 0 { g.rng.below(400) } else { g.rng.below(10) };
    let tensor_count = if g.rng.below(16) == 0 { g.rng.below(200) } else { g.rng.below(6) };
    let mut w = Writer::default();
    w.raw(if g.hostile() { b"GGML" } else { b"GGUF" });
    let version = if g.hostile() { *g.rng.pick(&[0, 1, 4, 99, u32::MAX]) } else { *g.rng.pick(&[2, 3]) };
    w.u32(version);
    let (tensors_written, keys_written) = (g.size(tensor_count as u64), g.size(key_count as u64));
    w.u64(tensors_written).u64(keys_written);

    let (mut keys, mut alignment) = (Vec::<(String, Val)>::new(), 32u64);
    for i in 0..key_count {
        let key = g.name(KEYS, |name| keys.iter().any(|(k, _)| k == name), i, "k.");
        let value = if key == "general.alignment" {
            alignment = 1 << g.rng.below(9);
            if g.hostile() {
                g.rng.pick(&[Val::u32(0), Val::u32(24), Val::u32(u32::MAX), Val::Scalar(kind::U64, 32)]).clone()
            } else {
                Val::u32(alignment as u32)
            }
        } else {
            g.value()
        };
        let mut key_bytes = key.clone().into_bytes();
        if g.hostile() {
            key_bytes.push(0xFF);
        }
        let len = g.size(key_bytes.len() as u64);
        w.u64(len).raw(&key_bytes);
        let kind = if g.hostile() { *g.rng.pick(&[13, 14, 99, 255, u32::MAX]) } else { value.kind().into() };
        w.u32(kind);
        g.write(&mut w, &value);
        keys.push((key, value));
    }

    let (mut tensors, mut offset) = (Vec::<(String, Vec<u64>, u32)>::new(), 0u64);
    for i in 0..tensor_count {
        let mut name = g.name(TENSORS, |name| tensors.iter().any(|(n, ..)| n == name), i, "blk.");
        if g.hostile() {
            name = "x".repeat(257);
        }
        let dtype = *g.rng.pick(TYPES);
        let rank = 1 + g.rng.below(4);
        let mut ne: Vec<u64> = (0..rank).map(|_| 1 + g.rng.below(2) as u64).collect();
        ne[0] = dtype.block * (1 + g.rng.below(2) as u64);
        if g.hostile() {
            let d = g.rng.below(rank);
            ne[d] = if g.rng.below(2) == 0 { *g.rng.pick(EXTREMES) } else { ne[d] + 1 };
        }
        let len = g.size(name.len() as u64);
        w.u64(len).raw(name.as_bytes());
        let rank_written = if g.hostile() { *g.rng.pick(&[0, 5, 8, u32::MAX]) } else { rank as u32 };
        w.u32(rank_written);
        for &d in &ne {
            w.u64(d);
        }
        let type_id = if g.hostile() { *g.rng.pick(UNKNOWN_TYPES) } else { dtype.id };
        let at = if g.hostile() { offset.wrapping_add(*g.rng.pick(&[1, 3, 1 << 40, u64::MAX - 31])) } else { offset };
        w.u32(type_id).u64(at);
        let bytes = ne.iter().fold(1u64, |n, &d| n.saturating_mul(d)) / dtype.block * dtype.bytes;
        offset = (offset + bytes.min(1 << 40)).next_multiple_of(alignment);
        tensors.push((name, ne, dtype.id));
    }

    w.align(alignment as usize);
    let data = if g.hostile() { offset.saturating_sub(1 + g.rng.below(64) as u64) } else { offset };
    w.raw(&vec![0; data.min(1 << 20) as usize]);
    let mut bytes = w.done();
    if g.hostile() {
        bytes.truncate(g.rng.below(bytes.len() + 1));
    }
    let expected = (!g.hostile).then_some(Expected { keys, tensors });
    Generated { bytes, expected }
}
