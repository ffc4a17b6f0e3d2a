//! Loading llama-family models from a Hugging Face directory
//! (`config.json`, `model.safetensors` or shards, `tokenizer.json`) or a
//! GGUF file (weights dequantized at load, tokenizer rebuilt from the
//! metadata).

mod config;
pub mod llama;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

pub use config::{Family, ModelConfig};
pub use llama::{Batch, Block, Gradients, Linear, Llama, LoraGrads, Tape};

use crate::error::{Result, TrainError};
use crate::kernels::Frozen;
use crate::tokenizer::TextTokenizer;

/// How the frozen base weights are stored and multiplied. LoRA factors,
/// activations, gradients, norms, softmax and the optimizer are f32 (or the
/// model's dtype) whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The model's dtype throughout.
    F32,
    /// Base weights in bfloat16, products with bf16 inputs and f32
    /// accumulation (about 2x the f32 speed; needs AVX512-BF16).
    Bf16,
    /// `bf16` where the CPU supports it, else `f32`.
    Auto,
}

impl Precision {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Some(Precision::F32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            "auto" => Some(Precision::Auto),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Auto => "auto",
        }
    }

    /// What this machine will run: never `Auto`.
    pub fn resolve(self) -> Precision {
        match self {
            Precision::Auto if crate::kernels::bf16::supported() => Precision::Bf16,
            Precision::Auto => Precision::F32,
            other => other,
        }
    }
}

/// A model ready to train: the decoder, its tokenizer, and where it came
/// from.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: TextTokenizer,
    /// SHA-256 over the weight files (and config), for reports.
    pub weights_hash: String,
    pub source: PathBuf,
}

/// Loads the model at `path`: a `.gguf` file, a directory holding one, or a
/// Hugging Face model directory.
pub fn load(path: &Path, dtype: DType, device: &Device, max_len: usize) -> Result<LoadedModel> {
    if path.is_file() {
        return load_gguf(path, dtype, device, max_len);
    }
    if path.join("config.json").is_file() {
        return load_hf(path, dtype, device, max_len);
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| TrainError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => load_gguf(one, dtype, device, max_len),
        [] => Err(TrainError::model(
            path,
            "no config.json and no .gguf file: not a model directory",
        )),
        _ => Err(TrainError::model(
            path,
            "several .gguf files; name the one to use",
        )),
    }
}

fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for path in files {
        let mut f = File::open(path).map_err(|e| TrainError::io(path, e))?;
        loop {
            let n = f.read(&mut buffer).map_err(|e| TrainError::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn load_hf(dir: &Path, dtype: DType, device: &Device, max_len: usize) -> Result<LoadedModel> {
    let config = ModelConfig::from_hf_json(&dir.join("config.json"))?;
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| TrainError::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| TrainError::model(&index, format!("not JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| TrainError::model(&index, "no weight_map"))?;
        let mut names: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| dir.join(n)).collect()
    } else {
        vec![dir.join("model.safetensors")]
    };
    for f in &files {
        if !f.is_file() {
            return Err(TrainError::model(
                dir,
                format!("missing weight file {}", f.display()),
            ));
        }
    }
    // Safety: the files are mapped read-only and not modified while loaded;
    // every tensor is copied out before the mapping is dropped.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
        .map_err(|e| TrainError::model(dir, format!("cannot map weights: {e}")))?;
    let fetch = |name: &str| -> Result<Tensor> {
        st.load(name, &Device::Cpu)
            .map_err(|_| TrainError::model(dir, format!("weights lack tensor {name}")))?
            .to_dtype(dtype)?
            .to_device(device)
            .map_err(TrainError::from)
    };
    let model = assemble(
        &config,
        dtype,
        device,
        max_len,
        |name| fetch(name),
        |name| st.get(name).is_ok(),
    )?;
    let tokenizer = TextTokenizer::from_hf_dir(dir)?;
    let mut hashed = vec![dir.join("config.json")];
    hashed.extend(files);
    Ok(LoadedModel {
        model,
        tokenizer,
        weights_hash: hash_files(&hashed)?,
        source: dir.to_path_buf(),
    })
}

/// Hugging Face tensor name -> GGUF tensor name (llama.cpp convention).
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, module) = rest.split_once('.')?;
    let mapped = match module {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{mapped}"))
}

/// llama.cpp's converter interleaves each head's rows of the q and k
/// projections for its rotary kernel (row `2j + s` holds the Hugging Face
/// row `s * hd/2 + j`); undo it so the "rotate half" convention applies.
fn unpermute_rotary(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let hd = rows / heads;
    Ok(w.reshape((heads, hd / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

fn load_gguf(path: &Path, dtype: DType, device: &Device, max_len: usize) -> Result<LoadedModel> {
    let mut file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| TrainError::model(path, format!("not a GGUF file: {e}")))?;
    let tied = !content.tensor_infos.contains_key("output.weight");
    let config = ModelConfig::from_gguf(path, &content, tied)?;
    let family_rotary_permuted = matches!(config.family, Family::Llama | Family::Mistral);
    let mut cache: HashMap<String, Tensor> = HashMap::new();
    let mut fetch = |hf: &str| -> Result<Tensor> {
        let name = gguf_name(hf)
            .ok_or_else(|| TrainError::model(path, format!("no GGUF name for {hf}")))?;
        if let Some(t) = cache.get(&name) {
            return Ok(t.clone());
        }
        let q = content
            .tensor(&mut file, &name, &Device::Cpu)
            .map_err(|_| TrainError::model(path, format!("GGUF lacks tensor {name}")))?;
        let mut t = q.dequantize(&Device::Cpu)?;
        if family_rotary_permuted {
            if hf.ends_with("q_proj.weight") {
                t = unpermute_rotary(&t, config.num_attention_heads)?;
            } else if hf.ends_with("k_proj.weight") {
                t = unpermute_rotary(&t, config.num_key_value_heads)?;
            }
        }
        let t = t.to_dtype(dtype)?.to_device(device)?;
        cache.insert(name, t.clone());
        Ok(t)
    };
    let infos: Vec<String> = content.tensor_infos.keys().cloned().collect();
    let has = |hf: &str| gguf_name(hf).is_some_and(|g| infos.contains(&g));
    let model = assemble(&config, dtype, device, max_len, &mut fetch, has)?;
    let tokenizer = TextTokenizer::from_gguf(path, &content)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        weights_hash: hash_files(&[path.to_path_buf()])?,
        source: path.to_path_buf(),
    })
}

/// Builds the decoder from named tensors (Hugging Face names).
fn assemble(
    config: &ModelConfig,
    _dtype: DType,
    _device: &Device,
    max_len: usize,
    mut fetch: impl FnMut(&str) -> Result<Tensor>,
    has: impl Fn(&str) -> bool,
) -> Result<Llama> {
    let embed = fetch("model.embed_tokens.weight")?;
    let mut blocks = Vec::with_capacity(config.num_hidden_layers);
    for l in 0..config.num_hidden_layers {
        let p = |m: &str| format!("model.layers.{l}.{m}");
        let mut linear = |m: &str, bias: bool| -> Result<Linear> {
            Ok(Linear {
                weight: Frozen::Dense(fetch(&p(&format!("{m}.weight")))?),
                bias: if bias {
                    Some(fetch(&p(&format!("{m}.bias")))?)
                } else {
                    None
                },
            })
        };
        let qkv_bias = config.qkv_bias;
        let q = linear("self_attn.q_proj", qkv_bias)?;
        let k = linear("self_attn.k_proj", qkv_bias)?;
        let v = linear("self_attn.v_proj", qkv_bias)?;
        let o = linear("self_attn.o_proj", false)?;
        let gate = linear("mlp.gate_proj", false)?;
        let up = linear("mlp.up_proj", false)?;
        let down = linear("mlp.down_proj", false)?;
        blocks.push(Block {
            attn_norm: fetch(&p("input_layernorm.weight"))?,
            q,
            k,
            v,
            o,
            mlp_norm: fetch(&p("post_attention_layernorm.weight"))?,
            gate,
            up,
            down,
        });
    }
    let final_norm = fetch("model.norm.weight")?;
    let lm_head = if config.tie_word_embeddings || !has("lm_head.weight") {
        None
    } else {
        Some(fetch("lm_head.weight")?)
    };
    let mut config = config.clone();
    config.tie_word_embeddings = lm_head.is_none();
    check_shapes(&config, &embed, &blocks)?;
    Llama::new(config, embed, blocks, final_norm, lm_head, max_len)
}

fn check_shapes(config: &ModelConfig, embed: &Tensor, blocks: &[Block]) -> Result<()> {
    let d = config.hidden_size;
    let expect = |what: &str, got: &[usize], want: &[usize]| -> Result<()> {
        if got != want {
            return Err(TrainError::Invalid(format!(
                "{what} has shape {got:?}, the config implies {want:?}"
            )));
        }
        Ok(())
    };
    expect("embedding", embed.dims(), &[config.vocab_size, d])?;
    for (l, b) in blocks.iter().enumerate() {
        expect(
            &format!("layer {l} q_proj"),
            &b.q.weight.dims(),
            &[config.q_size(), d],
        )?;
        expect(
            &format!("layer {l} k_proj"),
            &b.k.weight.dims(),
            &[config.kv_size(), d],
        )?;
        expect(
            &format!("layer {l} v_proj"),
            &b.v.weight.dims(),
            &[config.kv_size(), d],
        )?;
        expect(
            &format!("layer {l} o_proj"),
            &b.o.weight.dims(),
            &[d, config.q_size()],
        )?;
        expect(
            &format!("layer {l} gate_proj"),
            &b.gate.weight.dims(),
            &[config.intermediate_size, d],
        )?;
        expect(
            &format!("layer {l} down_proj"),
            &b.down.weight.dims(),
            &[d, config.intermediate_size],
        )?;
    }
    Ok(())
}
