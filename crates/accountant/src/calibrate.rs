//! Inverting the analyses: the least noise that meets a target, and the most
//! steps a budget allows.
//!
//! Both searches rely only on epsilon being monotone (down in the noise
//! multiplier, up in the step count), which the mechanism guarantees, and
//! return an answer that the analysis itself has checked: the reported
//! epsilon is computed at the returned noise or step count, never
//! interpolated. The searches interpolate on `ln eps` (regula falsi with the
//! Illinois modification) so each needs only a handful of evaluations.

use serde::Serialize;

use crate::accountant::Method;
use crate::error::{AccountantError, Result};
use crate::mechanism::{
    validate_delta, validate_noise_multiplier, validate_sample_rate, validate_steps,
    validate_target_epsilon, Segment, MAX_STEPS,
};

/// Noise multipliers searched: below this the mechanism is barely private;
/// above it a target is unreachable for any practical purpose.
pub const MIN_NOISE_MULTIPLIER: f64 = 0.01;
pub const MAX_NOISE_MULTIPLIER: f64 = 1e4;
/// Relative precision of a calibrated noise multiplier.
const NOISE_TOLERANCE: f64 = 1e-4;

#[derive(Debug, Clone, Serialize)]
pub struct NoiseCalibration {
    pub noise_multiplier: f64,
    /// Epsilon at that noise multiplier; at most the target.
    pub epsilon: f64,
    /// True when even the smallest searched noise multiplier meets the
    /// target, so a smaller one would too.
    pub at_search_floor: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepsCalibration {
    pub steps: u64,
    /// Epsilon after that many steps; at most the target.
    pub epsilon: f64,
    /// True when the budget allows at least [`MAX_STEPS`] steps.
    pub at_search_ceiling: bool,
}

/// The smallest noise multiplier (to a relative 1e-4) whose epsilon after
/// `steps` steps at `sample_rate` is at most `target_epsilon`.
pub fn noise_multiplier(
    method: Method,
    target_epsilon: f64,
    delta: f64,
    sample_rate: f64,
    steps: u64,
) -> Result<NoiseCalibration> {
    validate_target_epsilon(target_epsilon)?;
    validate_delta(delta)?;
    validate_sample_rate(sample_rate)?;
    validate_steps(steps)?;
    let eps_at = |sigma: f64| -> Result<f64> {
        Ok(method
            .epsilon(&[Segment::new(sigma, sample_rate, steps)?], delta)?
            .epsilon)
    };

    // Bracket [lo, hi] with lo infeasible (eps above target) and hi
    // feasible, grown geometrically from the GDP (CLT) estimate, which is
    // usually within a few percent.
    let start = gdp_noise_estimate(target_epsilon, delta, sample_rate, steps)
        .clamp(MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER);
    let (mut lo, mut hi) = (start, start);
    let eps_start = eps_at(start)?;
    let (mut eps_lo, mut eps_hi) = (eps_start, eps_start);
    let mut factor = 1.05;
    if eps_start > target_epsilon {
        while eps_hi > target_epsilon {
            lo = hi;
            eps_lo = eps_hi;
            if hi >= MAX_NOISE_MULTIPLIER {
                return Err(AccountantError::TargetUnreachable {
                    target_epsilon,
                    delta,
                    sample_rate,
                    steps,
                    max_noise_multiplier: MAX_NOISE_MULTIPLIER,
                });
            }
            hi = (hi * factor).min(MAX_NOISE_MULTIPLIER);
            factor *= factor;
            eps_hi = eps_at(hi)?;
        }
    } else {
        while eps_lo <= target_epsilon {
            hi = lo;
            eps_hi = eps_lo;
            if lo <= MIN_NOISE_MULTIPLIER {
                return Ok(NoiseCalibration {
                    noise_multiplier: MIN_NOISE_MULTIPLIER,
                    epsilon: eps_hi,
                    at_search_floor: true,
                });
            }
            lo = (lo / factor).max(MIN_NOISE_MULTIPLIER);
            factor *= factor;
            eps_lo = eps_at(lo)?;
        }
    }
    // Regula falsi on ln sigma until the bracket is relatively tight.
    let mut bracket = Bracket::new(lo.ln(), eps_lo, hi.ln(), eps_hi, target_epsilon);
    while bracket.feasible - bracket.infeasible > NOISE_TOLERANCE {
        let x = bracket.propose();
        let e = eps_at(x.exp())?;
        bracket.update(x, e);
        if e <= target_epsilon {
            // Interpolation tends to land just on the feasible side; probe
            // just below it, which usually closes the bracket at once.
            let probe = bracket.feasible - NOISE_TOLERANCE;
            if probe > bracket.infeasible {
                let e = eps_at(probe.exp())?;
                bracket.update(probe, e);
            }
        }
    }
    Ok(NoiseCalibration {
        noise_multiplier: bracket.feasible.exp(),
        epsilon: bracket.eps_feasible,
        at_search_floor: false,
    })
}

/// The largest number of steps at `sample_rate` and `noise_multiplier`
/// whose epsilon is at most `target_epsilon`.
pub fn max_steps(
    method: Method,
    target_epsilon: f64,
    delta: f64,
    sample_rate: f64,
    noise_multiplier: f64,
) -> Result<StepsCalibration> {
    validate_target_epsilon(target_epsilon)?;
    validate_delta(delta)?;
    validate_sample_rate(sample_rate)?;
    validate_noise_multiplier(noise_multiplier)?;
    let eps_at = |steps: u64| -> Result<f64> {
        Ok(method
            .epsilon(
                &[Segment::new(noise_multiplier, sample_rate, steps)?],
                delta,
            )?
            .epsilon)
    };
    let one = eps_at(1)?;
    if one > target_epsilon {
        return Err(AccountantError::BudgetBelowOneStep {
            target_epsilon,
            delta,
            one_step_epsilon: one,
        });
    }
    // RDP is linear in the step count, so its step budget is a closed form,
    // and as a looser bound it never allows more steps than a tighter one:
    // a safe lower end for the bracket.
    let mut lo = rdp_step_floor(target_epsilon, delta, sample_rate, noise_multiplier).max(1);
    let mut eps_lo = if lo == 1 { one } else { eps_at(lo)? };
    if eps_lo > target_epsilon {
        // Only an approximate method (GDP) can sit above RDP; start from 1.
        lo = 1;
        eps_lo = one;
    }
    let mut hi = lo;
    let mut eps_hi = eps_lo;
    while eps_hi <= target_epsilon {
        lo = hi;
        eps_lo = eps_hi;
        if hi >= MAX_STEPS {
            return Ok(StepsCalibration {
                steps: MAX_STEPS,
                epsilon: eps_hi,
                at_search_ceiling: true,
            });
        }
        hi = (hi + hi / 2 + 1).min(MAX_STEPS);
        eps_hi = eps_at(hi)?;
    }
    // Regula falsi on ln(steps), rounded to integers, until the bracket is
    // adjacent: lo is allowed, lo + 1 is not.
    let mut bracket = Bracket::new(
        (hi as f64).ln(),
        eps_hi,
        (lo as f64).ln(),
        eps_lo,
        target_epsilon,
    );
    while hi - lo > 1 {
        let guess = bracket.propose().exp().round() as u64;
        let steps = if guess > lo && guess < hi {
            guess
        } else {
            lo + (hi - lo) / 2
        };
        let e = eps_at(steps)?;
        bracket.update((steps as f64).ln(), e);
        if e > target_epsilon {
            hi = steps;
        } else {
            lo = steps;
            // Probe the next count: it usually closes the bracket at once.
            if lo + 1 < hi {
                let e = eps_at(lo + 1)?;
                bracket.update(((lo + 1) as f64).ln(), e);
                if e > target_epsilon {
                    hi = lo + 1;
                } else {
                    lo += 1;
                }
            }
        }
    }
    Ok(StepsCalibration {
        steps: lo,
        epsilon: bracket.eps_feasible,
        at_search_ceiling: false,
    })
}

/// The noise multiplier whose GDP (CLT) epsilon meets the target: solve
/// `mu` from the GDP dual, then `mu = q sqrt(k (e^{1/sigma^2} - 1))` for
/// sigma. Only a starting point for the search.
fn gdp_noise_estimate(target: f64, delta: f64, q: f64, steps: u64) -> f64 {
    // delta_for_mu decreases in eps and increases in mu: bisect ln mu.
    let (mut lo, mut hi) = (-30.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if crate::gdp::delta_for_mu(mid.exp(), target) > delta {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let mu = lo.exp();
    let ratio = mu * mu / (q * q * steps as f64);
    if sample_rate_is_full(q) {
        (steps as f64).sqrt() / mu
    } else {
        1.0 / ratio.ln_1p().sqrt()
    }
}

fn sample_rate_is_full(q: f64) -> bool {
    q == 1.0
}

/// The most steps RDP allows: for each order, `k r(a) + c(a) <= target` is
/// linear in `k`.
fn rdp_step_floor(target: f64, delta: f64, q: f64, sigma: f64) -> u64 {
    let orders = crate::rdp::default_orders();
    let per_step = crate::rdp::rdp_curve(
        &[Segment {
            noise_multiplier: sigma,
            sample_rate: q,
            steps: 1,
        }],
        &orders,
    );
    let ln_delta = delta.ln();
    orders
        .iter()
        .zip(per_step)
        .filter(|(_, r)| r.is_finite() && *r > 0.0)
        .map(|(&a, r)| {
            let constant = ((a - 1.0) / a).ln() - (ln_delta + a.ln()) / (a - 1.0);
            ((target - constant) / r).floor().max(0.0)
        })
        .fold(0.0, f64::max)
        .min(MAX_STEPS as f64) as u64
}

/// Regula falsi with the Illinois modification for `eps(x) = target` with
/// `eps` monotone in `x`: the bracket keeps one end above the target
/// (`infeasible`) and one at or below it (`feasible`), in either order on
/// the line, and interpolates on `ln eps`.
struct Bracket {
    infeasible: f64,
    f_infeasible: f64,
    feasible: f64,
    f_feasible: f64,
    eps_feasible: f64,
    ln_target: f64,
    last_replaced_feasible: Option<bool>,
}

impl Bracket {
    fn new(
        infeasible: f64,
        eps_infeasible: f64,
        feasible: f64,
        eps_feasible: f64,
        target: f64,
    ) -> Self {
        let ln_target = target.ln();
        Bracket {
            infeasible,
            f_infeasible: eps_infeasible.max(f64::MIN_POSITIVE).ln() - ln_target,
            feasible,
            f_feasible: eps_feasible.max(f64::MIN_POSITIVE).ln() - ln_target,
            eps_feasible,
            ln_target,
            last_replaced_feasible: None,
        }
    }

    /// The false-position point, kept strictly inside the bracket; the
    /// midpoint when interpolation degenerates.
    fn propose(&self) -> f64 {
        let (a, fa, b, fb) = (
            self.infeasible,
            self.f_infeasible,
            self.feasible,
            self.f_feasible,
        );
        let x = (a * fb - b * fa) / (fb - fa);
        let (lo, hi) = (a.min(b), a.max(b));
        let margin = 0.01 * (hi - lo);
        if x.is_finite() && x > lo + margin && x < hi - margin {
            x
        } else {
            0.5 * (lo + hi)
        }
    }

    fn update(&mut self, x: f64, eps: f64) {
        let fx = eps.max(f64::MIN_POSITIVE).ln() - self.ln_target;
        let replacing_feasible = fx <= 0.0;
        // Illinois: when the same end moves twice running, halve the other
        // end's value so the interpolation cannot stall on one side.
        if self.last_replaced_feasible == Some(replacing_feasible) {
            if replacing_feasible {
                self.f_infeasible /= 2.0;
            } else {
                self.f_feasible /= 2.0;
            }
        }
        if replacing_feasible {
            self.feasible = x;
            self.f_feasible = fx;
            self.eps_feasible = eps;
        } else {
            self.infeasible = x;
            self.f_infeasible = fx;
        }
        self.last_replaced_feasible = Some(replacing_feasible);
    }
}
