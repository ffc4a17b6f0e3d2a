//! Text generation with a base model and, optionally, a trained adapter:
//! the prompt rendered with the model's chat template, incremental decoding
//! over a key/value cache, greedy or nucleus sampling.

use std::time::Instant;

use candle_core::{DType, Tensor};
use rand::Rng;
use serde::Serialize;

use crate::error::{Result, TrainError};
use crate::lora::Lora;
use crate::model::Llama;
use crate::tokenizer::{Message, TextTokenizer};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub max_new_tokens: usize,
    /// 0 picks the most likely token (greedy, deterministic).
    pub temperature: f64,
    /// Nucleus sampling: draw from the smallest set of tokens whose
    /// probabilities sum to at least `top_p`.
    pub top_p: f64,
}

impl Sampling {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(TrainError::Invalid(format!(
                "temperature {} must be 0 (greedy) or positive",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(TrainError::Invalid(format!(
                "top-p {} must be in (0, 1]",
                self.top_p
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Why generation stopped: "eos" or "max_new_tokens".
    pub stop: &'static str,
    pub seconds: f64,
}

/// How a prompt is presented to the model.
pub enum Prompt<'a> {
    /// One user turn (after an optional system turn), rendered with the
    /// model's chat template and a generation prompt.
    Chat {
        system: Option<&'a str>,
        user: &'a str,
    },
    /// Text to continue, with the tokenizer's special tokens.
    Raw(&'a str),
}

/// The token ids a prompt becomes.
pub fn prompt_ids(tokenizer: &TextTokenizer, prompt: Prompt<'_>) -> Result<Vec<u32>> {
    match prompt {
        Prompt::Chat { system, user } => {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(Message {
                    role: "system".into(),
                    content: system.into(),
                });
            }
            messages.push(Message {
                role: "user".into(),
                content: user.into(),
            });
            let text = tokenizer.render_chat(&messages, true)?;
            Ok(tokenizer.encode(&text, false)?.ids)
        }
        Prompt::Raw(text) => Ok(tokenizer.encode(text, true)?.ids),
    }
}

/// Generates a continuation of `prompt`, calling `on_text` with each new
/// piece of text as it is decoded.
pub fn generate(
    model: &Llama,
    tokenizer: &TextTokenizer,
    lora: Option<&Lora>,
    prompt: &[u32],
    sampling: &Sampling,
    rng: &mut impl Rng,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    sampling.validate()?;
    if prompt.is_empty() {
        return Err(TrainError::Invalid("the prompt is empty".into()));
    }
    let room = model.max_len().saturating_sub(prompt.len());
    if room == 0 {
        return Err(TrainError::Invalid(format!(
            "the prompt's {} tokens fill the model's {} positions",
            prompt.len(),
            model.max_len()
        )));
    }
    let started = Instant::now();
    let eos = tokenizer.eos_id();
    let mut cache = model.new_cache();
    let mut input = prompt.to_vec();
    let mut generated: Vec<u32> = Vec::new();
    let mut emitted = 0;
    let mut stop = "max_new_tokens";
    for _ in 0..sampling.max_new_tokens.min(room) {
        let tokens = Tensor::new(input.as_slice(), model.device())?.unsqueeze(0)?;
        let logits = model.forward_cached(&tokens, &mut cache, lora)?;
        let logits: Vec<f64> = logits.squeeze(0)?.to_dtype(DType::F64)?.to_vec1()?;
        let next = choose(&logits, sampling, rng);
        if Some(next) == eos {
            stop = "eos";
            break;
        }
        generated.push(next);
        // Decode the whole continuation: a token may complete a character
        // the previous ones began.
        let text = tokenizer.decode(&generated)?;
        if text.len() > emitted && text.is_char_boundary(emitted) {
            on_text(&text[emitted..]);
            emitted = text.len();
        }
        input = vec![next];
    }
    Ok(Generation {
        text: tokenizer.decode(&generated)?,
        prompt_tokens: prompt.len(),
        new_tokens: generated.len(),
        stop,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The next token: the argmax, or a draw from the tempered distribution
/// restricted to its top-p nucleus.
fn choose(logits: &[f64], sampling: &Sampling, rng: &mut impl Rng) -> u32 {
    let argmax = logits
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0;
    if sampling.temperature == 0.0 {
        return argmax as u32;
    }
    let max = logits[argmax];
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .map(|&v| ((v - max) / sampling.temperature).exp())
        .enumerate()
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept = 0.0;
    let mut nucleus = 0;
    for (_, p) in &probs {
        kept += p / total;
        nucleus += 1;
        if kept >= sampling.top_p {
            break;
        }
    }
    let mass: f64 = probs[..nucleus].iter().map(|p| p.1).sum();
    let mut draw = rng.random::<f64>() * mass;
    for &(i, p) in &probs[..nucleus] {
        if draw < p {
            return i as u32;
        }
        draw -= p;
    }
    probs[nucleus - 1].0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let s = Sampling {
            max_new_tokens: 1,
            temperature: 0.0,
            top_p: 1.0,
        };
        assert_eq!(choose(&[0.1, 3.0, -1.0, 2.9], &s, &mut rng), 1);
    }

    /// With top-p 0.5 only the dominant token may be drawn; with top-p 1
    /// and temperature 1 the draw frequencies follow the softmax.
    #[test]
    fn nucleus_sampling_follows_the_tempered_distribution() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let logits = [2.0f64, 1.0, 0.0, -1.0];
        let narrow = Sampling {
            max_new_tokens: 1,
            temperature: 1.0,
            top_p: 0.5,
        };
        for _ in 0..200 {
            assert_eq!(choose(&logits, &narrow, &mut rng), 0);
        }
        let full = Sampling {
            top_p: 1.0,
            ..narrow
        };
        let n = 40_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[choose(&logits, &full, &mut rng) as usize] += 1;
        }
        let z: f64 = logits.iter().map(|v| v.exp()).sum();
        for (i, &c) in counts.iter().enumerate() {
            let p = logits[i].exp() / z;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            // 5 standard deviations: a false failure about once in 3.5
            // million runs per token.
            assert!(
                ((c as f64 / n as f64) - p).abs() < 5.0 * sd,
                "token {i}: {c} of {n}, p {p}"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = Sampling {
            max_new_tokens: 1,
            temperature: -1.0,
            top_p: 1.0,
        };
        assert!(bad.validate().is_err());
        let bad = Sampling {
            temperature: 0.5,
            top_p: 0.0,
            ..bad
        };
        assert!(bad.validate().is_err());
    }
}
