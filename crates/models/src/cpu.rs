//! What this CPU runs: the instruction set the kernels dispatch on, checked once, and the small AVX2
//! helpers several kernels share.

/// The instruction set the kernels run with on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 + FMA + F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The best instruction set this CPU has (checked once).
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let avx2 = *AVX2.get_or_init(|| {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
            });
            if avx2 {
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// Whether this is [`Isa::Avx2`].
    pub(crate) fn avx2(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Self::Avx2 {
            return true;
        }
        false
    }
}

/// An IEEE half-precision value widened to `f32`, exactly, in a few integer and float operations that
/// inline into any kernel (the `half` crate's conversion is a call through runtime CPU detection).
#[inline(always)]
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    // Shift exponent and mantissa into place, then multiply by 2^112 to re-bias the exponent; the
    // multiplication also normalises subnormals exactly. Infinities and NaNs get the all-ones exponent.
    let magnitude = f32::from_bits(u32::from(bits & 0x7FFF) << 13) * f32::from_bits((127 + 112) << 23);
    let special = if bits & 0x7C00 == 0x7C00 { 0x7F80_0000 } else { 0 };
    f32::from_bits(magnitude.to_bits() | special | (u32::from(bits & 0x8000) << 16))
}

/// AVX2 helpers shared by the kernels.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// [`crate::ops::exp`] of eight lanes: the same clamp, reduction and series, so the same bits.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp8(x: __m256) -> __m256 {
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        let c = _mm256_set1_ps;
        let x = _mm256_min_ps(_mm256_max_ps(x, c(-87.0)), c(88.0));
        let k = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(x, c(std::f32::consts::LOG2_E)), c(0.5)));
        let f = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(k, c(LN2_HI))), _mm256_mul_ps(k, c(LN2_LO)));
        let mut poly = c(1.0 / 720.0);
        for coefficient in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            poly = _mm256_add_ps(c(coefficient), _mm256_mul_ps(f, poly));
        }
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127)));
        _mm256_mul_ps(_mm256_castsi256_ps(scale), poly)
    }

    /// The sum of the eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hsum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }

    /// The largest of the eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hmax(v: __m256) -> f32 {
        let quad = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_max_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_max_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_half_widens_as_the_half_crate_does() {
        for bits in 0..=u16::MAX {
            let (ours, reference) = (super::f16_to_f32(bits), half::f16::from_bits(bits).to_f32());
            if reference.is_nan() {
                assert!(ours.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(ours.to_bits(), reference.to_bits(), "{bits:#06x}: {ours} vs {reference}");
            }
        }
    }
}
