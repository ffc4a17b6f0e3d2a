//! Tiny random-weight models, written to disk in both supported formats,
//! for tests and quick demonstrations. They exercise the same loading code
//! as real models: a Hugging Face directory (config, safetensors,
//! tokenizer.json, a ChatML chat template) and the same weights as a GGUF
//! file (q/k rows interleaved as llama.cpp stores them, tokenizer in the
//! metadata).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Result, TrainError};

/// ChatML, as SmolLM2 and Qwen2 use it.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Shape of a tiny model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub tied: bool,
    pub qkv_bias: bool,
    pub seed: u64,
    /// Rows of the embedding: at least the tokenizer's (see
    /// [`tiny_vocab_size`]); larger for benchmarks that need a realistic
    /// output layer.
    pub vocab: usize,
}

impl TinySpec {
    /// The 4-layer, 256-wide llama (4 heads of 64, 2 KV heads, SwiGLU 688,
    /// vocabulary 8192) that the Opacus anchor benchmark trains as `tiny`.
    pub fn benchmark() -> Self {
        TinySpec {
            hidden: 256,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            intermediate: 688,
            tied: true,
            qkv_bias: false,
            seed: 0,
            vocab: 8192,
        }
    }
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            hidden: 32,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 64,
            tied: true,
            qkv_bias: false,
            seed: 7,
            vocab: tiny_vocab_size(),
        }
    }
}

/// The byte-level alphabet, the specials, and a few merges.
fn tiny_vocab() -> (Vec<String>, Merges) {
    let mut alphabet: Vec<String> = ByteLevel::alphabet()
        .into_iter()
        .map(String::from)
        .collect();
    alphabet.sort();
    let merges = vec![
        ("t".to_string(), "h".to_string()),
        ("th".to_string(), "e".to_string()),
        ("Ġ".to_string(), "the".to_string()),
    ];
    let mut tokens = alphabet;
    tokens.extend(["th", "the", "Ġthe"].map(String::from));
    tokens.extend(SPECIALS.map(String::from));
    (tokens, merges)
}

/// Byte-level BPE merges, as pairs.
type Merges = Vec<(String, String)>;

fn tiny_tokenizer() -> Result<(Tokenizer, Vec<String>, Merges)> {
    let (tokens, merges) = tiny_vocab();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges.clone())
        .build()
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.add_special_tokens(&SPECIALS.map(|s| AddedToken::from(s, true)));
    Ok((tok, tokens, merges))
}

/// Vocabulary size of the tiny models (tokens rounded up to 16).
pub fn tiny_vocab_size() -> usize {
    tiny_vocab().0.len().div_ceil(16) * 16
}

/// Writes a Hugging Face model directory and returns its weights by name.
pub fn write_hf(dir: &Path, spec: &TinySpec) -> Result<HashMap<String, Tensor>> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let vocab = spec.vocab.max(tiny_vocab_size());
    let head_dim = spec.hidden / spec.heads;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": if spec.qkv_bias { "qwen2" } else { "llama" },
        "vocab_size": vocab,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 256,
        "tie_word_embeddings": spec.tied,
        "attention_bias": spec.qkv_bias,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "torch_dtype": "float32",
    });
    let write = |name: &str, text: String| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))
    };
    write("config.json", config.to_string())?;
    let weights = random_weights(spec, vocab)?;
    candle_core::safetensors::save(&weights, dir.join("model.safetensors"))?;
    let (tokenizer, _, _) = tiny_tokenizer()?;
    tokenizer
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let tokenizer_config = serde_json::json!({
        "chat_template": CHATML_TEMPLATE,
        "bos_token": null,
        "eos_token": "<|im_end|>",
    });
    write("tokenizer_config.json", tokenizer_config.to_string())?;
    Ok(weights)
}

