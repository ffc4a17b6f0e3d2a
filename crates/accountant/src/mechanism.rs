//! The mechanism every accountant here analyses: the Poisson-subsampled
//! Gaussian mechanism of DP-SGD, under add/remove-one adjacency.
//!
//! Each step includes every example independently with probability `q`
//! (the sample rate), clips each example's gradient to norm `C`, sums, and
//! adds `N(0, (sigma C)^2)` noise. Scaling by `C` makes the analysis depend
//! only on `q` and the noise multiplier `sigma`.

use serde::{Deserialize, Serialize};

use crate::error::{AccountantError, Argument, Result};

/// The largest number of steps any one history may hold.
pub const MAX_STEPS: u64 = 1_000_000_000;

/// A run of identical steps: `steps` applications of the subsampled Gaussian
/// mechanism with the same noise multiplier and sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub noise_multiplier: f64,
    pub sample_rate: f64,
    pub steps: u64,
}

impl Segment {
    pub fn new(noise_multiplier: f64, sample_rate: f64, steps: u64) -> Result<Self> {
        let segment = Segment {
            noise_multiplier,
            sample_rate,
            steps,
        };
        segment.validate()?;
        Ok(segment)
    }

    pub fn validate(&self) -> Result<()> {
        validate_sample_rate(self.sample_rate)?;
        validate_noise_multiplier(self.noise_multiplier)?;
        validate_steps(self.steps)
    }
}

pub fn validate_sample_rate(q: f64) -> Result<()> {
    if q.is_finite() && q > 0.0 && q <= 1.0 {
        Ok(())
    } else {
        Err(AccountantError::OutOfRange {
            argument: Argument::SampleRate,
            value: q,
            range: "(0, 1]",
        })
    }
}

pub fn validate_noise_multiplier(sigma: f64) -> Result<()> {
    if sigma.is_finite() && sigma > 0.0 {
        Ok(())
    } else {
        Err(AccountantError::OutOfRange {
            argument: Argument::NoiseMultiplier,
            value: sigma,
            range: "(0, inf)",
        })
    }
}

pub fn validate_steps(steps: u64) -> Result<()> {
    if (1..=MAX_STEPS).contains(&steps) {
        Ok(())
    } else {
        Err(AccountantError::OutOfRange {
            argument: Argument::Steps,
            value: steps as f64,
            range: "[1, 1e9]",
        })
    }
}

pub fn validate_delta(delta: f64) -> Result<()> {
    if delta.is_finite() && delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(AccountantError::OutOfRange {
            argument: Argument::Delta,
            value: delta,
            range: "(0, 1)",
        })
    }
}

pub fn validate_target_epsilon(epsilon: f64) -> Result<()> {
    if epsilon.is_finite() && epsilon > 0.0 {
        Ok(())
    } else {
        Err(AccountantError::OutOfRange {
            argument: Argument::TargetEpsilon,
            value: epsilon,
            range: "(0, inf)",
        })
    }
}

/// Checks a whole history before analysis: every segment valid and the total
/// number of steps within [`MAX_STEPS`].
pub fn validate_history(history: &[Segment]) -> Result<()> {
    let mut total: u64 = 0;
    for segment in history {
        segment.validate()?;
        total = total.saturating_add(segment.steps);
    }
    if total > MAX_STEPS {
        return Err(AccountantError::OutOfRange {
            argument: Argument::Steps,
            value: total as f64,
            range: "[1, 1e9] in total",
        });
    }
    Ok(())
}

/// Merges segments with equal parameters, wherever they stand in the
/// history: composition is commutative, so every analysis is unchanged, and
/// a history that alternates between a few settings stays short.
pub fn coalesce(history: &[Segment]) -> Vec<Segment> {
    let mut merged: Vec<Segment> = Vec::with_capacity(history.len());
    for segment in history {
        match merged.iter_mut().find(|m| {
            m.noise_multiplier == segment.noise_multiplier && m.sample_rate == segment.sample_rate
        }) {
            Some(same) => same.steps += segment.steps,
            None => merged.push(*segment),
        }
    }
    merged
}
