//! Gaussian-DP accountant: a central-limit *approximation*, never a bound.
//!
//! Math:
//! - Bu, Dong, Long, Su 2020, "Deep Learning with Gaussian Differential
//!   Privacy" (Harvard Data Science Review), building on the CLT of Dong,
//!   Roth, Su: `k` steps of the Poisson-subsampled Gaussian mechanism tend,
//!   as `k -> inf` with `q sqrt(k)` fixed, to `mu`-GDP with
//!   `mu = q sqrt(k (e^{1/sigma^2} - 1))`; GDP parts compose by
//!   `mu = sqrt(sum mu_j^2)`.
//! - Dong, Roth, Su 2022, "Gaussian Differential Privacy" (JRSS-B),
//!   Corollary 1: `mu`-GDP is exactly `(eps, delta(eps))`-DP for all `eps`
//!   with `delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)`.
//!
//! Assumption and caveat: the CLT limit is not an upper bound at finite `k`;
//! it can under-report epsilon (Gopi, Lee, Wutschitz 2021 show cases). The
//! accountant is labelled approximate everywhere and is never the default.
//! With `q = 1` there is no subsampling and the result is exact:
//! `k` Gaussian steps are `sqrt(k)/sigma`-GDP.

use crate::error::{AccountantError, Result};
use crate::mechanism::{validate_delta, validate_history, Segment};
use crate::normal::ln_cdf;

/// The GDP parameter of a whole history.
pub fn mu(history: &[Segment]) -> f64 {
    history
        .iter()
        .map(|s| {
            let k = s.steps as f64;
            let inv_var = 1.0 / (s.noise_multiplier * s.noise_multiplier);
            if s.sample_rate == 1.0 {
                k * inv_var
            } else {
                s.sample_rate * s.sample_rate * k * inv_var.exp_m1()
            }
        })
        .sum::<f64>()
        .sqrt()
}

/// Tradeoff dual of `mu`-GDP: the `delta` it implies at `eps`.
pub fn delta_for_mu(mu: f64, eps: f64) -> f64 {
    let a = ln_cdf(-eps / mu + mu / 2.0);
    let b = eps + ln_cdf(-eps / mu - mu / 2.0);
    // delta = e^a - e^b, computed without cancelling when both are tiny.
    if b >= a {
        return 0.0;
    }
    -a.exp() * (b - a).exp_m1()
}

/// Smallest `eps >= 0` with `delta_for_mu(mu, eps) <= delta`, returned as
/// the upper end of a bisection bracket so it never falls below the root.
pub fn epsilon_for_mu(mu: f64, delta: f64) -> Result<f64> {
    if !mu.is_finite() {
        return Err(AccountantError::Numerical {
            accountant: "gdp",
            detail: format!("mu = {mu} is not finite (noise multiplier too small)"),
        });
    }
    if mu == 0.0 || delta_for_mu(mu, 0.0) <= delta {
        return Ok(0.0);
    }
    let mut lo = 0.0;
    let mut hi = mu * mu / 2.0 + mu * 8.0 + 1.0;
    while delta_for_mu(mu, hi) > delta {
        lo = hi;
        hi *= 2.0;
        if !hi.is_finite() {
            return Err(AccountantError::Unbounded { delta });
        }
    }
    // delta(eps) is strictly decreasing; 200 halvings reach the f64 grid.
    // The final nudge up covers the rounding of delta(eps) itself, so the
    // answer stays on the safe side of the true root.
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if delta_for_mu(mu, mid) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi * (1.0 + ROOT_MARGIN) + f64::MIN_POSITIVE)
}

/// Relative margin added to a bisected root against evaluation rounding.
const ROOT_MARGIN: f64 = 1e-10;

/// GDP (CLT) epsilon of a history; approximate unless every step has `q = 1`.
pub fn epsilon(history: &[Segment], delta: f64) -> Result<(f64, f64)> {
    validate_history(history)?;
    validate_delta(delta)?;
    let mu = mu(history);
    Ok((epsilon_for_mu(mu, delta)?, mu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_matches_balle_wang_values() {
        // Gaussian mechanism, sigma = 1, one step: mu = 1. At eps = 1 the
        // exact delta is Phi(-1/2) - e Phi(-3/2) = 0.126936...
        let d = delta_for_mu(1.0, 1.0);
        assert!((d - 0.126_936_737_506_643_9).abs() < 1e-12, "{d}");
        let eps = epsilon_for_mu(1.0, d).unwrap();
        assert!(eps >= 1.0 && eps - 1.0 < 1e-9, "{eps}");
    }
}
