//! Mutations of real headers, aimed by their layout: which bytes hold counts, lengths, types, dimension
//! counts, dimensions and offsets, and where each metadata entry and tensor entry begins and ends.

use std::ops::Range;

use super::fuzz::Rng;
use super::writer::{kind, width};

/// What a header field holds, which decides the values worth trying in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Count,
    Length,
    Type,
    Dims,
    Dim,
    Offset,
}

impl Field {
    const ALL: [Field; 6] = [Self::Count, Self::Length, Self::Type, Self::Dims, Self::Dim, Self::Offset];

    /// Bytes of the field: types and dimension counts are `u32`, the rest `u64`.
    fn width(self) -> usize {
        if matches!(self, Self::Type | Self::Dims) {
            4
        } else {
            8
        }
    }
}

/// Values that break naive size arithmetic when they land in a count, length, dimension or offset.
pub const EXTREMES: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    31,
    32,
    33,
    255,
    256,
    257,
    4096,
    65535,
    65536,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    1 << 32,
    (1 << 32) + 1,
    1 << 40,
    1 << 50,
    1 << 60,
    1 << 61,
    1 << 62,
    1 << 63,
    i64::MAX as u64,
    u64::MAX - 31,
    u64::MAX - 1,
    u64::MAX,
];

/// A real header (or a hostile file) and where its fields lie, as far as it parses.
pub struct Seed {
    pub bytes: Vec<u8>,
    /// Positions of each kind of field, in [`Field::ALL`]'s order.
    fields: [Vec<usize>; 6],
    /// Each metadata entry's bytes, then each tensor entry's.
    keys: Vec<Range<usize>>,
    tensors: Vec<Range<usize>>,
    /// Every field and entry boundary, where cuts and splices land.
    cuts: Vec<usize>,
    /// Where the part that parsed ends.
    header: usize,
}

/// Reads a header's layout, stopping quietly where it stops making sense.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
    fields: [Vec<usize>; 6],
}

impl Scan<'_> {
    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let end = self.at.checked_add(usize::try_from(n).ok()?).filter(|&end| end <= self.bytes.len())?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Some(taken)
    }

    fn field(&mut self, field: Field) -> Option<u64> {
        let at = self.at;
        let bytes = self.take(field.width() as u64)?;
        let mut le = [0; 8];
        le[..bytes.len()].copy_from_slice(bytes);
        self.fields[field as usize].push(at);
        Some(u64::from_le_bytes(le))
    }

    fn value(&mut self, kind: u64) -> Option<()> {
        match u8::try_from(kind).ok()? {
            kind::STRING => {
                let len = self.field(Field::Length)?;
                self.take(len).map(drop)
            }
            kind::ARRAY => {
                let element = self.field(Field::Type)?;
                let count = self.field(Field::Count)?;
                match width(u8::try_from(element).ok()?) {
                    Some(w) => self.take(count.checked_mul(w as u64)?).map(drop),
                    None => (0..count.min(1 << 20)).try_for_each(|_| self.value(element)),
                }
            }
            fixed => self.take(width(fixed)? as u64).map(drop),
        }
    }
}

impl Seed {
    /// Maps `bytes` as far as they parse.
    pub fn new(bytes: Vec<u8>) -> Self {
        let (mut keys, mut tensors) = (Vec::new(), Vec::new());
        let mut scan = Scan { bytes: &bytes, at: 0, fields: Default::default() };
        let _ = (|| -> Option<()> {
            scan.take(8)?;
            let tensor_count = scan.field(Field::Count)?;
            let key_count = scan.field(Field::Count)?;
            for _ in 0..key_count.min(1 << 16) {
                let start = scan.at;
                let len = scan.field(Field::Length)?;
                scan.take(len)?;
                let kind = scan.field(Field::Type)?;
                scan.value(kind)?;
                keys.push(start..scan.at);
            }
            for _ in 0..tensor_count.min(1 << 16) {
                let start = scan.at;
                let len = scan.field(Field::Length)?;
                scan.take(len)?;
                let dims = scan.field(Field::Dims)?;
                for _ in 0..dims.min(8) {
                    scan.field(Field::Dim)?;
                }
                scan.field(Field::Type)?;
                scan.field(Field::Offset)?;
                tensors.push(start..scan.at);
            }
            Some(())
        })();
        let (fields, header) = (scan.fields, scan.at);
        let mut cuts: Vec<usize> = fields.iter().flatten().copied().chain([0, header, bytes.len()]).collect();
        cuts.extend(keys.iter().chain(&tensors).map(|r| r.end));
        cuts.sort_unstable();
        cuts.dedup();
        Self { bytes, fields, keys, tensors, cuts, header }
    }