fn random_weights(spec: &TinySpec, vocab: usize) -> Result<HashMap<String, Tensor>> {
    let mut rng = ChaCha20Rng::seed_from_u64(spec.seed);
    let dev = Device::Cpu;
    let mut normal = |shape: (usize, usize), std: f64| -> Result<Tensor> {
        let values: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| {
                // Box-Muller: test fixtures only.
                let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * std) as f32
            })
            .collect();
        Ok(Tensor::from_vec(values, shape, &dev)?)
    };
    let d = spec.hidden;
    let hd = d / spec.heads;
    let (q, kv) = (spec.heads * hd, spec.kv_heads * hd);
    let mut w = HashMap::new();
    w.insert("model.embed_tokens.weight".into(), normal((vocab, d), 0.5)?);
    for l in 0..spec.layers {
        let p = |m: &str| format!("model.layers.{l}.{m}");
        let std = 1.0 / (d as f64).sqrt();
        w.insert(p("self_attn.q_proj.weight"), normal((q, d), std)?);
        w.insert(p("self_attn.k_proj.weight"), normal((kv, d), std)?);
        w.insert(p("self_attn.v_proj.weight"), normal((kv, d), std)?);
        w.insert(p("self_attn.o_proj.weight"), normal((d, q), std)?);
        w.insert(
            p("mlp.gate_proj.weight"),
            normal((spec.intermediate, d), std)?,
        );
        w.insert(
            p("mlp.up_proj.weight"),
            normal((spec.intermediate, d), std)?,
        );
        w.insert(
            p("mlp.down_proj.weight"),
            normal(
                (d, spec.intermediate),
                1.0 / (spec.intermediate as f64).sqrt(),
            )?,
        );
        if spec.qkv_bias {
            w.insert(p("self_attn.q_proj.bias"), normal((1, q), 0.1)?.squeeze(0)?);
            w.insert(
                p("self_attn.k_proj.bias"),
                normal((1, kv), 0.1)?.squeeze(0)?,
            );
            w.insert(
                p("self_attn.v_proj.bias"),
                normal((1, kv), 0.1)?.squeeze(0)?,
            );
        }
        w.insert(
            p("input_layernorm.weight"),
            (normal((1, d), 0.1)? + 1.0)?.squeeze(0)?,
        );
        w.insert(
            p("post_attention_layernorm.weight"),
            (normal((1, d), 0.1)? + 1.0)?.squeeze(0)?,
        );
    }
    w.insert(
        "model.norm.weight".into(),
        (normal((1, d), 0.1)? + 1.0)?.squeeze(0)?,
    );
    if !spec.tied {
        w.insert("lm_head.weight".into(), normal((vocab, d), 0.5)?);
    }
    Ok(w)
}

/// Writes the same model as a GGUF file (float32 tensors, llama.cpp names
/// and q/k row order, byte-level BPE tokenizer and chat template in the
/// metadata).
pub fn write_gguf(path: &Path, spec: &TinySpec, weights: &HashMap<String, Tensor>) -> Result<()> {
    let vocab = spec.vocab.max(tiny_vocab_size());
    let (_, mut tokens, merges) = tiny_tokenizer()?;
    // Pad the vocabulary to the model's size, as converters do.
    while tokens.len() < vocab {
        tokens.push(format!("[PAD{}]", tokens.len()));
    }
    let arch = if spec.qkv_bias { "qwen2" } else { "llama" };
    let permute = |w: &Tensor, heads: usize| -> Result<Tensor> {
        let (rows, cols) = w.dims2()?;
        let hd = rows / heads;
        Ok(w.reshape((heads, 2, hd / 2, cols))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows, cols))?)
    };
    let mut qtensors: Vec<(String, QTensor)> = Vec::new();
    for (hf, t) in weights {
        let Some(name) = crate::model::gguf_name(hf) else {
            continue;
        };
        let t = if arch == "llama" && hf.ends_with("q_proj.weight") {
            permute(t, spec.heads)?
        } else if arch == "llama" && hf.ends_with("k_proj.weight") {
            permute(t, spec.kv_heads)?
        } else {
            t.clone()
        };
        qtensors.push((
            name,
            QTensor::quantize(
                &t.to_dtype(DType::F32)?,
                candle_core::quantized::GgmlDType::F32,
            )?,
        ));
    }
    qtensors.sort_by(|a, b| a.0.cmp(&b.0));
    use gguf_file::Value;
    let types: Vec<Value> = tokens
        .iter()
        .map(|t| Value::I32(if SPECIALS.contains(&t.as_str()) { 3 } else { 1 }))
        .collect();
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (
            format!("{arch}.block_count"),
            Value::U32(spec.layers as u32),
        ),
        (format!("{arch}.context_length"), Value::U32(256)),
        (
            format!("{arch}.embedding_length"),
            Value::U32(spec.hidden as u32),
        ),
        (
            format!("{arch}.feed_forward_length"),
            Value::U32(spec.intermediate as u32),
        ),
        (
            format!("{arch}.attention.head_count"),
            Value::U32(spec.heads as u32),
        ),
        (
            format!("{arch}.attention.head_count_kv"),
            Value::U32(spec.kv_heads as u32),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (format!("{arch}.rope.freq_base"), Value::F32(10000.0)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(
                merges
                    .iter()
                    .map(|(a, b)| Value::String(format!("{a} {b}")))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            Value::U32(tokens.iter().position(|t| t == "<|im_end|>").unwrap_or(0) as u32),
        ),
        (
            "tokenizer.chat_template".into(),
            Value::String(CHATML_TEMPLATE.into()),
        ),
    ];
    let mut file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs)?;
    Ok(())
}
