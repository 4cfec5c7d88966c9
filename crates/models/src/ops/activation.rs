//! Elementwise activations and the softmax pieces: SwiGLU, exp, softmax, log-sum-exp.

use crate::cpu::Isa;
use crate::parallel::{for_chunks, DisjointWrites};

/// `silu(gate) * up`, elementwise, into `gate`; split over the inference threads when large.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    gated(gate, up, |gate, up| {
        #[cfg(target_arch = "x86_64")]
        if Isa::detect().avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { simd::swiglu(gate, up) };
        }
        swiglu_body(gate, up);
    });
}

/// `gelu(gate) * up` with GELU's tanh approximation (Gemma's gated FFN), elementwise, into `gate`; split
/// over the inference threads when large.
pub fn gelu_glu(gate: &mut [f32], up: &[f32]) {
    gated(gate, up, |gate, up| {
        #[cfg(target_arch = "x86_64")]
        if Isa::detect().avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { gelu_glu_avx2(gate, up) };
        }
        gelu_glu_body(gate, up);
    });
}

/// Runs `kernel` over matching chunks of `gate` and `up` on the inference threads.
fn gated(gate: &mut [f32], up: &[f32], kernel: impl Fn(&mut [f32], &[f32]) + Sync) {
    /// Values per work item: enough to outweigh a thread hand-off.
    const CHUNK: usize = 4096;
    let n = gate.len().min(up.len());
    let cells = DisjointWrites::new(gate);
    for_chunks(n.div_ceil(CHUNK), |chunks| {
        let values = chunks.start * CHUNK..(chunks.end * CHUNK).min(n);
        // SAFETY: chunks are split between threads, so only this one writes `values`.
        let gate = unsafe { cells.slice(values.clone()) };
        kernel(gate, &up[values]);
    });
}

/// [`gelu_glu_body`] compiled for AVX2, where its loop vectorises 8 wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_glu_avx2(gate: &mut [f32], up: &[f32]) {
    gelu_glu_body(gate, up);
}

/// `0.5 x (1 + tanh z)` with `z = √(2/π) (x + 0.044715 x³)`, computed as `x / (1 + e^{-2z})` (the same
/// value, without cancellation where `tanh z` nears −1) through [`exp`].
#[inline(always)]
fn gelu_glu_body(gate: &mut [f32], up: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (g, u) in gate.iter_mut().zip(up) {
        let x = *g;
        let z = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
        *g = x / (1.0 + exp(-2.0 * z)) * u;
    }
}

#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// Numerically stable softmax. Weights below e^-80 (about 1e-35) become exactly 0: they cannot move
/// the result, and left alone they would underflow into subnormal floats, which cost x86 cores
/// ~100 cycles per operation in the weighted sum that follows.
#[inline(always)]
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        let shifted = *v - max;
        *v = if shifted < -80.0 { 0.0 } else { exp(shifted) };
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `ln Σ e^x` over `x`, computed stably (the log-normaliser of a softmax).
pub fn log_sum_exp(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect().avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { simd::log_sum_exp(x) };
    }
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = x.iter().map(|v| exp((v - max).max(-87.0))).sum();
    max + sum.ln()
}

