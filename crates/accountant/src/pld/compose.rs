//! Composition of discrete privacy-loss distributions by FFT, under an
//! exponential tilt, with every approximation bounded on the pessimistic
//! side.
//!
//! The k-fold composition of a discrete PLD is the k-fold convolution of its
//! masses (Koskela, Jälkö, Honkela 2020, "Computing Tight Differential
//! Privacy Guarantees Using FFT", AISTATS): one forward FFT, a pointwise
//! power, one inverse FFT, so the cost barely depends on k.
//!
//! Two refinements make that sound and precise far into the tails:
//! - *Tilting.* Convolving `p_i e^{t l_i} / M(t)` instead of `p_i` gives the
//!   composed masses times `e^{t l} / M(t)^k` exactly (the Esscher
//!   transform). With `t` the saddle point, the tilted composition peaks at
//!   the answer `eps`, so the FFT's absolute rounding error, tiny next to the
//!   peak, stays tiny relative to the masses that decide `delta` even at
//!   `delta = 1e-12` after ten million steps. Untilted, that rounding floor
//!   swamps small deltas.
//! - *A finite window.* The circular convolution folds mass from outside the
//!   window back into it. Folded mass only ever adds to `delta` (it is
//!   positive), so it is pessimistic, and the window is sized to keep it
//!   small; the mass lost above the window top is bounded by Chernoff,
//!   `P(S > a) <= M(l)^k e^{-l a}`, and added to `delta`.
//!   Rounding is bounded by the standard FFT error model
//!   (`|error| <= c * eps_mach * log2(N) * ||x||_1` per coefficient),
//!   propagated through the power, and added to `delta` too.

use std::cell::RefCell;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::discretize::DiscretePld;

/// Generous constant of the FFT rounding model (radix-2 needs about 2-3).
const FFT_ERROR_CONSTANT: f64 = 8.0;
/// Below this, `e^x` underflows: a coefficient raised to the k-th power is 0.
const LN_UNDERFLOW: f64 = -740.0;

thread_local! {
    static PLANNER: RefCell<RealFftPlanner<f64>> = RefCell::new(RealFftPlanner::new());
    /// Buffers kept between compositions: a calibration or a long step
    /// search composes hundreds of times, and fresh megabyte buffers cost
    /// more in page faults than the FFTs themselves.
    static REALS: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
    static COMPLEXES: RefCell<Vec<Vec<Complex<f64>>>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer of `len` reals from the thread's pool.
fn take_reals(len: usize) -> Vec<f64> {
    let mut v = REALS.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.resize(len, 0.0);
    v
}

fn give_reals(v: Vec<f64>) {
    REALS.with(|p| p.borrow_mut().push(v));
}

fn take_complexes(len: usize) -> Vec<Complex<f64>> {
    let mut v = COMPLEXES.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.resize(len, Complex::new(0.0, 0.0));
    v
}

fn give_complexes(v: Vec<Complex<f64>>) {
    COMPLEXES.with(|p| p.borrow_mut().push(v));
}

/// One step's discrete PLD with its log-masses, and how often it repeats.
pub(crate) struct Part {
    pub pld: DiscretePld,
    pub ln_masses: Vec<f64>,
    pub count: u64,
}

impl Part {
    pub fn new(pld: DiscretePld, count: u64) -> Part {
        let ln_masses = pld.masses.iter().map(|m| m.ln()).collect();
        Part {
            pld,
            ln_masses,
            count,
        }
    }
}

/// Cumulant summary of the tilted composition: `ln E[e^{tS}]` over the
/// finite part, and the mean and variance of `S` under the tilt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tilt {
    pub t: f64,
    pub ln_mgf: f64,
    pub mean: f64,
    pub var: f64,
}

impl Tilt {
    pub fn sd(&self) -> f64 {
        self.var.sqrt()
    }
}

/// A whole history as discrete parts on one grid.
pub(crate) struct Parts {
    pub h: f64,
    pub parts: Vec<Part>,
}

impl Parts {
    /// Tilted cumulants of the composition at `t`.
    pub fn tilt(&self, t: f64) -> Tilt {
        let mut total = Tilt {
            t,
            ln_mgf: 0.0,
            mean: 0.0,
            var: 0.0,
        };
        for part in &self.parts {
            let (ln_mgf, mean, var) = tilt_one(part, t);
            let k = part.count as f64;
            total.ln_mgf += k * ln_mgf;
            total.mean += k * mean;
            total.var += k * var;
        }
        total
    }

