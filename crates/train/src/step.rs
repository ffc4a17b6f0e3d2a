//! One training step's gradient: over a logical batch split into physical
//! micro-batches, either the DP-SGD gradient (per-example clipping, the
//! clipped sum, Gaussian noise) or the plain one, both divided by the
//! expected batch size.
//!
//! The clipped sum needs no second backward pass: the backward pass yields
//! per-example LoRA gradients directly, so clipping is a per-example
//! weight on a sum the plain step computes anyway.

use candle_core::{DType, Tensor};
use rand::Rng;

use crate::data::Example;
use crate::dpsgd;
use crate::error::Result;
use crate::lora::Lora;
use crate::model::{Batch, Gradients, Llama};

/// How per-example gradients are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Combine {
    /// DP-SGD: clip each example to `clip_norm`, add `N(0, (noise_multiplier
    /// * clip_norm)^2)` to the sum.
    Private {
        clip_norm: f64,
        noise_multiplier: f64,
    },
    /// No clipping, no noise (benchmarks and the non-private baseline).
    Plain,
}

/// What a step computed.
pub struct StepGradient {
    /// The update direction, in [`Lora::parameters`] order.
    pub gradient: Vec<Tensor>,
    /// Each example's mean token loss.
    pub losses: Vec<f64>,
    /// Each example's gradient norm before clipping (DP steps only).
    pub norms: Vec<f64>,
    /// Real (non-padding) tokens processed.
    pub tokens: usize,
}

/// Computes the step's gradient over `examples` in micro-batches of at most
/// `micro_batch` examples. `expected_batch` (q n) divides the sum, so an
/// empty batch yields pure noise scaled the same way.
pub fn gradient(
    model: &Llama,
    lora: &Lora,
    examples: &[&Example],
    micro_batch: usize,
    expected_batch: f64,
    combine: Combine,
    rng: &mut impl Rng,
) -> Result<StepGradient> {
    let mut sum: Vec<Tensor> = Vec::new();
    let mut losses = Vec::with_capacity(examples.len());
    let mut norms = Vec::with_capacity(examples.len());
    let mut tokens = 0;
    for chunk in examples.chunks(micro_batch.max(1)) {
        let batch = Batch::from_examples(chunk, model.dtype(), model.device())?;
        tokens += chunk.iter().map(|e| e.tokens.len()).sum::<usize>();
        let (batch_losses, tape) = model.forward_train(&batch, lora, rng)?;
        losses.extend(batch_losses.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        let batch_sum = match combine {
            Combine::Private { clip_norm, .. } => {
                let grads = model.backward(tape, lora, Gradients::PerExample)?;
                let example_norms = dpsgd::per_example_norms(&grads)?;
                norms.extend(example_norms.to_dtype(DType::F64)?.to_vec1::<f64>()?);
                let weights = dpsgd::clip_factors(&example_norms, clip_norm)?;
                dpsgd::weighted_sum(&grads, &weights)?
            }
            Combine::Plain => {
                let grads = model.backward(tape, lora, Gradients::Summed)?;
                dpsgd::weighted_sum(&grads, &[1.0])?
            }
        };
        dpsgd::accumulate(&mut sum, batch_sum)?;
    }
    let shapes: Vec<(Vec<usize>, DType)> = lora
        .parameters()
        .iter()
        .map(|(_, t)| (t.dims().to_vec(), t.dtype()))
        .collect();
    if sum.is_empty() {
        // An empty Poisson sample is a normal step: the sum is zero.
        sum = lora
            .parameters()
            .iter()
            .map(|(_, t)| t.zeros_like())
            .collect::<candle_core::Result<_>>()?;
    }
    if let Combine::Private {
        clip_norm,
        noise_multiplier,
    } = combine
    {
        let noise =
            dpsgd::gaussian_noise(&shapes, noise_multiplier * clip_norm, model.device(), rng)?;
        for (s, n) in sum.iter_mut().zip(noise) {
            *s = (&*s + n)?;
        }
    }
    let gradient = sum
        .into_iter()
        .map(|s| (s / expected_batch).map_err(Into::into))
        .collect::<Result<_>>()?;
    Ok(StepGradient {
        gradient,
        losses,
        norms,
        tokens,
    })
}
