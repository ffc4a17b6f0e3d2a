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

/// A step's privacy-loss distribution under `P`, supported on some points
/// of the grid `i * h`.
#[derive(Debug, Clone)]
pub struct DiscretePld {
    pub h: f64,
    /// Increasing grid indices of the support.
    pub points: Vec<i64>,
    pub masses: Vec<f64>,
    /// `P`-mass of the atom at `+inf`.
    pub inf_mass: f64,
}

impl DiscretePld {
    pub fn loss(&self, i: usize) -> f64 {
        self.points[i] as f64 * self.h
    }

    pub fn first(&self) -> i64 {
        self.points[0]
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

/// Grid points per coarse cell of the adaptive support.
const CELL: i64 = 64;

/// Connect-the-dots on an adaptive subset of the grid.
///
/// The chord construction is sound on any increasing set of points, and
/// its looseness in a cell of width `w` grows like the cell's mass times
/// `w^2`, weighted by how much the cell matters to the answer: its mass
/// under the tilts `weight_tilts` (the saddle tilt of the answer and a
/// neighbourhood, since the composed `delta` near `eps` is an expectation
/// under that tilt). Cells that matter keep every grid point; cells whose
/// tilted mass is negligible keep every 2nd, 4th, ... 64th. Heavy upper
/// tails (tiny sample rates with little noise) span hundreds of thousands
/// of grid points while carrying almost no tilted mass; this keeps their
/// cost down without loosening the answer measurably.
pub fn discretize(pair: &GaussianPair, h: f64, tail: f64, weight_tilts: &[f64]) -> DiscretePld {
    let (first, last) = grid_range(pair, h, tail);
    let points = adaptive_points(pair, h, first, last, weight_tilts);
    let boundaries: Vec<_> = points
        .iter()
        .map(|&i| pair.boundary(i as f64 * h))
        .collect();
    let n = points.len();
    let mut masses = vec![0.0; n];
    masses[0] = pair.p_below(&boundaries[0]);
    for j in 0..n - 1 {
        let (dp, dq) = pair.interval_masses(&boundaries[j], &boundaries[j + 1]);
        if dp <= 0.0 {
            continue;
        }
        let eps_next = points[j + 1] as f64 * h;
        let width = (points[j + 1] - points[j]) as f64 * h;
        // e^{eps_{j+1}} dQ in log space: eps can exceed the exp range while
        // dQ is correspondingly tiny.
        let scaled_dq = if dq > 0.0 {
            (eps_next + dq.ln()).exp()
        } else {
            0.0
        };
        // Rounding in the split is settled upwards: the left share is
        // trimmed by a relative 1e-9 in favour of the higher loss.
        let left = ((scaled_dq - dp) / width.exp_m1() * (1.0 - 1e-9)).clamp(0.0, dp);
        masses[j] += left;
        masses[j + 1] += dp - left;
    }
    DiscretePld {
        h,
        inf_mass: pair.p_above(&boundaries[n - 1]),
        points,
        masses,
    }
}

fn adaptive_points(
    pair: &GaussianPair,
    h: f64,
    first: i64,
    last: i64,
    weight_tilts: &[f64],
) -> Vec<i64> {
    let mut cells: Vec<i64> = (first..last).step_by(CELL as usize).collect();
    cells.push(last);
    let boundaries: Vec<_> = cells.iter().map(|&i| pair.boundary(i as f64 * h)).collect();
    // ln of each cell's P-mass, and of its tilted weight (upper end, so no
    // cell is under-weighted).
    let ln_mass: Vec<f64> = boundaries
        .windows(2)
        .map(|b| pair.interval_masses(&b[0], &b[1]).0.ln())
        .collect();
    let mut relevance = vec![f64::NEG_INFINITY; ln_mass.len()];
    for &t in weight_tilts.iter().chain(&[0.0]) {
        let tilted: Vec<f64> = ln_mass
            .iter()
            .zip(&cells[1..])
            .map(|(lm, &top)| lm + t * top as f64 * h)
            .collect();
        let peak = tilted.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ln_total = peak + tilted.iter().map(|x| (x - peak).exp()).sum::<f64>().ln();
        for (r, x) in relevance.iter_mut().zip(&tilted) {
            *r = r.max(x - ln_total);
        }
    }
    // A cell of relevance w sampled every s points adds about w s^2 to the
    // looseness, in units of the full grid's; keep the total added below a
    // hundredth.
    let budget = (0.01 / relevance.len() as f64).min(1e-4);
    let mut points = Vec::new();
    for (c, r) in relevance.iter().enumerate() {
        let mut stride = CELL;
        while stride > 1 && r.exp() * (stride * stride) as f64 > budget {
            stride /= 2;
        }
        let (start, end) = (cells[c], cells[c + 1]);
        points.extend((start..end).step_by(stride as usize));
    }
    points.push(last);
    points
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
                let d = discretize(&pair, 1e-3, 1e-18, &[0.0]);
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
        let d = discretize(&pair, h, 1e-20, &[0.0]);
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