    /// A value worth trying in a field of kind `field` at `at`, which now holds `current`.
    fn interesting(&self, rng: &mut Rng, field: Field, at: usize, current: u64) -> u64 {
        let left = (self.bytes.len() - at) as u64;
        match rng.below(6) {
            0 | 1 => *rng.pick(EXTREMES),
            2 => current.wrapping_add(rng.below(9) as u64).wrapping_sub(4),
            3 => left.wrapping_add(rng.below(17) as u64).wrapping_sub(8),
            4 => match field {
                Field::Type => rng.below(42) as u64,
                Field::Dims => rng.below(7) as u64,
                _ => current.wrapping_shl(1 + rng.below(40) as u32),
            },
            _ => rng.next() >> rng.below(64),
        }
    }

    /// Sets a field to a value worth trying.
    fn set_field(&self, rng: &mut Rng, bytes: &mut [u8]) {
        let present: Vec<Field> = Field::ALL.into_iter().filter(|&f| !self.fields[f as usize].is_empty()).collect();
        if present.is_empty() {
            return;
        }
        let field = *rng.pick(&present);
        let at = *rng.pick(&self.fields[field as usize]);
        let n = field.width();
        let mut le = [0; 8];
        le[..n].copy_from_slice(&bytes[at..at + n]);
        let value = self.interesting(rng, field, at, u64::from_le_bytes(le));
        bytes[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
    }

    /// One change that moves bytes: a cut, a duplicated or dropped entry, a splice with another seed,
    /// inserted bytes.
    fn reshape(&self, rng: &mut Rng, seeds: &[Seed], bytes: &mut Vec<u8>) {
        let cut = |rng: &mut Rng| (*rng.pick(&self.cuts) + rng.below(3)).min(self.bytes.len());
        // Which count (at byte 16 for keys, 8 for tensors) an entry change may adjust.
        let (entries, count_at) = if rng.below(2) == 0 { (&self.keys, 16) } else { (&self.tensors, 8) };
        let recount = |rng: &mut Rng, bytes: &mut Vec<u8>, delta: u64| {
            if rng.below(2) == 0 && bytes.len() >= count_at + 8 {
                let count = u64::from_le_bytes(bytes[count_at..count_at + 8].try_into().unwrap());
                bytes[count_at..count_at + 8].copy_from_slice(&count.wrapping_add(delta).to_le_bytes());
            }
        };
        match rng.below(6) {
            0 => bytes.truncate(cut(rng)),
            1 if !entries.is_empty() => {
                let entry = rng.pick(entries).clone();
                let copy = bytes[entry.clone()].to_vec();
                let at = rng.pick(entries).end;
                bytes.splice(at..at, copy);
                recount(rng, bytes, 1);
            }
            2 if !entries.is_empty() => {
                bytes.drain(rng.pick(entries).clone());
                recount(rng, bytes, u64::MAX);
            }
            3 => {
                let other = rng.pick(seeds);
                let from = (*rng.pick(&other.cuts)).min(other.bytes.len());
                bytes.truncate(cut(rng));
                bytes.extend_from_slice(&other.bytes[from..]);
            }
            4 => {
                let at = cut(rng);
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            _ => bytes.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        }
    }

    /// Where single-byte damage lands: mostly in the header, which is what the parser reads.
    fn damage_at(&self, rng: &mut Rng) -> Option<usize> {
        let span = if rng.below(4) == 0 { self.bytes.len() } else { self.header.max(24).min(self.bytes.len()) };
        (span > 0).then(|| rng.below(span))
    }
}

/// A mutation of `seed`: a few fields set, bits flipped or bytes overwritten, then now and then a change
/// that moves bytes (splices take the tail of one of `seeds`).
pub fn mutate(rng: &mut Rng, seed: &Seed, seeds: &[Seed]) -> Vec<u8> {
    let mut bytes = seed.bytes.clone();
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            0..=2 => seed.set_field(rng, &mut bytes),
            3 | 4 => {
                if let Some(at) = seed.damage_at(rng) {
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            _ => {
                if let Some(at) = seed.damage_at(rng) {
                    let end = (at + 1 + rng.below(8)).min(bytes.len());
                    let random = rng.next() as u8;
                    let fill = *rng.pick(&[0x00, 0xFF, random]);
                    bytes[at..end].fill(fill);
                }
            }
        }
    }
    if rng.below(2) == 0 {
        seed.reshape(rng, seeds, &mut bytes);
    }
    bytes
}
