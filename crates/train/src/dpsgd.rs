//! DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy",
//! Algorithm 1) with Poisson sampling.
//!
//! Each step: every example joins the batch independently with probability
//! `q` (Poisson sampling: the batch size is Binomial(n, q), as the
//! accountant assumes; an empty batch is a normal step); each example's
//! gradient is clipped to L2 norm `C`; the clipped gradients are summed;
//! Gaussian noise `N(0, (sigma C)^2)` is added to every coordinate; the sum
//! is divided by the expected batch size `q n`. Assumptions the privacy
//! claim rests on: the privacy unit is one example (one sequence), the
//! sampling and the noise are secret (drawn here from a ChaCha20 CSPRNG
//! seeded by the OS), and nothing else computed from the data is released.

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::Result;
use crate::kernels;
use crate::model::LoraGrads;

/// Indices of a Poisson sample of `n` examples at rate `q`: each index
/// independently with probability `q`. Uses geometric gaps, so the cost is
/// proportional to the sample, not to `n`.
pub fn poisson_sample(n: usize, q: f64, rng: &mut impl Rng) -> Vec<usize> {
    if q >= 1.0 {
        return (0..n).collect();
    }
    let mut picked = Vec::with_capacity((n as f64 * q * 1.2) as usize + 4);
    let ln_miss = (-q).ln_1p();
    let mut i = 0usize;
    loop {
        // Gap G ~ Geometric(q) on {0, 1, ...}: floor(ln U / ln(1 - q)).
        let u: f64 = rng.random::<f64>();
        let gap = ((1.0 - u).ln() / ln_miss).floor();
        if !gap.is_finite() || gap >= (n - i) as f64 {
            break;
        }
        i += gap as usize;
        picked.push(i);
        i += 1;
        if i >= n {
            break;
        }
    }
    picked
}

/// Per-example L2 norms of the full LoRA gradient (all layers and
/// factors): (batch,).
pub fn per_example_norms(grads: &LoraGrads) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (da, db) in grads.layers.iter().flatten().flatten() {
        for g in [da, db] {
            let sq = g.sqr()?.sum((1, 2))?;
            total = Some(match total {
                Some(t) => (t + sq)?,
                None => sq,
            });
        }
    }
    Ok(total.expect("at least one LoRA factor").sqrt()?)
}

/// Clipping factors `min(1, C / norm_i)`.
pub fn clip_factors(norms: &Tensor, clip_norm: f64) -> Result<Vec<f64>> {
    let norms64: Vec<f64> = norms.to_dtype(DType::F64)?.to_vec1()?;
    Ok(norms64
        .iter()
        .map(|&n| if n > clip_norm { clip_norm / n } else { 1.0 })
        .collect())
}

/// `sum_i w_i g_i` for every factor, in [`crate::lora::Lora::parameters`]
/// order; `weights` = clip factors for DP, ones for a plain step.
pub fn weighted_sum(grads: &LoraGrads, weights: &[f64]) -> Result<Vec<Tensor>> {
    let mut out = Vec::new();
    for (da, db) in grads.layers.iter().flatten().flatten() {
        out.push(kernels::weighted_batch_sum(da, weights)?);
        out.push(kernels::weighted_batch_sum(db, weights)?);
    }
    Ok(out)
}

/// Adds `b` into `a` elementwise (accumulating micro-batches).
pub fn accumulate(a: &mut Vec<Tensor>, b: Vec<Tensor>) -> Result<()> {
    if a.is_empty() {
        *a = b;
        return Ok(());
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x = (&*x + y)?;
    }
    Ok(())
}

/// Gaussian noise `N(0, std^2)` shaped like each of `like`, drawn from
/// `rng` in float64 and cast.
pub fn gaussian_noise(
    like: &[(Vec<usize>, DType)],
    std: f64,
    device: &Device,
    rng: &mut impl Rng,
) -> Result<Vec<Tensor>> {
    like.iter()
        .map(|(shape, dtype)| {
            let n: usize = shape.iter().product();
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    z * std
                })
                .collect();
            Ok(Tensor::from_vec(values, shape.as_slice(), device)?.to_dtype(*dtype)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// The sampler's batch sizes follow Binomial(n, q): the mean and the
    /// variance of 4000 draws fall within bounds a correct sampler misses
    /// with probability below 1e-4 each (normal approximation, |z| < 4).
    #[test]
    fn poisson_batch_sizes_are_binomial() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for &(n, q) in &[(1000usize, 0.01f64), (200, 0.3), (50_000, 0.0007)] {
            let draws = 4000;
            let sizes: Vec<f64> = (0..draws)
                .map(|_| poisson_sample(n, q, &mut rng).len() as f64)
                .collect();
            let mean = sizes.iter().sum::<f64>() / draws as f64;
            let var = sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (draws - 1) as f64;
            let (m, v) = (n as f64 * q, n as f64 * q * (1.0 - q));
            let mean_se = (v / draws as f64).sqrt();
            assert!(
                (mean - m).abs() < 4.0 * mean_se,
                "n={n} q={q}: mean {mean} vs {m}"
            );
            // Var of the sample variance ~ 2 v^2 / draws for near-normal data.
            let var_se = (2.0 * v * v / draws as f64).sqrt();
            assert!(
                (var - v).abs() < 4.0 * var_se + 0.05 * v,
                "n={n} q={q}: var {var} vs {v}"
            );
        }
    }

    #[test]
    fn every_index_is_equally_likely_and_samples_are_sorted_and_distinct() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (n, q, rounds) = (20usize, 0.25, 20_000);
        let mut counts = vec![0usize; n];
        for _ in 0..rounds {
            let s = poisson_sample(n, q, &mut rng);
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            for i in s {
                counts[i] += 1;
            }
        }
        let expected = rounds as f64 * q;
        let se = (rounds as f64 * q * (1.0 - q)).sqrt();
        for (i, c) in counts.iter().enumerate() {
            assert!(
                (*c as f64 - expected).abs() < 4.5 * se,
                "index {i}: {c} vs {expected}"
            );
        }
        assert!(poisson_sample(10, 1.0, &mut rng).len() == 10);
    }

    /// Noise has the asked standard deviation: the sample variance of
    /// 200,000 draws is within 4 standard errors (false-failure rate about
    /// 6e-5), and the mean within 4 standard errors of 0.
    #[test]
    fn noise_standard_deviation_matches() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let std = 2.5;
        let n = 200_000;
        let t = gaussian_noise(&[(vec![n], DType::F64)], std, &Device::Cpu, &mut rng).unwrap();
        let v: Vec<f64> = t[0].to_vec1().unwrap();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(mean.abs() < 4.0 * std / (n as f64).sqrt(), "mean {mean}");
        let var_se = std * std * (2.0 / (n - 1) as f64).sqrt();
        assert!(
            (var - std * std).abs() < 4.0 * var_se,
            "variance {var} vs {}",
            std * std
        );
    }
}
