//! LoRA adapters (Hu et al. 2021): each adapted projection `W` becomes
//! `W x + (alpha / r) B A dropout(x)`, with `A` (r x in) and `B` (out x r)
//! the only trainable parameters. Initialised as PEFT does (`A` Kaiming
//! uniform, `B` zero, so training starts from the base model) and saved in
//! PEFT's format so `peft` loads them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::model::ModelConfig;

/// The projections of a llama block, in PEFT's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    #[serde(rename = "q_proj")]
    Q,
    #[serde(rename = "k_proj")]
    K,
    #[serde(rename = "v_proj")]
    V,
    #[serde(rename = "o_proj")]
    O,
    #[serde(rename = "gate_proj")]
    Gate,
    #[serde(rename = "up_proj")]
    Up,
    #[serde(rename = "down_proj")]
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The module path under a layer, as in Hugging Face checkpoints.
    pub fn module(self) -> &'static str {
        match self {
            Target::Q => "self_attn.q_proj",
            Target::K => "self_attn.k_proj",
            Target::V => "self_attn.v_proj",
            Target::O => "self_attn.o_proj",
            Target::Gate => "mlp.gate_proj",
            Target::Up => "mlp.up_proj",
            Target::Down => "mlp.down_proj",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// (in, out) features of this projection.
    pub fn shape(self, cfg: &ModelConfig) -> (usize, usize) {
        let d = cfg.hidden_size;
        match self {
            Target::Q => (d, cfg.q_size()),
            Target::K | Target::V => (d, cfg.kv_size()),
            Target::O => (cfg.q_size(), d),
            Target::Gate | Target::Up => (d, cfg.intermediate_size),
            Target::Down => (cfg.intermediate_size, d),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<Target>,
}

impl LoraConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.rank == 0 {
            return Err("LoRA rank r must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("LoRA alpha must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "LoRA dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.targets.is_empty() {
            return Err("LoRA needs at least one target module".into());
        }
        Ok(())
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// One adapted projection's factors.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// (r, in)
    pub a: Tensor,
    /// (out, r)
    pub b: Tensor,
}

/// All adapters of a model: `layers[l][t]` for layer `l` and target index
/// `t` (position in [`Target::ALL`]).
#[derive(Debug, Clone)]
pub struct Lora {
    pub config: LoraConfig,
    pub layers: Vec<[Option<LoraPair>; 7]>,
}

fn slot(target: Target) -> usize {
    Target::ALL
        .iter()
        .position(|t| *t == target)
        .expect("every target is in ALL")
}

impl Lora {
    /// PEFT's initialisation: `A ~ U(-1/sqrt(in), 1/sqrt(in))` (Kaiming
    /// uniform with a = sqrt 5), `B = 0`.
    pub fn init(
        config: &LoraConfig,
        model: &ModelConfig,
        dtype: DType,
        device: &Device,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        config.validate().map_err(TrainError::Invalid)?;
        let mut layers = Vec::with_capacity(model.num_hidden_layers);
        for _ in 0..model.num_hidden_layers {
            let mut pairs: [Option<LoraPair>; 7] = Default::default();
            for &target in &config.targets {
                let (fan_in, fan_out) = target.shape(model);
                let bound = 1.0 / (fan_in as f64).sqrt();
                let values: Vec<f64> = (0..config.rank * fan_in)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let a = Tensor::from_vec(values, (config.rank, fan_in), device)?.to_dtype(dtype)?;
                let b = Tensor::zeros((fan_out, config.rank), dtype, device)?;
                pairs[slot(target)] = Some(LoraPair { a, b });
            }
            layers.push(pairs);
        }
        Ok(Lora {
            config: config.clone(),
            layers,
        })
    }

    pub fn get(&self, layer: usize, target: Target) -> Option<&LoraPair> {
        self.layers[layer][slot(target)].as_ref()
    }

    pub fn scale(&self) -> f64 {
        self.config.scale()
    }

    /// Every trainable tensor with a stable name, A before B, layer by
    /// layer: the order optimizers, checkpoints and noise use.
    pub fn parameters(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (l, pairs) in self.layers.iter().enumerate() {
            for target in Target::ALL {
                if let Some(p) = &pairs[slot(target)] {
                    out.push((peft_name(l, target, "A"), &p.a));
                    out.push((peft_name(l, target, "B"), &p.b));
                }
            }
        }
        out
    }

    /// The trainable tensors in [`Lora::parameters`]' order, as handles the
    /// optimizer takes (a tensor clone shares its storage).
    pub fn tensors(&self) -> Vec<Tensor> {
        self.parameters()
            .into_iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Replaces the factors, in [`Lora::parameters`] order.
    pub fn set_parameters(&mut self, values: Vec<Tensor>) -> Result<()> {
        let mut values = values.into_iter();
        for pairs in self.layers.iter_mut() {
            for target in Target::ALL {
                if let Some(p) = &mut pairs[slot(target)] {
                    let (a, b) = (values.next(), values.next());
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            check_same_shape(&p.a, &a)?;
                            check_same_shape(&p.b, &b)?;
                            p.a = a;
                            p.b = b;
                        }
                        _ => return Err(TrainError::Invalid("too few LoRA tensors".into())),
                    }
                }
            }
        }
        if values.next().is_some() {
            return Err(TrainError::Invalid("too many LoRA tensors".into()));
        }
        Ok(())
    }

    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// Saves `adapter_model.safetensors` and `adapter_config.json` in PEFT's
    /// layout: tensors `base_model.model.model.layers.{l}.{module}.lora_A.weight`
    /// (r x in) and `...lora_B.weight` (out x r), in float32.
    pub fn save_peft(&self, dir: &Path, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (name, tensor) in self.parameters() {
            let values: Vec<f32> = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((name, bytes, tensor.dims().to_vec()));
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(name, bytes, shape)| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytes,
                )
                .map_err(|e| TrainError::Invalid(format!("adapter tensor {name}: {e}")))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<_>>()?;
        let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        let path = dir.join("adapter_model.safetensors");
        safetensors::serialize_to_file(views, Some(metadata), &path)
            .map_err(|e| TrainError::Invalid(format!("writing {}: {e}", path.display())))?;
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.config.rank,
            "lora_alpha": self.config.alpha,
            "lora_dropout": self.config.dropout,
            "target_modules": self.config.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "use_rslora": false,
            "use_dora": false,
        });
        let path = dir.join("adapter_config.json");
        let text = serde_json::to_string_pretty(&config)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))
    }

    /// Loads an adapter saved by [`Lora::save_peft`] (or by PEFT with the
    /// same options) for `model`.
    pub fn load_peft(
        dir: &Path,
        model: &ModelConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| TrainError::model(&config_path, format!("not JSON: {e}")))?;
        let field = |name: &str| {
            json.get(name)
                .ok_or_else(|| TrainError::model(&config_path, format!("missing '{name}'")))
        };
        let targets = field("target_modules")?
            .as_array()
            .ok_or_else(|| TrainError::model(&config_path, "target_modules must be a list"))?
            .iter()
            .map(|v| {
                v.as_str().and_then(Target::parse).ok_or_else(|| {
                    TrainError::model(&config_path, format!("unsupported target module {v}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let config = LoraConfig {
            rank: field("r")?.as_u64().unwrap_or(0) as usize,
            alpha: field("lora_alpha")?.as_f64().unwrap_or(0.0),
            dropout: json
                .get("lora_dropout")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0),
            targets,
        };
        config
            .validate()
            .map_err(|m| TrainError::model(&config_path, m))?;
        let weights_path = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, device)
            .map_err(|e| TrainError::model(&weights_path, e.to_string()))?;
        let mut layers = Vec::with_capacity(model.num_hidden_layers);
        for l in 0..model.num_hidden_layers {
            let mut pairs: [Option<LoraPair>; 7] = Default::default();
            for &target in &config.targets {
                let fetch = |which: &str| -> Result<Tensor> {
                    let name = peft_name(l, target, which);
                    let t = tensors.get(&name).ok_or_else(|| {
                        TrainError::model(&weights_path, format!("missing tensor {name}"))
                    })?;
                    Ok(t.to_dtype(dtype)?)
                };
                let (a, b) = (fetch("A")?, fetch("B")?);
                let (fan_in, fan_out) = target.shape(model);
                if a.dims() != [config.rank, fan_in] || b.dims() != [fan_out, config.rank] {
                    return Err(TrainError::model(
                        &weights_path,
                        format!(
                            "layer {l} {}: shapes {:?} and {:?} do not fit the model",
                            target.name(),
                            a.dims(),
                            b.dims()
                        ),
                    ));
                }
                pairs[slot(target)] = Some(LoraPair { a, b });
            }
            layers.push(pairs);
        }
        Ok(Lora { config, layers })
    }
}

fn check_same_shape(old: &Tensor, new: &Tensor) -> Result<()> {
    if old.dims() != new.dims() {
        return Err(TrainError::Invalid(format!(
            "LoRA tensor shape {:?} does not match {:?}",
            new.dims(),
            old.dims()
        )));
    }
    Ok(())
}

/// PEFT's tensor name for a factor (`which` is "A" or "B").
pub fn peft_name(layer: usize, target: Target, which: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.lora_{which}.weight",
        target.module()
    )
}
