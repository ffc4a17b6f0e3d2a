//! Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism.
//!
//! Math:
//! - Mironov 2017, "Rényi Differential Privacy" (CSF), Proposition 1: the
//!   RDP curve of a composition is the sum of the curves of its parts.
//! - Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled
//!   Gaussian Mechanism" (arXiv:1908.10530), Section 3.3: the order-`alpha`
//!   RDP of one step is `ln(A_alpha) / (alpha - 1)`, with `A_alpha` a finite
//!   binomial sum for integer `alpha` and a convergent two-sided series of
//!   Gaussian tails for fractional `alpha`.
//! - Balle, Barthe, Gaboardi, Hsu, Sato 2020, "Hypothesis Testing
//!   Interpretations and Rényi Differential Privacy" (AISTATS), Theorem 21:
//!   `eps = rdp + ln((alpha-1)/alpha) - (ln delta + ln alpha)/(alpha-1)`,
//!   minimised over the orders. This is the conversion Opacus and
//!   dp-accounting use; it is tighter than Mironov's original
//!   `rdp + ln(1/delta)/(alpha-1)`.
//!
//! Assumptions: Poisson subsampling, add/remove-one adjacency, per-example
//! sensitivity 1 after clipping. The bound is sound at every order; only the
//! orders evaluated limit its tightness, which is why it is looser than PLD
//! (markedly so for few steps or tiny epsilon, where the best order would be
//! far above 63).

use crate::error::{AccountantError, Result};
use crate::mechanism::{validate_delta, validate_history, Segment};
use crate::normal::{ln_add_exp, ln_sf};

/// Opacus's default orders (`RDPAccountant.DEFAULT_ALPHAS`): 1.1 to 10.9 in
/// steps of 0.1, then 12 to 63. Using the same set makes our RDP figure
/// directly comparable with what Opacus users see.
pub fn default_orders() -> Vec<f64> {
    let fractional = (1..100).map(|x| 1.0 + x as f64 / 10.0);
    let integer = (12..64).map(|x| x as f64);
    fractional.chain(integer).collect()
}

/// Below this log-magnitude a series term of `A_alpha` no longer matters:
/// `A_alpha >= 1`, so it is a relative contribution under 1e-15.
const NEGLIGIBLE_LN_TERM: f64 = -36.0;
const MAX_SERIES_TERMS: usize = 200_000;

/// `ln A_alpha` for one step, or `None` when the fractional series cancels
/// beyond what double precision resolves (that order is then skipped).
pub fn ln_a(sample_rate: f64, noise_multiplier: f64, order: f64) -> Option<f64> {
    let sigma2 = noise_multiplier * noise_multiplier;
    if sample_rate == 1.0 {
        return Some(order * (order - 1.0) / (2.0 * sigma2));
    }
    if order.fract() == 0.0 && order <= 1e6 {
        Some(ln_a_integer(sample_rate, sigma2, order as u64))
    } else {
        ln_a_fractional(sample_rate, noise_multiplier, order)
    }
}

fn ln_binomial(n: f64, k: f64) -> (f64, f64) {
    let (ln_num, sign_num) = libm::lgamma_r(n + 1.0);
    let (ln_k, _) = libm::lgamma_r(k + 1.0);
    let (ln_nk, sign_nk) = libm::lgamma_r(n - k + 1.0);
    (ln_num - ln_k - ln_nk, f64::from(sign_num * sign_nk))
}

/// `A_alpha = sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2))`.
fn ln_a_integer(q: f64, sigma2: f64, order: u64) -> f64 {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let n = order as f64;
    let mut acc = f64::NEG_INFINITY;
    for i in 0..=order {
        let i = i as f64;
        let (ln_coef, _) = ln_binomial(n, i);
        let term = ln_coef + i * ln_q + (n - i) * ln_1mq + (i * i - i) / (2.0 * sigma2);
        acc = ln_add_exp(acc, term);
    }
    acc
}

