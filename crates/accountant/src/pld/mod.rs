//! Privacy-loss-distribution (PLD) accountant: the default, and the
//! tightest sound figure this crate computes.
//!
//! What it computes: for a history of Poisson-subsampled Gaussian steps and
//! a target `delta`, an `eps` such that the composition is `(eps, delta)`-DP
//! under add/remove-one adjacency: the larger of the remove-direction and
//! add-direction answers (see [`pair`]).
//!
//! How, and why it is sound:
//! 1. Each step's privacy loss is discretized on a uniform grid with the
//!    pessimistic connect-the-dots construction (Doroshenko et al. 2022,
//!    [`discretize`]): the discrete pair dominates the true one at every eps.
//! 2. The discrete steps are composed by FFT (Koskela, Jälkö, Honkela 2020)
//!    under an exponential tilt centred on the answer, with the window's
//!    folding, the Chernoff tail beyond it and the FFT's rounding all bounded
//!    on the pessimistic side ([`compose`]).
//! 3. `eps` is read off the composed hockey-stick curve exactly.
//!
//! Every step of that chain can only raise `delta`, so the reported `eps`
//! never falls below the true one, up to floating point: FFT rounding is
//! bounded and added; the step masses come from Gaussian tails evaluated to
//! about 1e-16 relative accuracy, with the rounding of each chord split
//! settled towards the higher loss, an error many orders of magnitude below
//! the grid's own pessimism. Its looseness comes from the grid: connect-the-dots raises each
//! step's loss by a mean-preserving spread of variance at most `h^2/4` and
//! mean at most `h^2/8` (Jensen on `e^{-L}`), which moves `eps` by about
//! `k h^2 (1 + t) / 8` with `t` the local slope of `ln delta`. The grid step
//! is chosen from that estimate to keep the looseness near a relative
//! `1e-3`, which is what makes the cost independent of how many steps there
//! are: `k h^2` stays roughly constant.
//!
//! Assumptions: Poisson subsampling with a known rate, add/remove-one
//! adjacency, per-example L2 clipping so the sensitivity is 1 in units of
//! the clip norm, and Gaussian noise of standard deviation `sigma` in those
//! units.

mod compose;
mod discretize;
mod pair;

use serde::Serialize;

pub use pair::Direction;

use crate::error::{AccountantError, Result};
use crate::mechanism::{coalesce, validate_delta, validate_history, Segment};
use compose::{compose, fft_size_at_least, Part, Parts, Solution};
use discretize::{discretize, grid_range};
use pair::GaussianPair;

/// Knobs of the PLD computation. The defaults meet the documented accuracy
/// within the documented time.
#[derive(Debug, Clone, Copy)]
pub struct PldOptions {
    /// Target looseness of the grid, relative to `eps` (worst case of the
    /// spread model above; typical looseness is about two thirds of it).
    pub relative_accuracy: f64,
    /// Largest FFT allowed. A history that would need more gets a coarser,
    /// still sound, grid: this bounds time and memory.
    pub max_fft_size: usize,
    /// Largest grid for one step's discretization, for the same reason.
    pub max_grid_points: usize,
}

impl Default for PldOptions {
    fn default() -> Self {
        PldOptions {
            relative_accuracy: 1e-3,
            max_fft_size: 1 << 19,
            max_grid_points: 1 << 19,
        }
    }
}

/// A PLD epsilon with how it was obtained.
#[derive(Debug, Clone, Serialize)]
pub struct PldEpsilon {
    pub epsilon: f64,
    /// The neighbouring direction that attains it (`None` when the history is
    /// an unsampled Gaussian, solved in closed form).
    pub direction: Option<Direction>,
    /// Loss grid step of the final computation.
    pub grid_step: f64,
    /// FFT size of the final computation.
    pub fft_size: usize,
}

impl Serialize for Direction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Direction::Remove => "remove",
            Direction::Add => "add",
        })
    }
}

