//! `privacy.yaml` and `models.yaml`, in the shape the product documents,
//! validated on load. Settings that belong to features `pft train` does not
//! run (federated training, secure compute, monitoring, quantization) are accepted and reported as not applied, so
//! nothing is silently ignored.

use std::path::{Path, PathBuf};

use pft_accountant::Method;
use serde::Deserialize;

use crate::error::{Result, TrainError};
use crate::lora::{LoraConfig, Target};
use crate::model::Precision;
use crate::protection::ContextProtection;

#[derive(Debug, Deserialize)]
struct PrivacyFile {
    privacy: PrivacySection,
    context_protection: Option<crate::protection::ProtectionSection>,
    #[serde(flatten)]
    other: serde_norway::Mapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivacySection {
    epsilon: Option<f64>,
    delta: Option<f64>,
    target_delta: Option<f64>,
    max_grad_norm: f64,
    noise_multiplier: Option<f64>,
    accounting_mode: Option<String>,
    federated: Option<serde_norway::Value>,
    secure_compute: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
struct ModelsFile {
    models: ModelsSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsSection {
    base_model: String,
    training: TrainingSection,
    quantization: Option<serde_norway::Value>,
    adapters: AdapterSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingSection {
    batch_size: usize,
    #[serde(default = "one")]
    gradient_accumulation_steps: usize,
    learning_rate: f64,
    #[serde(default)]
    warmup_steps: u64,
    max_steps: u64,
    #[serde(default)]
    weight_decay: f64,
    #[serde(default = "default_max_seq_len")]
    max_seq_len: usize,
    micro_batch_size: Option<usize>,
    #[serde(default = "default_checkpoint_every")]
    checkpoint_every: u64,
    precision: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdapterSection {
    #[serde(rename = "type")]
    kind: String,
    r: usize,
    alpha: f64,
    #[serde(default)]
    dropout: f64,
    target_modules: Option<Vec<String>>,
}

fn one() -> usize {
    1
}

fn default_max_seq_len() -> usize {
    512
}

fn default_checkpoint_every() -> u64 {
    20
}

/// The training plan from the two files.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub base_model: String,
    pub target_epsilon: Option<f64>,
    pub delta: f64,
    pub clip_norm: f64,
    pub noise_multiplier: Option<f64>,
    pub accountant: Method,
    /// Expected examples per logical step (batch_size x accumulation).
    pub expected_batch: usize,
    /// Examples per forward/backward pass.
    pub micro_batch: usize,
    pub learning_rate: f64,
    pub warmup_steps: u64,
    pub max_steps: u64,
    pub weight_decay: f64,
    pub max_seq_len: usize,
    pub checkpoint_every: u64,
    /// How the frozen base weights are multiplied.
    pub precision: Precision,
    pub lora: LoraConfig,
    /// Scan and protect the dataset's text before tokenization.
    pub context_protection: Option<ContextProtection>,
    /// Settings read but not applied by `pft train`, by YAML path.
    pub not_applied: Vec<String>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))
}

fn config_error(file: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Config {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

impl TrainConfig {
    /// Reads `privacy.yaml` and `models.yaml` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let privacy_path = dir.join("privacy.yaml");
        let models_path = dir.join("models.yaml");
        let privacy: PrivacyFile = serde_norway::from_str(&read(&privacy_path)?)
            .map_err(|e| config_error(&privacy_path, e.to_string()))?;
        let models: ModelsFile = serde_norway::from_str(&read(&models_path)?)
            .map_err(|e| config_error(&models_path, e.to_string()))?;
        let p = privacy.privacy;
        let bad_p = |m: String| config_error(&privacy_path, m);
        let delta = match (p.delta, p.target_delta) {
            (Some(a), Some(b)) if a != b => {
                return Err(bad_p(format!(
                    "privacy.delta ({a}) and privacy.target_delta ({b}) disagree; keep one"
                )))
            }
            (Some(d), _) | (None, Some(d)) => d,
            (None, None) => return Err(bad_p("privacy.delta is required".into())),
        };
        if !(delta > 0.0 && delta < 1.0) {
            return Err(bad_p(format!("privacy.delta = {delta} must be in (0, 1)")));
        }
        if let Some(e) = p.epsilon {
            if !(0.01..=100.0).contains(&e) {
                return Err(bad_p(format!(
                    "privacy.epsilon = {e} must be in [0.01, 100]"
                )));
            }
        }
        if !(p.max_grad_norm.is_finite() && p.max_grad_norm > 0.0) {
            return Err(bad_p(format!(
                "privacy.max_grad_norm = {} must be positive",
                p.max_grad_norm
            )));
        }
        if let Some(s) = p.noise_multiplier {
            if !(s.is_finite() && s > 0.0) {
                return Err(bad_p(format!(
                    "privacy.noise_multiplier = {s} must be positive"
                )));
            }
        }
        if p.epsilon.is_none() && p.noise_multiplier.is_none() {
            return Err(bad_p(
                "set privacy.epsilon (the noise is calibrated to it) or privacy.noise_multiplier"
                    .into(),
            ));
        }
        let accountant = match p.accounting_mode.as_deref() {
            None => Method::Pld,
            Some(m) => m
                .parse::<Method>()
                .map_err(|e| bad_p(format!("privacy.accounting_mode: {e}")))?,
        };
        if accountant == Method::Gdp {
            return Err(bad_p(
                "privacy.accounting_mode gdp is a CLT approximation that can under-report; \
                 training enforces its budget with pld or rdp"
                    .into(),
            ));
        }
        let context_protection = privacy
            .context_protection
            .map(ContextProtection::from_section)
            .transpose()
            .map_err(bad_p)?;
        let mut not_applied = Vec::new();
        if p.federated.is_some() {
            not_applied.push("privacy.federated".to_string());
        }
        if p.secure_compute.is_some() {
            not_applied.push("privacy.secure_compute".to_string());
        }
        for key in privacy.other.keys() {
            if let Some(k) = key.as_str() {
                not_applied.push(k.to_string());
            }
        }

        let m = models.models;
        let bad_m = |msg: String| config_error(&models_path, msg);
        if m.quantization.is_some() {
            not_applied.push("models.quantization".to_string());
        }
        let t = m.training;
        if t.batch_size == 0 || t.gradient_accumulation_steps == 0 {
            return Err(bad_m(
                "training.batch_size and gradient_accumulation_steps must be at least 1".into(),
            ));
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return Err(bad_m(format!(
                "training.learning_rate = {} must be positive",
                t.learning_rate
            )));
        }
        if t.max_steps == 0 {
            return Err(bad_m("training.max_steps must be at least 1".into()));
        }
        if t.max_seq_len < 2 {
            return Err(bad_m("training.max_seq_len must be at least 2".into()));
        }
        if !(0.0..1.0).contains(&t.weight_decay) {
            return Err(bad_m(format!(
                "training.weight_decay = {} must be in [0, 1)",
                t.weight_decay
            )));
        }
        let precision = match t.precision.as_deref() {
            None => Precision::F32,
            Some(name) => Precision::parse(name).ok_or_else(|| {
                bad_m(format!(
                    "training.precision '{name}' is not one of f32, bf16, auto"
                ))
            })?,
        };
        let a = m.adapters;
        if !a.kind.eq_ignore_ascii_case("lora") {
            return Err(bad_m(format!(
                "adapters.type '{}' is not supported; use lora",
                a.kind
            )));
        }
        let targets = match &a.target_modules {
            None => vec![Target::Q, Target::V],
            Some(names) => names
                .iter()
                .map(|n| {
                    Target::parse(n).ok_or_else(|| {
                        bad_m(format!(
                            "adapters.target_modules: '{n}' is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        let lora = LoraConfig {
            rank: a.r,
            alpha: a.alpha,
            dropout: a.dropout,
            targets,
        };
        lora.validate()
            .map_err(|e| bad_m(format!("adapters: {e}")))?;
        Ok(TrainConfig {
            base_model: m.base_model,
            target_epsilon: p.epsilon,
            delta,
            clip_norm: p.max_grad_norm,
            noise_multiplier: p.noise_multiplier,
            accountant,
            expected_batch: t.batch_size * t.gradient_accumulation_steps,
            micro_batch: t.micro_batch_size.unwrap_or(t.batch_size),
            learning_rate: t.learning_rate,
            warmup_steps: t.warmup_steps,
            max_steps: t.max_steps,
            weight_decay: t.weight_decay,
            max_seq_len: t.max_seq_len,
            checkpoint_every: t.checkpoint_every.max(1),
            precision,
            lora,
            context_protection,
            not_applied,
        })
    }
}

/// Where `base_model` points: a local path, or the name of a bundled model.
pub fn resolve_base_model(name: &str, config_dir: &Path) -> BaseModel {
    if let Some(bundled) = crate::fetch::Bundled::by_name(name) {
        return BaseModel::Bundled(bundled);
    }
    // A relative path is taken from the working directory, else from the
    // configuration's directory.
    let path = PathBuf::from(name);
    if path.is_relative() && !path.exists() && config_dir.join(&path).exists() {
        return BaseModel::Path(config_dir.join(path));
    }
    BaseModel::Path(path)
}

pub enum BaseModel {
    Path(PathBuf),
    Bundled(crate::fetch::Bundled),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_loads_and_protects_the_demo_data() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let config = TrainConfig::load(&dir).unwrap();
        assert_eq!(config.target_epsilon, Some(8.0));
        assert!(config.not_applied.is_empty(), "{:?}", config.not_applied);
        let protection = config.context_protection.expect("the demo is protected");
        assert!(protection.entity_model);
        assert_eq!(protection.rules.len(), 1);
        assert_eq!(
            protection.rules[0].kind,
            crate::protection::StrategyKind::PiiRemoval
        );
        assert_eq!(protection.rules[0].labels, None);
    }
}
