//! AdamW (Loshchilov & Hutter 2019, PyTorch's formulation: decoupled weight
//! decay applied before the Adam update) and the learning-rate schedule:
//! linear warm-up, then linear decay to zero at the last planned step.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl AdamWConfig {
    /// Learning rate at (1-based) `step`.
    pub fn rate(&self, step: u64) -> f64 {
        let lr = self.learning_rate;
        if self.warmup_steps > 0 && step <= self.warmup_steps {
            return lr * step as f64 / self.warmup_steps as f64;
        }
        let decay_span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let done = step.saturating_sub(self.warmup_steps).min(decay_span);
        lr * (1.0 - done as f64 / decay_span as f64).max(0.0)
    }
}

/// Optimizer state: first and second moments per parameter.
pub struct AdamW {
    pub config: AdamWConfig,
    pub step: u64,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: &[Tensor]) -> Result<Self> {
        Ok(AdamW {
            config,
            step: 0,
            m: params
                .iter()
                .map(|p| p.zeros_like())
                .collect::<candle_core::Result<_>>()?,
            v: params
                .iter()
                .map(|p| p.zeros_like())
                .collect::<candle_core::Result<_>>()?,
        })
    }

    /// One update with gradients `grads`; returns the new parameters.
    pub fn update(&mut self, params: &[Tensor], grads: &[Tensor]) -> Result<Vec<Tensor>> {
        self.step += 1;
        let c = self.config;
        let lr = c.rate(self.step);
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2 = 1.0 - c.beta2.powi(self.step as i32);
        let mut out = Vec::with_capacity(params.len());
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            self.m[i] = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            self.v[i] = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&self.m[i] / bias1)?;
            let v_hat = (&self.v[i] / bias2)?;
            let decayed = (p * (1.0 - lr * c.weight_decay))?;
            let step = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            out.push((decayed - (step * lr)?)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let c = AdamWConfig {
            learning_rate: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 4,
            total_steps: 14,
        };
        assert_eq!(c.rate(1), 0.25);
        assert_eq!(c.rate(4), 1.0);
        assert!((c.rate(9) - 0.5).abs() < 1e-12);
        assert_eq!(c.rate(14), 0.0);
    }

    /// Matches the closed form of the first AdamW step: with bias
    /// correction the first move is `lr * g / (|g| + eps)`.
    #[test]
    fn first_step_moves_each_coordinate_by_the_learning_rate() {
        let c = AdamWConfig {
            learning_rate: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.5,
            warmup_steps: 0,
            total_steps: 100,
        };
        let p = Tensor::new(&[1.0f64, -2.0, 0.5], &Device::Cpu).unwrap();
        let g = Tensor::new(&[3.0f64, -0.5, 0.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(c, std::slice::from_ref(&p)).unwrap();
        let next: Vec<f64> = opt.update(&[p], &[g]).unwrap()[0].to_vec1().unwrap();
        let lr = c.rate(1);
        let expected = [
            1.0 * (1.0 - lr * 0.5) - lr * 3.0 / (3.0 + 1e-8),
            -2.0 * (1.0 - lr * 0.5) + lr * 0.5 / (0.5 + 1e-8),
            0.5 * (1.0 - lr * 0.5),
        ];
        for (a, b) in next.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }
}