/// Absolute accuracy floor: epsilons this close to zero are not worth a
/// finer grid.
const ABSOLUTE_ACCURACY: f64 = 1e-6;
/// Share of `delta` the discretization's truncated tails may take, over all
/// steps together.
const TRUNCATION_SHARE: f64 = 1e-4;
/// Share of `delta` that mass folded into, or lost from, the FFT window may
/// take.
const WINDOW_TAIL_SHARE: f64 = 1e-6;
/// Window half-width in tilted standard deviations.
const WINDOW_SDS: f64 = 7.0;
/// A pass is accepted when its rounding allowance is below this share of
/// `delta`.
const ROUNDING_SHARE: f64 = 1e-3;
const MAX_PASSES: usize = 6;
/// Grid coarsening of the first pass that only has to settle that a
/// direction does not dominate.
const SETTLE_COARSENING: f64 = 2.0;

/// Epsilon at `delta` with the default options.
pub fn epsilon(history: &[Segment], delta: f64) -> Result<PldEpsilon> {
    epsilon_with(history, delta, &PldOptions::default())
}

pub fn epsilon_with(history: &[Segment], delta: f64, options: &PldOptions) -> Result<PldEpsilon> {
    validate_history(history)?;
    validate_delta(delta)?;
    let history = coalesce(history);
    if history.iter().all(|s| s.sample_rate == 1.0) {
        return unsampled_gaussian(&history, delta);
    }
    let guess = initial_guess(&history, delta)?;
    let remove = solve_direction(Direction::Remove, &history, delta, guess, options, None)?;
    let add_ceiling: f64 = history
        .iter()
        .map(|s| -(s.steps as f64) * (-s.sample_rate).ln_1p())
        .sum();
    // The add-direction loss never exceeds sum_k -ln(1-q): past that, its
    // delta is exactly zero and the remove direction decides.
    if add_ceiling <= remove.epsilon {
        return Ok(remove.into_public());
    }
    let add = solve_direction(
        Direction::Add,
        &history,
        delta,
        Guess {
            eps: remove.epsilon,
            tilt: remove.tilt,
        },
        options,
        Some(remove.epsilon),
    )?;
    Ok(if add.epsilon > remove.epsilon {
        add.into_public()
    } else {
        remove.into_public()
    })
}

/// Without subsampling the composition is a Gaussian mechanism with
/// `mu = sqrt(sum k / sigma^2)`, whose curve is known exactly (Balle & Wang
/// 2018, Theorem 8); the bisection returns the upper end of its bracket.
fn unsampled_gaussian(history: &[Segment], delta: f64) -> Result<PldEpsilon> {
    let mu = history
        .iter()
        .map(|s| s.steps as f64 / (s.noise_multiplier * s.noise_multiplier))
        .sum::<f64>()
        .sqrt();
    Ok(PldEpsilon {
        epsilon: crate::gdp::epsilon_for_mu(mu, delta)?,
        direction: None,
        grid_step: 0.0,
        fft_size: 0,
    })
}

#[derive(Debug, Clone, Copy)]
struct Guess {
    eps: f64,
    tilt: f64,
}

/// A cheap upper estimate from RDP at a few integer orders; its best order
/// minus one is a Chernoff tilt near the saddle point.
fn initial_guess(history: &[Segment], delta: f64) -> Result<Guess> {
    const ORDERS: [f64; 17] = [
        2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0,
        256.0,
    ];
    let (eps, order) = crate::rdp::epsilon_with_orders(history, delta, &ORDERS)?;
    Ok(Guess {
        eps,
        tilt: order - 1.0,
    })
}

/// Grid step whose spread-model looseness is `relative_accuracy * eps`.
fn grid_step(eps: f64, tilt: f64, steps: f64, relative_accuracy: f64) -> f64 {
    let allowed = (relative_accuracy * eps).max(ABSOLUTE_ACCURACY);
    (8.0 * allowed / (steps * (1.0 + tilt.max(0.0)))).sqrt()
}