    /// The composed `P`-mass at `+inf`: the chance that any step hit it.
    pub fn inf_mass(&self) -> f64 {
        let ln_none: f64 = self
            .parts
            .iter()
            .map(|p| p.count as f64 * (-p.pld.inf_mass).ln_1p())
            .sum();
        -ln_none.exp_m1()
    }

    /// Lowest and highest finite composed loss.
    pub fn loss_span(&self) -> (f64, f64) {
        let mut lo = 0.0;
        let mut hi = 0.0;
        for p in &self.parts {
            let k = p.count as f64;
            lo += k * p.pld.loss(0);
            hi += k * p.pld.loss(p.pld.points.len() - 1);
        }
        (lo, hi)
    }

    /// The tilt whose composed mean is `target` (the saddle point of the
    /// hockey-stick integral at `eps = target`), found by safeguarded Newton
    /// from `start`; zero when the untilted mean is already past `target`.
    /// It only centres things, so a tenth of a standard deviation is close
    /// enough.
    pub fn saddle_tilt(&self, target: f64, start: f64) -> Tilt {
        const MAX_TILT: f64 = 1e9;
        let mut cur = self.tilt(start.max(0.0));
        let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
        for _ in 0..100 {
            let miss = cur.mean - target;
            if miss.abs() <= 0.1 * cur.sd() || (miss > 0.0 && cur.t == 0.0) {
                return cur;
            }
            if miss < 0.0 {
                lo = cur.t;
            } else {
                hi = cur.t;
            }
            let newton = cur.t - miss / cur.var.max(f64::MIN_POSITIVE);
            let next = if newton > lo && newton < hi {
                newton
            } else if hi.is_finite() {
                0.5 * (lo + hi)
            } else {
                (4.0 * cur.t).max(1.0)
            };
            if next > MAX_TILT || next == cur.t {
                return cur;
            }
            cur = self.tilt(next);
        }
        cur
    }

    /// The smallest tilt, up to the saddle tilt, at which the FFT's rounding
    /// is predicted to stay below `share * delta` near `eps`.
    ///
    /// The saddle tilt gives the best relative precision at `eps`, but it
    /// also fattens heavy upper tails (few-step, small-noise histories), and
    /// a fat tilted tail needs a wide window. The allowance at `eps` is the
    /// per-bin rounding bound times the untilting weights above `eps`; the
    /// per-bin bound barely depends on the tilt, so once a composition has
    /// measured it (`measured`) the prediction is accurate. Before that it
    /// comes from the error model of [`compose`], with the spectrum's
    /// significant band estimated from the tilted spread (`~3 h / sd` of
    /// the frequencies).
    pub fn precision_tilt(
        &self,
        saddle: &Tilt,
        eps: f64,
        delta: f64,
        share: f64,
        measured: Option<f64>,
    ) -> Tilt {
        let h = self.h;
        let steps: f64 = self.parts.iter().map(|p| p.count as f64).sum();
        // No untilted candidate: without tilt nothing damps mass folding in
        // from below, and heavy lower tails (the add direction) would need
        // a huge window.
        for fraction in [
            1.0 / 16.0,
            1.0 / 8.0,
            1.0 / 4.0,
            3.0 / 8.0,
            1.0 / 2.0,
            3.0 / 4.0,
        ] {
            let candidate = self.tilt(saddle.t * fraction);
            let sd = candidate.sd();
            if sd == 0.0 {
                continue;
            }
            let per_bin = measured.unwrap_or_else(|| {
                2.0 * steps * FFT_ERROR_CONSTANT * f64::EPSILON * 24.0 * (3.0 * h / sd).min(1.0)
            });
            // The window reaches at least where Chernoff at this tilt bounds
            // the mass above by a millionth of delta.
            let top = (candidate.mean + 7.0 * sd)
                .max((candidate.ln_mgf - (1e-6 * delta).ln()) / candidate.t);
            let bins_above = ((top - eps) / h).max(1.0);
            let weight_above = (candidate.ln_mgf - candidate.t * eps).exp()
                * bins_above.min(1.0 / -(-candidate.t * h).exp_m1());
            if per_bin * weight_above <= share * delta {
                return candidate;
            }
        }
        *saddle
    }

