//! Branch-free `f32` `erf` and `exp` that the compiler vectorises, for the CPU kernels. libm's
//! `erff`/`expf` are scalar calls, which made GELU one of the slowest parts of a CPU training
//! step. Both are accurate to a few units in the last place (checked against f64 references in
//! the tests).

/// `exp(x)` (Cephes' `expf` polynomial on the reduced argument); inputs below -87 return
/// `exp(-87)` instead of a subnormal.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer without a `round` call.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from the exponent bits; `shifted`'s low mantissa bits hold n + 2^22.
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(0x4B40_0000);
    y * f32::from_bits(((n_bits + 127) << 23) as u32)
}

/// `erf(x)`: a rational approximation on [-4, 4] (odd numerator of degree 13, even denominator
/// of degree 8), saturating to +-1 beyond.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    let p = x2 * p + -2.101_024e-6;
    let p = x2 * p + -5.692_506_4e-5;
    let p = x2 * p + -7.349_906_3e-4;
    let p = x2 * p + -2.954_6e-3;
    let p = x2 * p + -1.609_603_3e-2;
    let q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    let q = x2 * q + -1.682_827e-3;
    let q = x2 * q + -7.373_329e-3;
    let q = x2 * q + -1.426_473_9e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 5e-5)
    }

    #[test]
    fn erf_matches_a_double_precision_reference() {
        let worst = grid()
            .map(|x| (erf(x) as f64 - erf_f64(x as f64)).abs())
            .fold(0.0, f64::max);
        // About 4 ulp of f32 near |erf| = 1, the worst place (|x| near 3.9).
        assert!(worst < 5e-7, "max |erf - reference| = {worst:e}");
        assert!((erf(10.0) - 1.0).abs() < 2e-7 && (erf(-10.0) + 1.0).abs() < 2e-7);
    }

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        // Inside the clamp to [-87, 88].
        let worst = (-86_990..=87_990)
            .map(|i| i as f32 * 1e-3)
            .map(|x| ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 4e-7, "max relative error {worst:e}");
    }

    /// erf in f64 by its Taylor series (|x| < 3) or the continued fraction of erfc.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * std::f64::consts::FRAC_2_SQRT_PI
        } else {
            // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
            let a = x.abs();
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / f;
            (1.0 - erfc).copysign(x)
        }
    }
}
