//! Training data: JSONL records of `{"text": ...}` or chat
//! `{"messages": [{"role", "content"}, ...]}`, tokenized once, with the
//! positions the loss covers (every token of plain text; the assistant
//! turns of a chat). A malformed line is an error naming its line number;
//! nothing is skipped silently.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use pft_ledger::DatasetId;
use serde::Deserialize;

use crate::error::{Result, TrainError};
use crate::model::Batch;
use crate::protection::{ProtectionReport, Protector};
use crate::tokenizer::{Message, TextTokenizer};

/// One training example: a token sequence and which tokens the model is
/// trained to predict.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub tokens: Vec<u32>,
    /// `supervised[j]`: token `j` is a prediction target.
    pub supervised: Vec<bool>,
}

impl Example {
    /// Positions `t` whose next token is a target.
    pub fn target_count(&self) -> usize {
        self.supervised.iter().skip(1).filter(|s| **s).count()
    }
}

/// A tokenized dataset and its identity.
pub struct Dataset {
    pub path: PathBuf,
    pub id: DatasetId,
    pub examples: Vec<Example>,
    /// Examples cut to the maximum length.
    pub truncated: usize,
    /// What `context_protection` replaced, when it ran.
    pub protection: Option<ProtectionReport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    text: Option<String>,
    messages: Option<Vec<Message>>,
}

/// A parsed record, before tokenization.
enum Parsed {
    Text(String),
    Chat(Vec<Message>),
}

impl Parsed {
    fn texts(&mut self) -> Vec<&mut String> {
        match self {
            Parsed::Text(t) => vec![t],
            Parsed::Chat(messages) => messages.iter_mut().map(|m| &mut m.content).collect(),
        }
    }
}

impl Dataset {
    /// Reads and tokenizes a JSONL file, protecting its text first when a
    /// [`Protector`] is given. Sequences longer than `max_len` tokens are
    /// cut (and counted in `truncated`). The dataset's identity is that of
    /// the file as read: protection does not make it another dataset for
    /// the ledger.
    pub fn load(
        path: &Path,
        tokenizer: &TextTokenizer,
        max_len: usize,
        protector: Option<&Protector>,
    ) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let id = DatasetId::of_bytes(&bytes);
        let text = String::from_utf8(bytes).map_err(|e| TrainError::Data {
            path: path.to_path_buf(),
            line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            message: "not valid UTF-8".into(),
        })?;
        let bad = |line: usize, message: String| TrainError::Data {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut records = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(line).map_err(|e| {
                bad(
                    number,
                    format!("not a JSON object with \"text\" or \"messages\": {e}"),
                )
            })?;
            let parsed = match (record.text, record.messages) {
                (Some(text), None) => Parsed::Text(text),
                (None, Some(messages)) => Parsed::Chat(messages),
                (Some(_), Some(_)) => {
                    return Err(bad(
                        number,
                        "has both \"text\" and \"messages\"; use one".into(),
                    ))
                }
                (None, None) => return Err(bad(number, "needs \"text\" or \"messages\"".into())),
            };
            records.push((number, parsed));
        }
        let protection = match protector {
            Some(protector) => {
                let mut slots: Vec<&mut String> =
                    records.iter_mut().flat_map(|(_, p)| p.texts()).collect();
                let mut texts: Vec<String> = slots.iter_mut().map(|t| std::mem::take(*t)).collect();
                let report = protector.apply(&mut texts)?;
                for (slot, text) in slots.into_iter().zip(texts) {
                    *slot = text;
                }
                Some(report)
            }
            None => None,
        };
        let mut examples = Vec::with_capacity(records.len());
        let mut truncated = 0;
        for (number, parsed) in records {
            let mut example = match parsed {
                Parsed::Text(text) => text_example(tokenizer, &text),
                Parsed::Chat(messages) => chat_example(tokenizer, &messages),
            }
            .map_err(|e| bad(number, e.to_string()))?;
            if example.tokens.len() > max_len {
                example.tokens.truncate(max_len);
                example.supervised.truncate(max_len);
                truncated += 1;
            }
            if example.target_count() == 0 {
                return Err(bad(
                    number,
                    "has no token to learn (empty text, or no assistant turn left after truncation)"
                        .into(),
                ));
            }
            examples.push(example);
        }
        if examples.is_empty() {
            return Err(bad(0, "no examples".into()));
        }
        Ok(Dataset {
            path: path.to_path_buf(),
            id,
            examples,
            truncated,
            protection,
        })
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
}

fn text_example(tokenizer: &TextTokenizer, text: &str) -> Result<Example> {
    let enc = tokenizer.encode(text, true)?;
    let supervised = vec![true; enc.ids.len()];
    Ok(Example {
        tokens: enc.ids,
        supervised,
    })
}

fn chat_example(tokenizer: &TextTokenizer, messages: &[Message]) -> Result<Example> {
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err(TrainError::Invalid(
            "a chat record needs at least one assistant message to learn from".into(),
        ));
    }
    for m in messages {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
            return Err(TrainError::Invalid(format!(
                "unknown role '{}'; use system, user, assistant or tool",
                m.role
            )));
        }
    }
    let (text, spans) = tokenizer.render_with_assistant_spans(messages)?;
    // The template writes any special tokens itself.
    let enc = tokenizer.encode(&text, false)?;
    let supervised = enc
        .offsets
        .iter()
        .map(|&(start, end)| spans.iter().any(|&(a, b)| start < b && end > a))
        .collect();
    Ok(Example {
        tokens: enc.ids,
        supervised,
    })
}

impl Batch {
    /// Right-pads `examples` to their longest length. Position `t` of
    /// example `i` predicts token `t + 1` with weight `1 / count_i` when
    /// that token is supervised, so each example's loss is its mean token
    /// loss.
    pub fn from_examples(examples: &[&Example], dtype: DType, device: &Device) -> Result<Batch> {
        let batch = examples.len();
        let seq = examples
            .iter()
            .map(|e| e.tokens.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut tokens = vec![0u32; batch * seq];
        let mut targets = vec![0u32; batch * seq];
        let mut weights = vec![0f64; batch * seq];
        for (i, e) in examples.iter().enumerate() {
            let count = e.target_count().max(1) as f64;
            for (t, &tok) in e.tokens.iter().enumerate() {
                tokens[i * seq + t] = tok;
                if t + 1 < e.tokens.len() {
                    targets[i * seq + t] = e.tokens[t + 1];
                    if e.supervised[t + 1] {
                        weights[i * seq + t] = 1.0 / count;
                    }
                }
            }
        }
        Ok(Batch {
            tokens: Tensor::from_vec(tokens, (batch, seq), device)?,
            targets: Tensor::from_vec(targets, batch * seq, device)?,
            weights: Tensor::from_vec(weights, batch * seq, device)?.to_dtype(dtype)?,
            batch,
            seq,
        })
    }
}