    /// Plans the FFT window for a tilted composition whose answer is
    /// expected near the tilted mean.
    ///
    /// The circular convolution folds mass from outside the window back in,
    /// and folded mass only adds to `delta`: this is about tightness, not
    /// soundness. Mass at a true loss `l` above the top lands at `l - N h`
    /// with its untilting weight multiplied by `e^{t N h}`; it matters only
    /// if it lands above the answer, i.e. if `l > answer + N h`. Mass below
    /// the bottom lands `N h` higher, damped by `e^{-t N h}`. The window is
    /// sized so that both, and the mass lost above the top (which `delta`
    /// counts in full), stay below `share`, using Chernoff bounds
    /// `P(S > a) <= e^{K(l) - l a}` (`l > 0`), `P(S < a) <= e^{K(l) - l a}`
    /// (`l < 0`) at a few tilts around the Gaussian-optimal ones.
    /// Answers below `protected` may be loosened by folding; the caller
    /// recentres on them.
    pub fn window(&self, tilt: &Tilt, share: f64, window_sds: f64) -> Window {
        let ln_share = share.ln();
        let (span_lo, span_hi) = self.loss_span();
        let (t, sd) = (tilt.t, tilt.sd());
        let gaussian_step =
            |var: f64| (2.0 * (-ln_share).max(1.0) / var.max(f64::MIN_POSITIVE)).sqrt();
        let protected_below = |lo: f64| (tilt.mean - PROTECTED_SDS * sd).max(lo);
        // Lost mass above the top, and mass folding from above the answer,
        // as bounded by one upper tilt.
        let lost = |u: &Tilt| (u.ln_mgf - ln_share) / u.t;
        let folded = |u: &Tilt, lo: f64| {
            if u.t > t {
                lo + (u.ln_mgf - u.t * protected_below(lo) - ln_share) / (u.t - t)
            } else {
                f64::INFINITY
            }
        };
        let lo_guess = (tilt.mean - window_sds * sd).max(span_lo);
        let mut upper = self.tilt_scan(t, 1.0, gaussian_step(tilt.var), |u| {
            lost(u).max(folded(u, lo_guess))
        });
        if t > 0.0 {
            upper.push(*tilt);
        }
        let top_for = |lo: f64| {
            let lost = upper.iter().map(lost).fold(f64::INFINITY, f64::min);
            let folded = upper
                .iter()
                .map(|u| folded(u, lo))
                .fold(f64::INFINITY, f64::min);
            lost.max(folded)
                .max(tilt.mean + window_sds * sd)
                .min(span_hi)
        };
        let mut lo = lo_guess;
        let mut hi = top_for(lo);
        if lo > span_lo {
            // Folding from below: P(S < lo) e^{-t (hi - lo)} <= share, with
            // P(S < lo) <= e^{K(l) - l lo} for l < 0.
            let untilted = self.tilt(0.0);
            // The scan maximises the level below which the mass is `share`.
            let lower = self.tilt_scan(0.0, -1.0, gaussian_step(untilted.var), |l| {
                -(l.ln_mgf - ln_share) / l.t
            });
            let ln_mass_below = |lo: f64| {
                lower
                    .iter()
                    .map(|l| l.ln_mgf - l.t * lo)
                    .fold(0.0, f64::min)
            };
            let excess = ln_mass_below(lo) - t * (hi - lo) - ln_share;
            if excess > 0.0 {
                let chernoff_lo = lower
                    .iter()
                    .map(|l| (l.ln_mgf - ln_share) / l.t)
                    .fold(f64::NEG_INFINITY, f64::max)
                    .max(span_lo)
                    .min(lo);
                // Either widen upwards, empty bins past the span included,
                // until the tilt damps the folding, or move the bottom down
                // to where the mass below it is negligible: whichever is
                // narrower.
                let widen_up = if t > 0.0 { excess / t } else { f64::INFINITY };
                if widen_up <= lo - chernoff_lo {
                    hi += widen_up;
                } else {
                    lo = chernoff_lo;
                    hi = top_for(lo);
                }
            }
        }
        Window {
            lo,
            hi,
            protected: protected_below(lo),
            upper,
            span_hi,
        }
    }

