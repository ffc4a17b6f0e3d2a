//! Standard normal tail functions and log-space helpers.
//!
//! Every accountant evaluates Gaussian tails far past where `1 - cdf` is
//! representable (delta down to 1e-12 after millions of compositions), so the
//! tails are computed directly from `erfc` and, beyond its underflow point,
//! from the asymptotic series of the Mills ratio.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// Above this argument `erfc(z / sqrt 2)` is close to underflow; switch to
/// the asymptotic expansion of `ln Phi-bar`.
const LOG_SF_ASYMPTOTIC_FROM: f64 = 30.0;

/// Upper tail of the standard normal, `P(Z > z)`.
pub fn sf(z: f64) -> f64 {
    0.5 * libm::erfc(z * FRAC_1_SQRT_2)
}

/// Lower tail of the standard normal, `P(Z <= z)`.
pub fn cdf(z: f64) -> f64 {
    sf(-z)
}

/// `ln P(Z > z)`, accurate for every finite `z` (no underflow to `-inf`).
pub fn ln_sf(z: f64) -> f64 {
    if z < LOG_SF_ASYMPTOTIC_FROM {
        sf(z).ln()
    } else {
        ln_sf_asymptotic(z)
    }
}

fn ln_sf_asymptotic(z: f64) -> f64 {
    // Phi-bar(z) = phi(z)/z * (1 - 1/z^2 + 3/z^4 - 15/z^6 + ...); at z >= 30
    // eight terms are below machine precision.
    let inv_z2 = 1.0 / (z * z);
    let mut term = 1.0;
    let mut series = 1.0;
    for n in 1..=8 {
        term *= -((2 * n - 1) as f64) * inv_z2;
        series += term;
    }
    -0.5 * z * z - z.ln() - 0.5 * (2.0 * PI).ln() + series.ln()
}

/// `ln P(Z <= z)`.
pub fn ln_cdf(z: f64) -> f64 {
    ln_sf(-z)
}

/// `ln phi(z)`, the log density of the standard normal.
pub fn ln_pdf(z: f64) -> f64 {
    -0.5 * z * z - 0.5 * (2.0 * PI).ln()
}

/// The `z` with `P(Z > z) = p`, for `p` in `(0, 1)`.
///
/// Newton's method on `ln sf`, which is concave, started from the tail
/// asymptote; converges to full precision in a handful of steps.
pub fn inv_sf(p: f64) -> f64 {
    debug_assert!(p > 0.0 && p < 1.0);
    if p > 0.5 {
        return -inv_sf(1.0 - p);
    }
    let target = p.ln();
    let mut z = (-2.0 * target).sqrt();
    if z < 1.0 {
        z = 0.0;
    }
    for _ in 0..60 {
        let f = ln_sf(z) - target;
        // d/dz ln sf(z) = -phi(z) / sf(z)
        let slope = -(ln_pdf(z) - ln_sf(z)).exp();
        let step = f / slope;
        z -= step;
        if step.abs() <= 1e-14 * z.abs().max(1.0) {
            break;
        }
    }
    z
}

/// `ln(e^a + e^b)` without overflow.
pub fn ln_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `ln(e^a - e^b)` for `a >= b`; `None` when the difference is not positive.
pub fn ln_sub_exp(a: f64, b: f64) -> Option<f64> {
    if b == f64::NEG_INFINITY {
        return Some(a);
    }
    if a <= b {
        return None;
    }
    Some(a + (-(b - a).exp()).ln_1p())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tails_match_known_values() {
        // Values of 1 - Phi(z) from standard tables (computed with mpmath at 30 digits).
        let cases = [
            (0.0, 0.5),
            (1.0, 0.158_655_253_931_457_05),
            (3.0, 1.349_898_031_630_094_5e-3),
            (10.0, 7.619_853_024_160_526e-24),
            (-2.0, 0.977_249_868_051_820_8),
        ];
        for (z, want) in cases {
            let got = sf(z);
            assert!(
                (got / want - 1.0).abs() < 1e-13,
                "sf({z}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn log_tail_paths_agree_where_both_are_accurate() {
        for z in [22.0, LOG_SF_ASYMPTOTIC_FROM, 36.0] {
            let direct = sf(z).ln();
            let series = ln_sf_asymptotic(z);
            assert!(
                (direct - series).abs() < 1e-12 * direct.abs(),
                "z={z}: {direct} vs {series}"
            );
        }
        // ln(1 - Phi(40)) from mpmath: -804.6084420137538
        assert!((ln_sf(40.0) + 804.608_442_013_753_8).abs() < 1e-9);
        assert!(ln_sf(1e5).is_finite());
    }

    proptest! {
        #[test]
        fn inv_sf_inverts_sf(log10p in -300.0f64..-0.31) {
            let p = 10f64.powf(log10p);
            let z = inv_sf(p);
            let back = ln_sf(z);
            prop_assert!((back - p.ln()).abs() < 1e-10 * p.ln().abs().max(1.0));
        }

        #[test]
        fn log_space_add_and_sub_agree_with_linear(a in -50.0f64..50.0, b in -50.0f64..50.0) {
            let sum = ln_add_exp(a, b);
            let linear = a.exp() + b.exp();
            prop_assert!((sum - linear.ln()).abs() < 1e-12 * linear.ln().abs().max(1.0));
            let (hi, lo) = if a > b { (a, b) } else { (b, a) };
            if hi - lo > 1e-6 {
                let diff = ln_sub_exp(hi, lo).unwrap();
                let lin = hi.exp() - lo.exp();
                prop_assert!((diff.exp() / lin - 1.0).abs() < 1e-9);
            }
        }
    }
}
