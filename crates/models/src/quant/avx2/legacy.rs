//! The AVX2 + FMA kernels for the legacy formats: one loop per block format, specialised at compile time.

use std::arch::x86_64::*;

use crate::cpu::x86::hsum;
use crate::quant::activations::QuantizedRows;
use crate::quant::legacy::{LegacyFormat, LegacyMatrix, TILE};

/// How many blocks ahead of the one it decodes a kernel prefetches the column's quants (a prefetch past
/// the matrix's end never faults).
const AHEAD: usize = 16;

/// `0x10` in byte `i` where bit `i` of `bits` is set: the fifth bit of each Q5 quant.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn fifth_bits(bits: u32) -> __m256i {
    // Byte i takes the byte of `bits` holding bit i, then tests its bit (i mod 8).
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
        ),
    );
    let select = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// `R` activation rows against weight row `n`; each decoded weight block serves all `R`. Dispatches
/// once per call to a loop specialised for the format, so the per-block path has no branches.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn legacy_tile<const R: usize>(
    w: &LegacyMatrix,
    acts: &QuantizedRows,
    n: usize,
    start: usize,
) -> [f32; TILE] {
    // SAFETY: the caller checked AVX2, FMA and F16C and passes a weight row and activation rows
    // that exist; the specialised loops read only whole blocks of those rows.
    unsafe {
        match (w.format, w.qh.is_empty(), w.m.is_empty()) {
            (LegacyFormat::Q8_0, _, _) => signed::<R>(w, acts, n, start),
            (_, true, true) => unsigned::<R, false, false>(w, acts, n, start),
            (_, true, false) => unsigned::<R, false, true>(w, acts, n, start),
            (_, false, true) => unsigned::<R, true, false>(w, acts, n, start),
            (_, false, false) => unsigned::<R, true, true>(w, acts, n, start),
        }
    }
}

/// Runs `block` over blocks `0..blocks`, even blocks into one accumulator chain per row and odd blocks into
/// another, and returns their sums. Two chains hide the FMA latency, the pairwise loop keeps both in
/// registers, and every tile size uses the same chains, so a row's arithmetic is the same alone or in a batch.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pairwise<const R: usize>(blocks: usize, mut block: impl FnMut(usize, &mut [__m256; R])) -> [__m256; R] {
    let (mut even, mut odd) = ([_mm256_setzero_ps(); R], [_mm256_setzero_ps(); R]);
    let mut b = 0;
    while b + 1 < blocks {
        block(b, &mut even);
        block(b + 1, &mut odd);
        b += 2;
    }
    if b < blocks {
        block(b, &mut even);
    }
    std::array::from_fn(|r| _mm256_add_ps(even[r], odd[r]))
}

/// Q8_0: signed quants times signed activations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn signed<const R: usize>(w: &LegacyMatrix, acts: &QuantizedRows, n: usize, start: usize) -> [f32; TILE] {
    // SAFETY: see `tile`; block `b` of weight row `n` and of activation row `start + r` are in bounds.
    unsafe {
        let blocks = acts.blocks_per_row;
        let ones = _mm256_set1_epi16(1);
        let (wq, wd) = (w.qs.as_ptr().add(n * blocks * 32), w.d.as_ptr().add(n * blocks));
        let (aq, ad) = (acts.qs.as_ptr().add(start * blocks * 32), acts.d.as_ptr().add(start * blocks));
        let block = |b: usize, chains: &mut [__m256; R]| {
            _mm_prefetch::<_MM_HINT_T0>(wq.wrapping_add((b + AHEAD) * 32).cast());
            let dw = *wd.add(b);
            let q = _mm256_loadu_si256(wq.add(b * 32).cast());
            let magnitude = _mm256_sign_epi8(q, q);
            for (r, chain) in chains.iter_mut().enumerate() {
                let ab = r * blocks + b;
                let a = _mm256_loadu_si256(aq.add(ab * 32).cast());
                let products = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(a, q));
                let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(products, ones));
                *chain = _mm256_fmadd_ps(dot, _mm256_set1_ps(dw * *ad.add(ab)), *chain);
            }
        };
        let acc = pairwise::<R>(blocks, block);
        let mut sums = [0.0; TILE];
        for (sum, chain) in sums.iter_mut().zip(&acc) {
            *sum = hsum(*chain);
        }
        sums
    }
}

/// 4- and 5-bit formats: unsigned quants (with a fifth bit when `HIGH`) times signed activations,
/// plus the block's offset (stored when `OFFSET`, else `-center * d`) times the activations' sum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unsigned<const R: usize, const HIGH: bool, const OFFSET: bool>(
    w: &LegacyMatrix,
    acts: &QuantizedRows,
    n: usize,
    start: usize,
) -> [f32; TILE] {
    // SAFETY: see `tile`; `qh` and `m` are read only when the format has them.
    unsafe {
        let blocks = acts.blocks_per_row;
        let ones = _mm256_set1_epi16(1);
        let low_nibbles = _mm256_set1_epi8(0x0F);
        let center = w.format.center();
        let (wq, wd) = (w.qs.as_ptr().add(n * blocks * 16), w.d.as_ptr().add(n * blocks));
        let wm = if OFFSET { w.m.as_ptr().add(n * blocks) } else { std::ptr::null() };
        let wh = if HIGH { w.qh.as_ptr().add(n * blocks) } else { std::ptr::null() };
        let (aq, ad) = (acts.qs.as_ptr().add(start * blocks * 32), acts.d.as_ptr().add(start * blocks));
        let asum = acts.s.as_ptr().add(start * blocks);
        let block = |b: usize, chains: &mut [__m256; R]| {
            _mm_prefetch::<_MM_HINT_T0>(wq.wrapping_add((b + AHEAD) * 16).cast());
            let dw = *wd.add(b);
            let packed = _mm_loadu_si128(wq.add(b * 16).cast());
            let mut q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low_nibbles);
            if HIGH {
                q = _mm256_or_si256(q, fifth_bits(*wh.add(b)));
            }
            for (r, chain) in chains.iter_mut().enumerate() {
                let ab = r * blocks + b;
                let a = _mm256_loadu_si256(aq.add(ab * 32).cast());
                let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(q, a), ones));
                *chain = _mm256_fmadd_ps(dot, _mm256_set1_ps(dw * *ad.add(ab)), *chain);
            }
        };
        let acc = pairwise::<R>(blocks, block);
        // The offset term, Σ_b m_b * s_b, as its own vectorised pass: 8 blocks per step.
        let offset_of = |b: usize| if OFFSET { *wm.add(b) } else { -center * *wd.add(b) };
        let scale = _mm256_set1_ps(-center);
        let mut sums = [0.0; TILE];
        for (r, (sum, chain)) in sums.iter_mut().zip(&acc).enumerate() {
            let s = asum.add(r * blocks);
            let mut offsets = _mm256_setzero_ps();
            let mut b = 0;
            while b + 8 <= blocks {
                let m =
                    if OFFSET { _mm256_loadu_ps(wm.add(b)) } else { _mm256_mul_ps(scale, _mm256_loadu_ps(wd.add(b))) };
                offsets = _mm256_fmadd_ps(m, _mm256_loadu_ps(s.add(b)), offsets);
                b += 8;
            }
            let mut offset = hsum(offsets);
            while b < blocks {
                offset += offset_of(b) * *s.add(b);
                b += 1;
            }
            *sum = hsum(*chain) + offset;
        }
        sums
    }
}