    /// Tilts `base + direction * d` for offsets `d` chosen by golden-section
    /// search on `ln d` to minimise `score`; returns every tilt evaluated.
    ///
    /// The best Chernoff tilt for a far level sits anywhere from barely past
    /// `base` (heavy tails, whose cumulants explode) to a few Gaussian steps
    /// `typical` past it (light tails), so the search spans a factor 2^27.
    fn tilt_scan(
        &self,
        base: f64,
        direction: f64,
        typical: f64,
        score: impl Fn(&Tilt) -> f64,
    ) -> Vec<Tilt> {
        const INVERSE_GOLDEN: f64 = 0.618_033_988_749_894_8;
        let scored = |u: f64| {
            let tilt = self.tilt(base + direction * u.exp());
            let value = score(&tilt);
            (tilt, if value.is_nan() { f64::INFINITY } else { value })
        };
        let ln2 = std::f64::consts::LN_2;
        let (mut a, mut b) = (typical.ln() - 24.0 * ln2, typical.ln() + 3.0 * ln2);
        let mut c = b - INVERSE_GOLDEN * (b - a);
        let mut d = a + INVERSE_GOLDEN * (b - a);
        let (tc, mut fc) = scored(c);
        let (td, mut fd) = scored(d);
        let mut all = vec![tc, td];
        for _ in 0..9 {
            if fc <= fd {
                b = d;
                d = c;
                fd = fc;
                c = b - INVERSE_GOLDEN * (b - a);
                let (tilt, value) = scored(c);
                fc = value;
                all.push(tilt);
            } else {
                a = c;
                c = d;
                fc = fd;
                d = a + INVERSE_GOLDEN * (b - a);
                let (tilt, value) = scored(d);
                fd = value;
                all.push(tilt);
            }
        }
        all
    }
}

/// Answers this many tilted standard deviations below the tilted mean are
/// shielded from folded mass by the window plan.
const PROTECTED_SDS: f64 = 3.0;

/// A planned window and the tilts that bound the mass above it.
pub(crate) struct Window {
    pub lo: f64,
    pub hi: f64,
    /// Answers at or above this are not loosened by folding.
    pub protected: f64,
    upper: Vec<Tilt>,
    span_hi: f64,
}

impl Window {
    /// Bound on the composed finite mass above `a`.
    fn mass_above(&self, a: f64) -> f64 {
        if a >= self.span_hi {
            return 0.0;
        }
        self.upper
            .iter()
            .map(|c| (c.ln_mgf - c.t * a).exp())
            .fold(1.0, f64::min)
    }

    /// First grid index and number of bins covering `[lo, hi]` on grid `h`.
    pub fn bins(&self, h: f64) -> (i64, usize) {
        let first = (self.lo / h).floor() as i64 - 1;
        let last = ((self.hi / h).ceil() as i64 + 1).max(first + 2);
        (first, (last - first + 1) as usize)
    }
}

/// `(ln M(t), mean, var)` of one part's tilted finite masses.
fn tilt_one(part: &Part, t: f64) -> (f64, f64, f64) {
    let (peak, peak_i) = tilt_peak(part, t);
    let centre = part.pld.loss(peak_i);
    // Centre the moments at the peak so the variance does not cancel.
    let (mut s0, mut s1, mut s2) = (0.0, 0.0, 0.0);
    for (i, lm) in part.ln_masses.iter().enumerate() {
        let loss = part.pld.loss(i);
        let w = shifted_exp(lm + t * loss - peak);
        let d = loss - centre;
        s0 += w;
        s1 += w * d;
        s2 += w * d * d;
    }
    let mean_d = s1 / s0;
    let mean = centre + mean_d;
    let var = (s2 / s0 - mean_d * mean_d).max(0.0);
    (peak + s0.ln(), mean, var)
}

/// The largest exponent `ln p_i + t l_i` and where it is: shifting by it
/// keeps every tilted sum free of overflow.
fn tilt_peak(part: &Part, t: f64) -> (f64, usize) {
    part.ln_masses
        .iter()
        .enumerate()
        .map(|(i, lm)| (lm + t * part.pld.loss(i), i))
        .fold(
            (f64::NEG_INFINITY, 0),
            |acc, x| if x.0 > acc.0 { x } else { acc },
        )
}