/// `e^x` for `x` in [-87, 88] (clamped to it) without a libm call, so loops over it vectorise:
/// `x = k ln 2 + f` with `k` an integer (built in the exponent bits) and `|f| <= ln 2 / 2` (ln 2 split in
/// two parts so the reduction is exact enough), then a degree-6 Taylor series for `e^f`. Relative error
/// below 5e-7 for `x <= 0`, 2e-6 above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let f = (x - k * LN2_HI) - k * LN2_LO;
    let poly = 1.0 + f * (1.0 + f * (0.5 + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    f32::from_bits(((k as i32 + 127) as u32) << 23) * poly
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use crate::cpu::x86::{exp8, hmax, hsum};

    /// [`super::log_sum_exp`] eight lanes at a time.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn log_sum_exp(x: &[f32]) -> f32 {
        let (eights, tail) = x.split_at(x.len() / 8 * 8);
        let p = eights.as_ptr();
        // SAFETY: the 8-wide loads stay below `eights.len()`.
        unsafe {
            let mut top = _mm256_set1_ps(f32::NEG_INFINITY);
            for i in (0..eights.len()).step_by(8) {
                top = _mm256_max_ps(top, _mm256_loadu_ps(p.add(i)));
            }
            let max = tail.iter().fold(hmax(top), |a, &v| a.max(v));
            let shift = _mm256_set1_ps(max);
            let mut total = _mm256_setzero_ps();
            for i in (0..eights.len()).step_by(8) {
                total = _mm256_add_ps(total, exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), shift)));
            }
            let sum = tail.iter().fold(hsum(total), |a, &v| a + super::exp((v - max).max(-87.0)));
            max + sum.ln()
        }
    }

    /// `silu(gate) * up` into `gate`, eight lanes at a time; the same bits as [`super::swiglu_body`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
        let n = gate.len().min(up.len());
        let whole = n / 8 * 8;
        let (g, u) = (gate.as_mut_ptr(), up.as_ptr());
        // SAFETY: the 8-wide accesses stay below `whole <= n`.
        unsafe {
            let one = _mm256_set1_ps(1.0);
            for i in (0..whole).step_by(8) {
                let x = _mm256_loadu_ps(g.add(i));
                let silu = _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
                _mm256_storeu_ps(g.add(i), _mm256_mul_ps(silu, _mm256_loadu_ps(u.add(i))));
            }
        }
        super::swiglu_body(&mut gate[whole..n], &up[whole..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_matches_f64_for_odd_lengths() {
        for n in [1, 7, 8, 9, 100, 49_152] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2000) as f32 / 40.0 - 30.0).collect();
            let max = x.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let exact = max + x.iter().map(|&v| (f64::from(v) - max).exp()).sum::<f64>().ln();
            let ours = f64::from(log_sum_exp(&x));
            assert!((ours - exact).abs() <= 1e-5 * exact.abs().max(1.0), "n={n}: {ours} vs {exact}");
        }
    }

    #[test]
    fn exp_is_accurate_where_softmax_and_silu_use_it() {
        for i in 0..=8700 {
            let x = -(i as f32) / 100.0;
            let (ours, exact) = (exp(x), x.exp());
            assert!((ours - exact).abs() <= 5e-7 * exact, "exp({x}) = {ours}, expected {exact}");
        }
        for i in 0..=8800 {
            let x = i as f32 / 100.0;
            let (ours, exact) = (f64::from(exp(x)), f64::from(x).exp());
            assert!((ours - exact).abs() <= 2e-6 * exact, "exp({x}) = {ours}, expected {exact}");
        }
        assert!(exp(200.0).is_finite() && exp(-200.0) >= 0.0);
    }

    #[test]
    fn gelu_matches_its_tanh_formula() {
        let gate: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) / 8.0).collect();
        let up: Vec<f32> = (0..203).map(|i| 1.0 + (i % 5) as f32).collect();
        let mut ours = gate.clone();
        gelu_glu(&mut ours, &up);
        for ((g, u), o) in gate.iter().zip(&up).zip(&ours) {
            let (x, u) = (f64::from(*g), f64::from(*u));
            let exact = 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()) * u;
            let err = (f64::from(*o) - exact).abs();
            assert!(err <= 2e-6 * exact.abs().max(1e-6), "gelu({x}) * {u} = {o}, expected {exact}");
        }
    }

    #[test]
    fn swiglu_matches_libm() {
        let gate: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) / 4.0).collect();
        let up: Vec<f32> = (0..203).map(|i| 1.0 + (i % 7) as f32).collect();
        let mut ours = gate.clone();
        swiglu(&mut ours, &up);
        let mut portable = gate.clone();
        swiglu_body(&mut portable, &up);
        assert_eq!(ours, portable, "the SIMD and portable bodies agree bit for bit");
        for ((g, u), o) in gate.iter().zip(&up).zip(&ours) {
            let exact = g / (1.0 + (-g).exp()) * u;
            assert!((o - exact).abs() <= 1e-5 * exact.abs().max(1e-3), "silu({g}) * {u} = {o}, expected {exact}");
        }
    }
}
