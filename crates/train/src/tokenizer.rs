//! Tokenizers: Hugging Face `tokenizer.json`, or a byte-level BPE rebuilt
//! from GGUF metadata; and the model's chat template, rendered with
//! minijinja, with the byte spans of the assistant turns so training can
//! put the loss on them alone.

use std::path::Path;

use candle_core::quantized::gguf_file;
use serde::Serialize;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Result, TrainError};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// Encoded text: token ids and each token's byte span in the text.
pub struct Encoded {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

impl TextTokenizer {
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = Tokenizer::from_file(&path)
            .map_err(|e| TrainError::model(&path, format!("cannot load tokenizer: {e}")))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| TrainError::model(&config_path, format!("not JSON: {e}")))?,
            Err(_) => serde_json::Value::Null,
        };
        // Special tokens are either plain strings or {"content": ...}.
        let token = |key: &str| -> Option<String> {
            let v = config.get(key)?;
            v.as_str()
                .map(String::from)
                .or_else(|| v.get("content").and_then(|c| c.as_str()).map(String::from))
        };
        Ok(TextTokenizer {
            inner,
            chat_template: config
                .get("chat_template")
                .and_then(|t| t.as_str())
                .map(String::from),
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
        })
    }

    /// Rebuilds a byte-level BPE tokenizer (`tokenizer.ggml.model = "gpt2"`,
    /// the SmolLM, Qwen2 and Llama 3 kind) from GGUF metadata: vocabulary,
    /// merges, and control tokens as special tokens.
    pub fn from_gguf(path: &Path, content: &gguf_file::Content) -> Result<Self> {
        let get = |key: &str| content.metadata.get(key);
        let bad = |m: String| TrainError::model(path, m);
        let model = get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if model != "gpt2" {
            return Err(bad(format!(
                "GGUF tokenizer model '{model}' cannot be rebuilt (only byte-level BPE, 'gpt2'); \
                 use the model's Hugging Face directory instead"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            get(key)
                .ok_or_else(|| bad(format!("GGUF lacks {key}")))?
                .to_vec()
                .map_err(|e| bad(format!("{key}: {e}")))?
                .iter()
                .map(|v| {
                    v.to_string()
                        .cloned()
                        .map_err(|e| bad(format!("{key}: {e}")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| bad(format!("malformed merge '{m}'")))
            })
            .collect::<Result<_>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| bad(format!("cannot build BPE: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::default()));
        let types: Vec<i64> = get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| {
                v.iter()
                    .map(|x| x.to_i32().map(i64::from).unwrap_or(1))
                    .collect()
            })
            .unwrap_or_default();
        // Token type 3 is "control": <|im_start|>, <|endoftext|>, ...
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter().chain(std::iter::repeat(&1)))
            .filter(|(_, ty)| **ty == 3)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(&specials);
        let id_token = |key: &str| -> Option<String> {
            let id = get(key)?.to_u32().ok()? as usize;
            tokens.get(id).cloned()
        };
        Ok(TextTokenizer {
            inner,
            chat_template: get("tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            bos_token: id_token("tokenizer.ggml.bos_token_id"),
            eos_token: id_token("tokenizer.ggml.eos_token_id"),
        })
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoded> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| TrainError::Tokenizer(e.to_string()))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_id(t))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Renders a conversation with the chat template.
    pub fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            TrainError::Template(
                "the model has no chat template; use {\"text\": ...} records".into(),
            )
        })?;
        let mut env = minijinja::Environment::new();
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_template("chat", template)
            .map_err(|e| TrainError::Template(e.to_string()))?;
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        };
        env.get_template("chat")
            .and_then(|t| t.render(context))
            .map_err(|e| TrainError::Template(e.to_string()))
    }

    /// The rendered conversation and the byte spans of its assistant turns
    /// (each turn's text through its end marker). Each span starts where
    /// the conversation before it, rendered with a generation prompt, ends,
    /// and stops where the conversation through it ends; the template must
    /// render conversations as prefixes of longer ones.
    pub fn render_with_assistant_spans(
        &self,
        messages: &[Message],
    ) -> Result<(String, Vec<(usize, usize)>)> {
        let full = self.render_chat(messages, false)?;
        let mut spans = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let before = self.render_chat(&messages[..i], true)?;
            let through = self.render_chat(&messages[..=i], false)?;
            if !full.starts_with(&before)
                || !full.starts_with(&through)
                || through.len() < before.len()
            {
                return Err(TrainError::Template(
                    "the chat template does not render conversations as prefixes of longer ones; \
                     cannot locate the assistant turns"
                        .into(),
                ));
            }
            spans.push((before.len(), through.len()));
        }
        Ok((full, spans))
    }
}