/// `e^x` for `x <= 0`, skipping the library's slow underflow path.
fn shifted_exp(x: f64) -> f64 {
    if x < -745.0 {
        0.0
    } else {
        x.exp()
    }
}

/// FFT sizes with small prime factors only (2^a * 3^b), which realfft runs
/// fastest. Past 2^17 only powers of two: a plan for a new size costs more
/// than the transform there (about 12 ms at 2^19), so fewer distinct large
/// sizes means fewer plans for a process, and a cold call seldom pays twice.
pub(crate) fn fft_size_at_least(n: usize) -> usize {
    const LARGE: usize = 1 << 17;
    if n > LARGE {
        return n.next_power_of_two();
    }
    let n = n.max(2);
    let mut best = usize::MAX;
    let mut p3 = 1usize;
    while p3 <= 2 * n {
        // At least one factor of two: the spectrum code assumes even sizes.
        let mut size = 2 * p3;
        while size < n {
            size *= 2;
        }
        best = best.min(size);
        p3 *= 3;
    }
    best
}

/// The tilted composition on a window of the loss grid.
pub(crate) struct Composition {
    pub h: f64,
    pub tilt: Tilt,
    /// Grid index of the window's first bin.
    pub window_first: i64,
    /// The circular convolution, unnormalised; bin `b` of the window is at
    /// `(b + shift) % n` and the tilted composed masses sum to one.
    circular: Vec<f64>,
    shift: usize,
    /// Bound on the absolute rounding error of each tilted mass.
    pub rounding: f64,
    /// Composed `P`-mass at `+inf` plus the bound on the finite mass
    /// above the window: everything `delta` must count beyond the window.
    pub beyond: f64,
}

pub(crate) enum Solution {
    /// The smallest `eps` at or above the window's bottom with
    /// `delta(eps) <= target`, and the rounding allowance included there.
    Epsilon { eps: f64, rounding: f64 },
    /// `delta <= target` already at the window's bottom: eps lies below it.
    BelowWindow,
    /// The mass beyond the window alone exceeds the target: eps lies above.
    AboveWindow,
}