/// MTZ19 Section 3.3: split the integral at `z0`, where the two Gaussians'
/// densities cross, and expand each side as a binomial series whose terms
/// are Gaussian tails. Signs alternate once `i > alpha`, so positive and
/// negative parts are accumulated separately in log space.
fn ln_a_fractional(q: f64, sigma: f64, order: f64) -> Option<f64> {
    let sigma2 = sigma * sigma;
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let z0 = sigma2 * (1.0 / q - 1.0).ln() + 0.5;
    let mut positive = f64::NEG_INFINITY;
    let mut negative = f64::NEG_INFINITY;
    for i in 0..MAX_SERIES_TERMS {
        let i = i as f64;
        let j = order - i;
        let (ln_coef, sign) = ln_binomial(order, i);
        let ln_t0 = ln_coef + i * ln_q + j * ln_1mq;
        let ln_t1 = ln_coef + j * ln_q + i * ln_1mq;
        let ln_s0 = ln_t0 + (i * i - i) / (2.0 * sigma2) + ln_sf((i - z0) / sigma);
        let ln_s1 = ln_t1 + (j * j - j) / (2.0 * sigma2) + ln_sf((z0 - j) / sigma);
        let term = ln_add_exp(ln_s0, ln_s1);
        if sign > 0.0 {
            positive = ln_add_exp(positive, term);
        } else {
            negative = ln_add_exp(negative, term);
        }
        if i > order + 1.0 && ln_s0.max(ln_s1) < NEGLIGIBLE_LN_TERM {
            return crate::normal::ln_sub_exp(positive, negative).filter(|v| *v >= 0.0);
        }
    }
    None
}

/// Total RDP of a history at each order (`+inf` where an order failed).
pub fn rdp_curve(history: &[Segment], orders: &[f64]) -> Vec<f64> {
    orders
        .iter()
        .map(|&order| {
            history
                .iter()
                .map(|s| match ln_a(s.sample_rate, s.noise_multiplier, order) {
                    Some(ln_a) => s.steps as f64 * ln_a / (order - 1.0),
                    None => f64::INFINITY,
                })
                .sum()
        })
        .collect()
}

/// Balle et al. 2020, Theorem 21, minimised over the orders. Returns the
/// epsilon and the order that attains it.
pub fn epsilon_from_curve(orders: &[f64], rdp: &[f64], delta: f64) -> Option<(f64, f64)> {
    let ln_delta = delta.ln();
    orders
        .iter()
        .zip(rdp)
        .filter(|(_, r)| r.is_finite())
        .map(|(&a, &r)| {
            let eps = r + ((a - 1.0) / a).ln() - (ln_delta + a.ln()) / (a - 1.0);
            (eps.max(0.0), a)
        })
        .min_by(|x, y| x.0.total_cmp(&y.0))
}

/// Epsilon of a history at `delta` over Opacus's default orders.
pub fn epsilon(history: &[Segment], delta: f64) -> Result<(f64, f64)> {
    epsilon_with_orders(history, delta, &default_orders())
}

pub fn epsilon_with_orders(history: &[Segment], delta: f64, orders: &[f64]) -> Result<(f64, f64)> {
    validate_history(history)?;
    validate_delta(delta)?;
    let curve = rdp_curve(history, orders);
    epsilon_from_curve(orders, &curve, delta).ok_or_else(|| AccountantError::Numerical {
        accountant: "rdp",
        detail: "no RDP order gave a finite bound".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsampled_gaussian_has_the_closed_form_curve() {
        // q = 1: the Gaussian mechanism, RDP = alpha / (2 sigma^2) exactly.
        let seg = [Segment::new(2.0, 1.0, 3).unwrap()];
        let curve = rdp_curve(&seg, &[2.0, 7.5]);
        assert!((curve[0] - 3.0 * 2.0 / 8.0).abs() < 1e-15);
        assert!((curve[1] - 3.0 * 7.5 / 8.0).abs() < 1e-15);
    }

    #[test]
    fn integer_and_fractional_series_agree_near_integers() {
        // The fractional series must be continuous with the exact binomial
        // sum: evaluate just off an integer order.
        for &(q, sigma) in &[(0.01, 1.0), (0.2, 0.7), (0.001, 4.0)] {
            for order in [2.0, 5.0, 17.0] {
                let exact = ln_a(q, sigma, order).unwrap();
                let near = ln_a_fractional(q, sigma, order + 1e-7).unwrap();
                assert!(
                    (exact - near).abs() <= 1e-5 * exact.abs().max(1e-9),
                    "q={q} sigma={sigma} alpha={order}: {exact} vs {near}"
                );
            }
        }
    }
}
