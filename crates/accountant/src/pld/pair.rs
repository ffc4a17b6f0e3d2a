//! The dominating pairs of one Poisson-subsampled Gaussian step.
//!
//! With `N0 = N(0, sigma^2)` and `N1 = N(1, sigma^2)` and sample rate `q`,
//! add/remove-one adjacency has two worst cases, one per direction (Zhu,
//! Dong, Wang 2022, "Optimal Accounting of Differential Privacy via
//! Characteristic Function", on dominating pairs of Poisson subsampling; the
//! same pairs as dp-accounting's Gaussian privacy loss):
//! - remove: `P = (1-q) N0 + q N1`, `Q = N0`;
//! - add:    `P = N0`, `Q = (1-q) N0 + q N1`.
//!
//! The privacy loss `L(x) = ln(dP/dQ)(x)` is monotone in the sample `x`
//! (increasing for remove, decreasing for add), so every event `{L > eps}`
//! is a half-line in `x` and its probability is a Gaussian tail.

use crate::normal::{cdf, ln_add_exp, sf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Remove,
    Add,
}

/// A Gaussian tail stored on the side where it is small, so differences of
/// nearby tails keep their relative precision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    /// `P(Z > z)` when `upper`, else `P(Z <= z)`.
    value: f64,
    upper: bool,
}

impl Tail {
    pub(crate) fn at(z: f64) -> Tail {
        if z >= 0.0 {
            Tail {
                value: sf(z),
                upper: true,
            }
        } else {
            Tail {
                value: cdf(z),
                upper: false,
            }
        }
    }

    pub(crate) fn above(self) -> f64 {
        if self.upper {
            self.value
        } else {
            1.0 - self.value
        }
    }

    pub(crate) fn below(self) -> f64 {
        if self.upper {
            1.0 - self.value
        } else {
            self.value
        }
    }

    /// `P(z_a < Z <= z_b)` for `z_a <= z_b`.
    pub(crate) fn between(a: Tail, b: Tail) -> f64 {
        let mass = match (a.upper, b.upper) {
            (true, true) => a.value - b.value,
            (false, false) => b.value - a.value,
            (false, true) => 1.0 - a.value - b.value,
            (true, false) => 0.0,
        };
        mass.max(0.0)
    }
}

/// Tails of both mixture components at one sample boundary `x`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Boundary {
    n0: Tail,
    n1: Tail,
}