pub(crate) fn compose(
    parts: &Parts,
    tilt: Tilt,
    window: &Window,
    window_first: i64,
    n: usize,
) -> Composition {
    let (forward, inverse) = PLANNER.with(|p| {
        let mut p = p.borrow_mut();
        (p.plan_fft_forward(n), p.plan_fft_inverse(n))
    });
    let spectrum_len = n / 2 + 1;
    let log2n = (n as f64).log2();
    let coefficient_error = FFT_ERROR_CONSTANT * f64::EPSILON * log2n;

    let mut base: i128 = 0;
    let spectra: Vec<(f64, Vec<Complex<f64>>)> = parts
        .parts
        .iter()
        .map(|part| {
            base += part.count as i128 * part.pld.first() as i128;
            (
                part.count as f64,
                tilted_spectrum(part, tilt.t, n, &forward),
            )
        })
        .collect();

    // Z_f = prod_j z_jf^{k_j}, in polar form. The rounding bound collects,
    // per frequency, the first-order propagation of each input coefficient's
    // error (sum_j k_j |Z| / |z_j| dz), the error of evaluating the power
    // (relative eps * (k |ln|z|| + k pi), from ln and arg scaled by k), and
    // the inverse transform's own rounding.
    let mut product = take_complexes(spectrum_len);
    let mut error_sum = 0.0;
    // |z|^2 below this makes |z|^k, hence the whole product, underflow.
    let underflow_at: Vec<f64> = spectra
        .iter()
        .map(|(k, _)| (2.0 * LN_UNDERFLOW / k).exp())
        .collect();
    // Where the product underflows, the first-order error term
    // k_j |z_j|^{k_j - 1} prod_{i != j} |z_i|^{k_i} dz is negligible unless
    // k_j = 1, where it is at most dz.
    let single_steps = spectra.iter().filter(|(k, _)| *k == 1.0).count() as f64;
    for (f, slot) in product.iter_mut().enumerate() {
        let weight = if f == 0 || 2 * f == n { 1.0 } else { 2.0 };
        let (mut ln_abs, mut pow_error, mut derivative_weight) = (0.0, 0.0, 0.0);
        let mut underflows = false;
        for ((k, spectrum), floor) in spectra.iter().zip(&underflow_at) {
            let modulus2 = spectrum[f].norm_sqr();
            if modulus2 < *floor {
                underflows = true;
                break;
            }
            let ln_mod = 0.5 * modulus2.ln();
            ln_abs += k * ln_mod;
            pow_error += k * (ln_mod.abs() + std::f64::consts::PI);
            derivative_weight += k / modulus2.sqrt();
        }
        if underflows || ln_abs < LN_UNDERFLOW {
            error_sum += weight * single_steps * coefficient_error;
            continue;
        }
        let phase: f64 = spectra.iter().map(|(k, s)| k * s[f].arg()).sum();
        let modulus = ln_abs.exp();
        *slot = Complex::from_polar(modulus, phase);
        // First-order propagation of the inputs' error (sum_j k_j |Z| / |z_j|
        // dz), the power's evaluation error, the inverse transform's rounding.
        let first_order = modulus * derivative_weight * coefficient_error;
        let evaluation = modulus * f64::EPSILON * (pow_error + 4.0);
        let inverse_rounding = modulus * coefficient_error;
        error_sum += weight * (first_order + evaluation + inverse_rounding);
    }
    product[0].im = 0.0;
    if n.is_multiple_of(2) {
        product[spectrum_len - 1].im = 0.0;
    }
    let mut circular = take_reals(n);
    let mut scratch = take_complexes(inverse.get_scratch_len());
    inverse
        .process_with_scratch(&mut product, &mut circular, &mut scratch)
        .expect("buffer lengths match the plan");
    give_complexes(scratch);
    give_complexes(product);
    for (_, spectrum) in spectra {
        give_complexes(spectrum);
    }

    // Circular position p holds composed indices congruent to p + base.
    let shift = (window_first as i128 - base).rem_euclid(n as i128) as usize;
    let top = (window_first + n as i64 - 1) as f64 * parts.h;
    Composition {
        h: parts.h,
        tilt,
        window_first,
        circular,
        shift,
        rounding: error_sum / n as f64,
        beyond: parts.inf_mass() + window.mass_above(top),
    }
}

fn tilted_spectrum(
    part: &Part,
    t: f64,
    n: usize,
    forward: &Arc<dyn RealToComplex<f64>>,
) -> Vec<Complex<f64>> {
    let (peak, _) = tilt_peak(part, t);
    let mut buffer = take_reals(n);
    let mut total = 0.0;
    let first = part.pld.first();
    for (i, lm) in part.ln_masses.iter().enumerate() {
        let w = shifted_exp(lm + t * part.pld.loss(i) - peak);
        total += w;
        buffer[((part.pld.points[i] - first) as usize) % n] += w;
    }
    let normalise = 1.0 / total;
    buffer.iter_mut().for_each(|x| *x *= normalise);
    let mut spectrum = take_complexes(n / 2 + 1);
    let mut scratch = take_complexes(forward.get_scratch_len());
    forward
        .process_with_scratch(&mut buffer, &mut spectrum, &mut scratch)
        .expect("buffer lengths match the plan");
    give_complexes(scratch);
    give_reals(buffer);
    spectrum
}

impl Drop for Composition {
    fn drop(&mut self) {
        give_reals(std::mem::take(&mut self.circular));
    }
}

impl Composition {
    fn loss(&self, bin: usize) -> f64 {
        (self.window_first + bin as i64) as f64 * self.h
    }

    fn len(&self) -> usize {
        self.circular.len()
    }

    /// Tilted composed mass of window bin `bin`.
    #[cfg(test)]
    fn tilted(&self, bin: usize) -> f64 {
        let n = self.len();
        self.circular[(bin + self.shift) % n] / n as f64
    }

    /// `ln` of the untilting factor `M(t)^k e^{-t l}` at a loss.
    fn ln_untilt(&self, loss: f64) -> f64 {
        self.tilt.ln_mgf - self.tilt.t * loss
    }

