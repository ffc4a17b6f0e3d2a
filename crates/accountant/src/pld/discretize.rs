//! Pessimistic connect-the-dots discretization of one step's privacy loss.
//!
//! Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022, "Connect the Dots:
//! Tighter Discrete Approximations of Privacy Loss Distributions" (PETS),
//! Section 3. The argument, in short: the hockey-stick curve
//! `delta(eps) = E_P[(1 - e^{eps - L})_+]` is, as a function of `u = e^eps`,
//! convex and decreasing with `delta(u = 0) = 1`. Its chords through the
//! points `(u_i, delta(u_i))` of a grid, closed by `(0, 1)`, therefore lie on
//! or above it everywhere; a piecewise-linear convex curve of that shape is
//! itself the hockey-stick curve of a pair whose loss takes only grid values.
//! That discrete pair dominates the true one at every `eps` (the paper shows
//! it is the tightest pessimistic pair on the grid), and dominance survives
//! composition, so composing discrete pairs bounds the composed mechanism
//! from above.
//!
//! Concretely, the chord over `[eps_j, eps_{j+1}]` sends the interval's
//! `P`-mass to its two endpoints so that both its `P`-mass and its `Q`-mass
//! (`E_P[e^{-L}]`) are preserved:
//! `left = (e^{eps_{j+1}} dQ - dP) / (e^h - 1)`, `right = dP - left`.
//!
//! Truncation, both pessimistic: `P`-mass below the lowest grid point moves
//! up to it (raising a loss only raises `delta`), and `P`-mass above the
//! highest becomes an atom at `+inf` that counts fully in `delta` at every
//! `eps`.

use super::pair::GaussianPair;

/// A step's privacy-loss distribution under `P` on the grid `i * h`.
#[derive(Debug, Clone)]
pub struct DiscretePld {
    pub h: f64,
    /// Grid index of `masses[0]`.
    pub first: i64,
    pub masses: Vec<f64>,
    /// `P`-mass of the atom at `+inf`.
    pub inf_mass: f64,
}

impl DiscretePld {
    pub fn loss(&self, i: usize) -> f64 {
        (self.first + i as i64) as f64 * self.h
    }

    pub fn last(&self) -> i64 {
        self.first + self.masses.len() as i64 - 1
    }
}

/// First and last grid index of the discretization of `pair` with step `h`
/// that keeps all but `tail` of the mass at each end.
pub fn grid_range(pair: &GaussianPair, h: f64, tail: f64) -> (i64, i64) {
    let (lo, hi) = pair.truncated_support(tail);
    let first = (lo / h).floor() as i64;
    let last = ((hi / h).ceil() as i64).max(first + 1);
    (first, last)
}

pub fn discretize(pair: &GaussianPair, h: f64, tail: f64) -> DiscretePld {
    let (first, last) = grid_range(pair, h, tail);
    let n = (last - first + 1) as usize;
    let boundaries: Vec<_> = (first..=last)
        .map(|i| pair.boundary(i as f64 * h))
        .collect();
    let mut masses = vec![0.0; n];
    masses[0] = pair.p_below(&boundaries[0]);
    let expm1_h = h.exp_m1();
    for j in 0..n - 1 {
        let (dp, dq) = pair.interval_masses(&boundaries[j], &boundaries[j + 1]);
        if dp <= 0.0 {
            continue;
        }
        let eps_next = (first + j as i64 + 1) as f64 * h;
        // e^{eps_{j+1}} dQ in log space: eps can exceed the exp range while
        // dQ is correspondingly tiny.
        let scaled_dq = if dq > 0.0 {
            (eps_next + dq.ln()).exp()
        } else {
            0.0
        };
        let left = ((scaled_dq - dp) / expm1_h).clamp(0.0, dp);
        masses[j] += left;
        masses[j + 1] += dp - left;
    }
    DiscretePld {
        h,
        first,
        masses,
        inf_mass: pair.p_above(&boundaries[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pld::pair::Direction;

    fn hockey_stick(d: &DiscretePld, eps: f64) -> f64 {
        d.inf_mass
            + d.masses
                .iter()
                .enumerate()
                .filter(|(i, _)| d.loss(*i) > eps)
                .map(|(i, m)| m * (1.0 - (eps - d.loss(i)).exp()))
                .sum::<f64>()
    }

    /// Exact hockey-stick divergence of the remove pair, from the tails.
    fn exact_remove_delta(q: f64, sigma: f64, eps: f64) -> f64 {
        let pair = GaussianPair::new(q, sigma, Direction::Remove);
        let b = pair.boundary(eps);
        pair.p_above(&b) - eps.exp() * pair.q_above(&b)
    }

    #[test]
    fn masses_sum_to_one_and_preserve_the_q_measure() {
        for direction in [Direction::Remove, Direction::Add] {
            for &(q, sigma) in &[(0.01, 1.0), (0.3, 0.6), (1.0, 2.0)] {
                let pair = GaussianPair::new(q, sigma, direction);
                let d = discretize(&pair, 1e-3, 1e-18);
                let total: f64 = d.masses.iter().sum::<f64>() + d.inf_mass;
                assert!((total - 1.0).abs() < 1e-12, "{direction:?} q={q}: {total}");
                // E_P[e^{-L}] over finite losses is Q's mass there: at most 1,
                // and within the truncated tails of it.
                let q_mass: f64 = d
                    .masses
                    .iter()
                    .enumerate()
                    .map(|(i, m)| m * (-d.loss(i)).exp())
                    .sum();
                assert!(q_mass <= 1.0 + 1e-12 && q_mass > 1.0 - 1e-9, "{q_mass}");
            }
        }
    }

    #[test]
    fn discrete_curve_dominates_the_exact_one_and_touches_it_on_the_grid() {
        let (q, sigma, h) = (0.05, 0.9, 0.01);
        let pair = GaussianPair::new(q, sigma, Direction::Remove);
        let d = discretize(&pair, h, 1e-20);
        for i in 0..400 {
            let eps = i as f64 * 0.00737;
            let exact = exact_remove_delta(q, sigma, eps);
            let discrete = hockey_stick(&d, eps);
            assert!(discrete >= exact - 1e-15, "eps={eps}: {discrete} < {exact}");
        }
        // At grid points the chord meets the curve.
        for i in [3, 50, 200] {
            let eps = i as f64 * h;
            let exact = exact_remove_delta(q, sigma, eps);
            let discrete = hockey_stick(&d, eps);
            assert!(
                (discrete - exact).abs() <= 1e-12 + 1e-9 * exact,
                "{discrete} vs {exact}"
            );
        }
    }
}
