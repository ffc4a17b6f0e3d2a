//! Architecture hyper-parameters, from a Hugging Face `config.json` or a
//! GGUF file's metadata.

use std::path::Path;

use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The decoder families [`super::llama::Llama`] implements. They share one
/// block structure (pre-norm RMSNorm, rotary attention with grouped KV
/// heads, SwiGLU MLP) and differ in details the config carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama 2/3 layout; also SmolLM and TinyLlama.
    Llama,
    /// Mistral: the llama block; sliding-window attention beyond the window.
    Mistral,
    /// Qwen2: the llama block with biases on the q, k and v projections.
    Qwen2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    /// Biases on q, k and v (Qwen2).
    pub qkv_bias: bool,
    pub max_position_embeddings: usize,
    /// Attention window (Mistral); sequences longer than it are refused.
    pub sliding_window: Option<usize>,
}

/// The subset of a Hugging Face `config.json` the decoder needs.
#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    max_position_embeddings: Option<usize>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

impl ModelConfig {
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let hf: HfConfig = serde_json::from_str(&text)
            .map_err(|e| TrainError::model(path, format!("not a model config: {e}")))?;
        let bad = |message: String| Err(TrainError::model(path, message));
        let family = match hf.model_type.as_str() {
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            other => {
                return bad(format!(
                    "model type '{other}' is not supported; supported: llama (and SmolLM), mistral, qwen2"
                ))
            }
        };
        if let Some(act) = &hf.hidden_act {
            if act != "silu" {
                return bad(format!("hidden_act '{act}' is not supported; only silu"));
            }
        }
        if hf.mlp_bias {
            return bad("mlp_bias is not supported".into());
        }
        let scaled = hf.rope_scaling.as_ref().is_some_and(|v| !v.is_null())
            || hf
                .rope_parameters
                .as_ref()
                .and_then(|r| r.rope_type.as_deref())
                .is_some_and(|t| t != "default");
        if scaled {
            return bad("rope scaling is not supported; only the default rotary embedding".into());
        }
        let rope_theta = hf
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .or(hf.rope_theta)
            .unwrap_or(10_000.0);
        let head_dim = hf
            .head_dim
            .unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1));
        let qkv_bias = match family {
            Family::Qwen2 => true,
            _ => hf.attention_bias.unwrap_or(false),
        };
        let sliding_window = match family {
            Family::Mistral => hf.sliding_window,
            Family::Qwen2 if hf.use_sliding_window == Some(true) => hf.sliding_window,
            _ => None,
        };
        let config = ModelConfig {
            family,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta,
            tie_word_embeddings: hf.tie_word_embeddings,
            qkv_bias,
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(2048),
            sliding_window,
        };
        config.validate().map_err(|m| TrainError::model(path, m))?;
        Ok(config)
    }

    /// From GGUF metadata (`llama.*` keys; Qwen2 and Mistral GGUFs use their
    /// own prefixes). Tied embeddings are decided by the caller, from
    /// whether an `output.weight` tensor exists.
    pub fn from_gguf(path: &Path, content: &gguf_file::Content, tied: bool) -> Result<Self> {
        let get = |key: &str| content.metadata.get(key);
        let arch = get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| TrainError::model(path, "GGUF has no general.architecture"))?;
        let family = match arch.as_str() {
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            other => {
                return Err(TrainError::model(
                    path,
                    format!("GGUF architecture '{other}' is not supported; supported: llama, mistral, qwen2"),
                ))
            }
        };
        let int = |key: &str| -> Result<usize> {
            get(&format!("{arch}.{key}"))
                .ok_or_else(|| TrainError::model(path, format!("GGUF lacks {arch}.{key}")))?
                .to_u32()
                .map(|v| v as usize)
                .map_err(|e| TrainError::model(path, format!("{arch}.{key}: {e}")))
        };
        // GGUF stores these as f32; read back the decimal they were written
        // from (1e-5, not 9.99999974e-6) via f32's shortest representation.
        let float = |key: &str, default: f64| -> f64 {
            get(&format!("{arch}.{key}"))
                .and_then(|v| v.to_f32().ok())
                .and_then(|v| v.to_string().parse::<f64>().ok())
                .unwrap_or(default)
        };
        let hidden_size = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let vocab_size = match int("vocab_size") {
            Ok(v) => v,
            Err(_) => get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(|v| v.len())
                .ok_or_else(|| {
                    TrainError::model(path, "GGUF has neither a vocab size nor tokens")
                })?,
        };
        let config = ModelConfig {
            family,
            vocab_size,
            hidden_size,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: int("attention.head_count_kv").unwrap_or(heads),
            head_dim: int("rope.dimension_count").unwrap_or(hidden_size / heads.max(1)),
            rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta: float("rope.freq_base", 10_000.0),
            tie_word_embeddings: tied,
            qkv_bias: family == Family::Qwen2,
            max_position_embeddings: int("context_length").unwrap_or(2048),
            sliding_window: None,
        };
        config.validate().map_err(|m| TrainError::model(path, m))?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.num_attention_heads == 0
            || self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "{} attention heads cannot share {} key/value heads",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(format!("head dimension {} must be even", self.head_dim));
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return Err("vocabulary, hidden size and layer count must be positive".into());
        }
        Ok(())
    }

    pub fn q_size(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    pub fn kv_size(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Parameters of the frozen base (for reports).
    pub fn parameter_count(&self) -> usize {
        let d = self.hidden_size;
        let per_layer = d * (self.q_size() + 2 * self.kv_size())
            + self.q_size() * d
            + 3 * d * self.intermediate_size
            + 2 * d;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + self.num_hidden_layers * per_layer + d + head
    }
}