impl Boundary {
    fn new(x: f64, sigma: f64) -> Boundary {
        Boundary {
            n0: Tail::at(x / sigma),
            n1: Tail::at((x - 1.0) / sigma),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct GaussianPair {
    pub sample_rate: f64,
    pub noise_multiplier: f64,
    pub direction: Direction,
}

impl GaussianPair {
    pub fn new(sample_rate: f64, noise_multiplier: f64, direction: Direction) -> Self {
        GaussianPair {
            sample_rate,
            noise_multiplier,
            direction,
        }
    }

    fn sigma2(&self) -> f64 {
        self.noise_multiplier * self.noise_multiplier
    }

    /// `ln(1 - q + q e^{c(x)})` with `c(x) = (2x - 1) / (2 sigma^2)`, the log
    /// density ratio of the mixture to `N0`.
    fn ln_mixture_ratio(&self, x: f64) -> f64 {
        let q = self.sample_rate;
        let c = (2.0 * x - 1.0) / (2.0 * self.sigma2());
        ln_add_exp((-q).ln_1p(), q.ln() + c)
    }

    /// The privacy loss at sample `x`.
    pub fn loss(&self, x: f64) -> f64 {
        match self.direction {
            Direction::Remove => self.ln_mixture_ratio(x),
            Direction::Add => -self.ln_mixture_ratio(x),
        }
    }

    /// Infimum and supremum of the loss (`ln(1-q)` and `-ln(1-q)` bound one
    /// side when `q < 1`).
    pub fn loss_range(&self) -> (f64, f64) {
        let ln_1mq = (-self.sample_rate).ln_1p();
        match self.direction {
            Direction::Remove => (ln_1mq, f64::INFINITY),
            Direction::Add => (f64::NEG_INFINITY, -ln_1mq),
        }
    }

    /// The sample `x` where the mixture ratio equals `e^y`, i.e. solving
    /// `1 - q + q e^{c(x)} = e^y`; `-inf` when `e^y <= 1 - q`.
    fn x_for_ln_ratio(&self, y: f64) -> f64 {
        let q = self.sample_rate;
        // ln(e^y - (1 - q)), guarded against overflow for large y.
        let ln_excess = if y > 30.0 {
            y + (-(1.0 - q) * (-y).exp()).ln_1p()
        } else {
            let v = y.exp_m1() + q;
            if v <= 0.0 {
                return f64::NEG_INFINITY;
            }
            v.ln()
        };
        self.sigma2() * (ln_excess - q.ln()) + 0.5
    }

    /// The sample boundary of the event `{L > eps}` with both components'
    /// tails there. For remove the event is `{x > boundary}`, for add it is
    /// `{x < boundary}`.
    pub(crate) fn boundary(&self, eps: f64) -> Boundary {
        let x = match self.direction {
            Direction::Remove => self.x_for_ln_ratio(eps),
            Direction::Add => self.x_for_ln_ratio(-eps),
        };
        Boundary::new(x, self.noise_multiplier)
    }

    /// `(P, Q)` masses of `{eps_a < L <= eps_b}` given the boundaries at
    /// `eps_a < eps_b`.
    pub(crate) fn interval_masses(&self, a: &Boundary, b: &Boundary) -> (f64, f64) {
        let q = self.sample_rate;
        let (n0, n1) = match self.direction {
            Direction::Remove => (Tail::between(a.n0, b.n0), Tail::between(a.n1, b.n1)),
            Direction::Add => (Tail::between(b.n0, a.n0), Tail::between(b.n1, a.n1)),
        };
        let mixture = (1.0 - q) * n0 + q * n1;
        match self.direction {
            Direction::Remove => (mixture, n0),
            Direction::Add => (n0, mixture),
        }
    }

    /// `P(L > eps)` at a boundary.
    pub(crate) fn p_above(&self, at: &Boundary) -> f64 {
        let q = self.sample_rate;
        match self.direction {
            Direction::Remove => (1.0 - q) * at.n0.above() + q * at.n1.above(),
            Direction::Add => at.n0.below(),
        }
    }

    /// `Q(L > eps)` at a boundary.
    #[cfg(test)]
    pub(crate) fn q_above(&self, at: &Boundary) -> f64 {
        let q = self.sample_rate;
        match self.direction {
            Direction::Remove => at.n0.above(),
            Direction::Add => (1.0 - q) * at.n0.below() + q * at.n1.below(),
        }
    }

    /// `P(L <= eps)` at a boundary.
    pub(crate) fn p_below(&self, at: &Boundary) -> f64 {
        let q = self.sample_rate;
        match self.direction {
            Direction::Remove => (1.0 - q) * at.n0.below() + q * at.n1.below(),
            Direction::Add => at.n0.above(),
        }
    }

    /// Loss levels `(lo, hi)` with `P(L <= lo) <= tail` and `P(L > hi) <= tail`
    /// (clamped to the loss range): the support kept when discretizing.
    pub fn truncated_support(&self, tail: f64) -> (f64, f64) {
        let z = crate::normal::inv_sf(tail);
        let sigma = self.noise_multiplier;
        let q = self.sample_rate;
        let (range_lo, range_hi) = self.loss_range();
        match self.direction {
            // P(L <= eps) <= Phi(x/sigma), and
            // P(L > eps) <= Phi-bar(x/sigma) + q Phi-bar((x-1)/sigma): split
            // the tail between the two terms. The factor q matters: with a
            // tiny sample rate the upper tail is that much lighter.
            Direction::Remove => {
                let z_half = crate::normal::inv_sf(tail / 2.0);
                let z_mixed = crate::normal::inv_sf((tail / (2.0 * q)).min(0.5));
                let x_hi = (sigma * z_half).max(1.0 + sigma * z_mixed);
                (
                    self.loss(-sigma * z).max(range_lo),
                    self.loss(x_hi).min(range_hi),
                )
            }
            // P = N0 and L decreases in x.
            Direction::Add => (
                self.loss(sigma * z).max(range_lo),
                self.loss(-sigma * z).min(range_hi),
            ),
        }
    }
}