struct DirectionEpsilon {
    epsilon: f64,
    direction: Direction,
    tilt: f64,
    grid_step: f64,
    fft_size: usize,
}

impl DirectionEpsilon {
    fn into_public(self) -> PldEpsilon {
        PldEpsilon {
            epsilon: self.epsilon,
            direction: Some(self.direction),
            grid_step: self.grid_step,
            fft_size: self.fft_size,
        }
    }
}

/// Discretizes every segment on grid `h`, or says by how much `h` must grow
/// to respect the grid-size cap.
fn discretize_history(
    direction: Direction,
    history: &[Segment],
    h: f64,
    tail: f64,
    max_points: usize,
    weight_tilts: &[f64],
) -> std::result::Result<Parts, f64> {
    let pairs: Vec<_> = history
        .iter()
        .map(|s| GaussianPair::new(s.sample_rate, s.noise_multiplier, direction))
        .collect();
    let widest = pairs
        .iter()
        .map(|p| {
            let (first, last) = grid_range(p, h, tail);
            (last - first + 1) as f64
        })
        .fold(0.0, f64::max);
    if widest > max_points as f64 {
        return Err(widest / max_points as f64);
    }
    Ok(Parts {
        h,
        parts: pairs
            .iter()
            .zip(history)
            .map(|(pair, s)| Part::new(discretize(pair, h, tail, weight_tilts), s.steps))
            .collect(),
    })
}

