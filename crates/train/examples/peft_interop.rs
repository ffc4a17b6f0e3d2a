//! Writes what `tests/peft_interop/run.sh` compares against Python `peft`:
//! tiny llama models in the Hugging Face layout, an adapter trained on each
//! by `trainer::run` (LoRA on every projection), and this engine's logits
//! for a fixed input with and without the adapter.
//!
//! Usage: cargo run --release -p pft-train --example peft_interop -- OUT_DIR

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use pft_train::config::TrainConfig;
use pft_train::fixtures::{self, TinySpec};
use pft_train::lora::Lora;
use pft_train::model;
use pft_train::trainer::{self, Outcome, Progress, RunOptions, StepLog};

struct Quiet;

impl Progress for Quiet {
    fn message(&mut self, _: &str) {}
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: &StepLog) {}
}

fn write(path: &Path, text: String) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn case(
    root: &Path,
    name: &str,
    spec: &TinySpec,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let dir = root.join(name);
    let model_dir = dir.join("model");
    fixtures::write_hf(&model_dir, spec)?;
    write(
        &dir.join("privacy.yaml"),
        "privacy:\n  delta: 1e-5\n  max_grad_norm: 1.0\n  noise_multiplier: 0.5\n".into(),
    )?;
    write(
        &dir.join("models.yaml"),
        format!(
            "models:\n  base_model: \"{}\"\n  training:\n    batch_size: 8\n    learning_rate: 0.05\n    max_steps: 15\n    max_seq_len: 32\n    precision: f32\n  adapters:\n    type: lora\n    r: 4\n    alpha: 8\n    target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]\n",
            model_dir.display()
        ),
    )?;
    let data: Vec<String> = (0..48)
        .map(|i| {
            let a = (b'a' + (i % 7) as u8) as char;
            serde_json::json!({ "text": format!("{a}{a} the {a} the {a}{a}{a}") }).to_string()
        })
        .collect();
    write(&dir.join("data.jsonl"), data.join("\n"))?;
    let adapter = dir.join("adapter");
    let options = RunOptions {
        config: TrainConfig::load(&dir)?,
        model_path: model_dir.clone(),
        data: dir.join("data.jsonl"),
        out: adapter.clone(),
        ledger: dir.join("ledger.db"),
        run_name: Some(name.into()),
        resume: false,
        insecure_seed: Some(11),
        dtype: DType::F32,
        device: Device::Cpu,
    };
    let Outcome::Finished { .. } = trainer::run(options, &mut Quiet, &AtomicBool::new(false))?
    else {
        return Err("the run did not finish".into());
    };
    // Logits with the adapter as this engine loads it back from disk.
    let loaded = model::load(&model_dir, DType::F32, &Device::Cpu, 64)?;
    let lora = Lora::load_peft(&adapter, &loaded.model.config, DType::F32, &Device::Cpu)?;
    let ids: Vec<u32> = (0..16).map(|i| (i * 41 + 7) % 250).collect();
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let with = loaded.model.logits(&tokens, Some(&lora))?;
    let without = loaded.model.logits(&tokens, None)?;
    let flat = |t: &Tensor| -> candle_core::Result<Vec<f32>> { t.flatten_all()?.to_vec1() };
    Ok(serde_json::json!({
        "name": name,
        "model": model_dir,
        "adapter": adapter,
        "ids": ids,
        "shape": with.dims(),
        "logits": flat(&with)?,
        "base_logits": flat(&without)?,
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: peft_interop OUT_DIR")?
        .into();
    std::fs::create_dir_all(&root)?;
    let base = TinySpec {
        hidden: 64,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        intermediate: 96,
        ..TinySpec::default()
    };
    let cases = vec![
        case(&root, "llama_tied", &base)?,
        case(
            &root,
            "llama_untied",
            &TinySpec {
                tied: false,
                seed: 3,
                ..base.clone()
            },
        )?,
    ];
    let path = root.join("ours.json");
    write(&path, serde_json::to_string(&cases)?)?;
    println!("{}", path.display());
    Ok(())
}
