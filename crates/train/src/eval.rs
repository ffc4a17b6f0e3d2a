//! Held-out evaluation: the mean loss per predicted token and its
//! perplexity, with or without an adapter.

use serde::Serialize;

use crate::data::Example;
use crate::error::{Result, TrainError};
use crate::lora::Lora;
use crate::model::{Batch, Llama};

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub examples: usize,
    /// Predicted tokens (the supervised positions).
    pub tokens: usize,
    /// Mean cross-entropy per predicted token, in nats.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
}

/// Evaluates `examples` in micro-batches of at most `micro_batch`.
pub fn evaluate(
    model: &Llama,
    lora: Option<&Lora>,
    examples: &[Example],
    micro_batch: usize,
) -> Result<Evaluation> {
    let scored: Vec<&Example> = examples.iter().filter(|e| e.target_count() > 0).collect();
    if scored.is_empty() {
        return Err(TrainError::Invalid(
            "no example has a token to predict: nothing to evaluate".into(),
        ));
    }
    let mut total = 0.0;
    let mut tokens = 0;
    for chunk in scored.chunks(micro_batch.max(1)) {
        let batch = Batch::from_examples(chunk, model.dtype(), model.device())?;
        let losses: Vec<f64> = model
            .losses(&batch, lora)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1()?;
        // Each example's loss is its mean over its own targets.
        for (loss, example) in losses.iter().zip(chunk) {
            total += loss * example.target_count() as f64;
            tokens += example.target_count();
        }
    }
    let loss = total / tokens as f64;
    Ok(Evaluation {
        examples: scored.len(),
        tokens,
        loss,
        perplexity: loss.exp(),
    })
}