/// Epsilon for one direction, refined pass by pass until the grid is fine
/// enough for the answer, its rounding allowance is small and no folded mass
/// can have loosened it. Every pass's answer is sound, so the smallest is
/// kept; with `settle_below`, the first sound answer at or below it ends the
/// search (the caller only needs to know this direction does not dominate).
fn solve_direction(
    direction: Direction,
    history: &[Segment],
    delta: f64,
    guess: Guess,
    options: &PldOptions,
    settle_below: Option<f64>,
) -> Result<DirectionEpsilon> {
    let steps: f64 = history.iter().map(|s| s.steps as f64).sum();
    let tail = (TRUNCATION_SHARE * delta / steps).max(f64::MIN_POSITIVE);
    let mut centre = guess.eps.max(0.0);
    let mut h = grid_step(centre, guess.tilt, steps, options.relative_accuracy);
    if settle_below.is_some() {
        // Only "not above the bar" is needed: a coarser, still pessimistic,
        // grid usually shows it at a quarter of the cost.
        h *= SETTLE_COARSENING;
    }
    // Coarsest step the caps force; finer requests are clamped to it.
    let mut h_floor = 0.0f64;
    let mut best: Option<DirectionEpsilon> = None;
    // The last composition's per-bin rounding bound, which predicts the
    // next one's.
    let mut measured_rounding: Option<f64> = None;
    let mut tilt_start = guess.tilt;
    // Width of the last window, in loss units: it predicts whether a finer
    // grid would fit the FFT cap before paying for its discretization.
    let mut last_width: Option<f64> = None;
    for _ in 0..MAX_PASSES * 2 {
        h = h.max(h_floor);
        if let Some(width) = last_width {
            let predicted = width / h;
            if predicted > 1.2 * options.max_fft_size as f64 {
                h_floor = h * predicted / options.max_fft_size as f64;
                if best.as_ref().is_some_and(|b| h_floor >= b.grid_step) {
                    break;
                }
                h = h_floor;
            }
        }
        let grid_tilt = tilt_start.max(0.0);
        let weight_tilts = [grid_tilt / 2.0, grid_tilt, 2.0 * grid_tilt];
        let parts = match discretize_history(
            direction,
            history,
            h,
            tail,
            options.max_grid_points,
            &weight_tilts,
        ) {
            Ok(parts) => parts,
            Err(too_fine_by) => {
                h_floor = h * too_fine_by * 1.01;
                if best.as_ref().is_some_and(|b| h_floor >= b.grid_step) {
                    // The caps allow no finer grid than one already used.
                    break;
                }
                continue;
            }
        };
        let saddle = parts.saddle_tilt(centre, tilt_start);
        let tilt = parts.precision_tilt(
            &saddle,
            centre,
            delta,
            ROUNDING_SHARE / 10.0,
            measured_rounding,
        );
        let window = parts.window(&tilt, WINDOW_TAIL_SHARE * delta, WINDOW_SDS);
        let (first, needed) = window.bins(h);
        if needed > options.max_fft_size {
            h_floor = h * needed as f64 / options.max_fft_size as f64 * 1.01;
            if best.as_ref().is_some_and(|b| h_floor >= b.grid_step) {
                break;
            }
            continue;
        }
        let n = fft_size_at_least(needed);
        last_width = Some(needed as f64 * h);
        let composition = compose(&parts, tilt, &window, first, n);
        let answer = |epsilon: f64| DirectionEpsilon {
            epsilon,
            direction,
            tilt: tilt.t,
            grid_step: h,
            fft_size: n,
        };
        measured_rounding = Some(composition.rounding);
        match composition.solve(delta) {
            Solution::Epsilon { eps, rounding } => {
                let eps = eps.max(0.0);
                // The grid step the answer needs depends on the local slope
                // of ln delta there: the saddle tilt at eps, not the tilt
                // this pass guessed.
                let local = parts.saddle_tilt(eps, saddle.t);
                tilt_start = local.t;
                let wanted_h = grid_step(eps, local.t, steps, options.relative_accuracy);
                let precise = rounding <= ROUNDING_SHARE * delta;
                let unfolded = eps >= window.protected;
                let fine_enough = h <= 1.3 * wanted_h.max(h_floor);
                // The adaptive grid resolved cells by their mass under tilts
                // around `grid_tilt`; the answer's own tilt must be among them.
                let grid_weighted_right = local.t <= 2.0 * grid_tilt || local.t == 0.0;
                let improved = best.as_ref().is_none_or(|b| eps < b.epsilon);
                if improved {
                    best = Some(answer(eps));
                }
                if settle_below.is_some_and(|bar| eps <= bar) {
                    break;
                }
                if precise && fine_enough && unfolded && grid_weighted_right {
                    break;
                }
                let next_h = h.min(wanted_h).max(h_floor);
                if next_h == h && (!improved || (eps - centre).abs() <= 1e-9 * eps.max(1e-12)) {
                    // Nothing left to change: more tilt cannot be had, and
                    // this (sound) answer is as good as this grid gives.
                    break;
                }
                centre = eps;
                h = next_h;
            }
            Solution::BelowWindow => {
                // delta at the window's bottom already meets the target, so
                // the bottom is a sound answer; look lower for a tighter one.
                let bottom = (first as f64 * h).max(0.0);
                if best.as_ref().is_none_or(|b| bottom < b.epsilon) {
                    best = Some(answer(bottom));
                }
                if bottom == 0.0 || settle_below.is_some_and(|bar| bottom <= bar) {
                    break;
                }
                centre = (bottom - tilt.sd()).max(0.0);
            }
            Solution::AboveWindow => {
                if parts.inf_mass() >= delta {
                    return Err(AccountantError::Unbounded { delta });
                }
                centre = (first + n as i64) as f64 * h + tilt.sd();
            }
        }
    }
    best.ok_or_else(|| AccountantError::Numerical {
        accountant: "pld",
        detail: format!("no pass bracketed epsilon for delta {delta}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsampled_gaussian_matches_the_analytic_curve() {
        // One Gaussian step with sigma = 1 at eps = 1 has delta = 0.1269367...
        let h = [Segment::new(1.0, 1.0, 1).unwrap()];
        let eps = epsilon(&h, 0.126_936_737_506_643_9).unwrap().epsilon;
        assert!((eps - 1.0).abs() < 1e-9, "{eps}");
    }
}