    /// Smallest `eps` whose pessimistic `delta(eps)` is at most `target`.
    ///
    /// Scans bins from the top, keeping
    /// `A = sum p`, `G = sum p e^{l_{b-1} - l}` (updated multiplicatively so
    /// nothing overflows at large eps) and the rounding allowance; on the
    /// interval below bin `b`, `delta(eps) = C + A + R - e^{eps - l_{b-1}} G`
    /// is solved in closed form.
    pub fn solve(&self, target: f64) -> Solution {
        let beyond = self.beyond;
        if beyond >= target {
            return Solution::AboveWindow;
        }
        let decay = (-self.h).exp();
        let (mut a, mut g, mut r) = (0.0, 0.0, 0.0);
        // The untilting weight e^{K - t l} grows by e^{t h} per bin going
        // down: multiply, and refresh from the exact value now and then so
        // rounding cannot drift.
        let growth = (self.tilt.t * self.h).exp();
        let mut weight = 0.0;
        let n = self.len();
        // Window bin b sits at circular position (b + shift) mod n; walk
        // both downwards without a division per bin.
        let mut position = (n - 1 + self.shift) % n;
        for (count, bin) in (0..n).rev().enumerate() {
            let tilted = self.circular[position] / n as f64;
            position = if position == 0 { n - 1 } else { position - 1 };
            let loss = self.loss(bin);
            let ln_weight = self.ln_untilt(loss);
            weight = if weight == 0.0 || count % 256 == 0 {
                shifted_exp(ln_weight.min(0.0)) * ln_weight.max(0.0).exp()
            } else {
                weight * growth
            };
            let mass = tilted.max(0.0) * weight;
            a += mass;
            g = decay * (g + mass);
            r += self.rounding * weight;
            let constant = beyond + a + r;
            let at_lower = constant - g;
            if at_lower > target {
                let lower = loss - self.h;
                let eps = if g > 0.0 {
                    lower + ((constant - target) / g).ln()
                } else {
                    loss
                };
                return Solution::Epsilon {
                    eps: eps.min(loss),
                    rounding: r,
                };
            }
        }
        Solution::BelowWindow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_sizes_are_smooth_and_sufficient() {
        for n in [1, 2, 3, 5, 100, 1000, 4097, 100_000, 200_000, 600_000] {
            let s = fft_size_at_least(n);
            assert!(s >= n && s.is_multiple_of(2), "{n} -> {s}");
            let mut r = s;
            while r.is_multiple_of(2) {
                r /= 2;
            }
            while r.is_multiple_of(3) {
                r /= 3;
            }
            assert_eq!(r, 1, "{s} has a factor other than 2 and 3");
            assert!(s <= 2 * n.max(2), "{n} -> {s} wastes too much");
            if s > 1 << 17 {
                assert!(s.is_power_of_two(), "{n} -> {s}");
            }
        }
    }

    /// Direct convolution of a small PLD with itself equals the FFT path.
    #[test]
    fn fft_composition_matches_direct_convolution() {
        let pld = DiscretePld {
            h: 0.1,
            points: vec![-2, -1, 0, 1, 2],
            masses: vec![0.1, 0.2, 0.4, 0.2, 0.1],
            inf_mass: 0.0,
        };
        let parts = Parts {
            h: 0.1,
            parts: vec![Part::new(pld.clone(), 3)],
        };
        let tilt = parts.tilt(0.7);
        let window = parts.window(&tilt, 1e-12, 7.0);
        let comp = compose(&parts, tilt, &window, -6, 16);
        // Direct 3-fold convolution.
        let mut direct = vec![1.0];
        for _ in 0..3 {
            let mut next = vec![0.0; direct.len() + 4];
            for (i, a) in direct.iter().enumerate() {
                for (j, b) in pld.masses.iter().enumerate() {
                    next[i + j] += a * b;
                }
            }
            direct = next;
        }
        for (i, want) in direct.iter().enumerate() {
            let loss = (-6 + i as i64) as f64 * 0.1;
            let got = comp.tilted(i) * (tilt.ln_mgf - tilt.t * loss).exp();
            assert!((got - want).abs() < 1e-13, "bin {i}: {got} vs {want}");
        }
        assert!(comp.rounding < 1e-12 && comp.rounding > 0.0);
    }
}
