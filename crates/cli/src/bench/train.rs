//! `pft bench train`: a non-private LoRA step against a DP-SGD step on the
//! same model, batch and sequence length, interleaved round by round, and
//! each configuration's peak memory in a fresh process.
//!
//! The work is the Opacus anchor's (`../shared/anchors/opacus`): uniform
//! random token ids, four fixed batches cycled, every next token a target,
//! LoRA rank 8 (alpha 16, no dropout) on q_proj and v_proj, AdamW; a step is
//! forward, loss, backward, (DP: per-example clipping to 1 and noise of
//! multiplier 1) and the optimizer update. `bench/train/run.sh` runs the
//! anchor in the same session and prints both.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use pft_train::config::resolve_base_model;
use pft_train::data::Example;
use pft_train::fixtures::{self, TinySpec};
use pft_train::lora::{Lora, LoraConfig, Target};
use pft_train::model::{self, Llama, Precision};
use pft_train::optim::{AdamW, AdamWConfig};
use pft_train::step::{self, Combine};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::median;
use crate::{emit, Failure, Outcome};

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Bundled model name, model path, or `tiny` (the anchor's 4-layer,
    /// 256-wide llama with random weights).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Sequences per step [default: 8, or 16 for tiny].
    #[arg(long)]
    batch: Option<usize>,
    /// Tokens per sequence [default: 64, or 128 for tiny].
    #[arg(long)]
    seq: Option<usize>,
    /// Precisions to measure, comma-separated (f32, bf16, auto).
    #[arg(long, default_value = "f32,bf16")]
    precisions: String,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value_t = 2)]
    steps_per_round: usize,
    /// Untimed steps per configuration before the first round.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Skip the per-configuration peak-memory processes.
    #[arg(long)]
    no_rss: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Internal: measure one configuration's peak memory and exit.
    #[arg(long, hide = true)]
    rss_worker: Option<String>,
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measured {
    name: String,
    precision: String,
    private: bool,
    step_seconds: Vec<f64>,
    median_seconds: f64,
    tokens_per_second: f64,
    /// Median over rounds of this round's time / the same precision's
    /// plain time in that round.
    time_vs_plain: Option<f64>,
    peak_rss_mib: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    batch: usize,
    seq: usize,
    tokens_per_step: usize,
    threads: usize,
    rounds: usize,
    steps_per_round: usize,
    configs: Vec<Measured>,
}

/// The model, its LoRA and optimizer state, and the fixed batches.
struct Bench {
    model: Llama,
    lora: Lora,
    optimizer: AdamW,
    batches: Vec<Vec<Example>>,
    rng: ChaCha20Rng,
}

impl Bench {
    fn new(a: &TrainBenchArgs, precision: Precision) -> Result<Self, Failure> {
        let (batch, seq) = shape(a);
        let mut model = load_model(&a.model, seq)?;
        if precision.resolve() == Precision::Bf16 {
            model.use_bf16_products()?;
        }
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        let lora = Lora::init(
            &LoraConfig {
                rank: 8,
                alpha: 16.0,
                dropout: 0.0,
                targets: vec![Target::Q, Target::V],
            },
            &model.config,
            DType::F32,
            &Device::Cpu,
            &mut rng,
        )?;
        let params: Vec<Tensor> = lora.tensors();
        let optimizer = AdamW::new(
            AdamWConfig {
                learning_rate: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                warmup_steps: 0,
                total_steps: u64::MAX,
            },
            &params,
        )?;
        let vocab = model.config.vocab_size as u32;
        let batches = (0..4)
            .map(|_| {
                (0..batch)
                    .map(|_| Example {
                        tokens: (0..seq).map(|_| rng.random_range(0..vocab)).collect(),
                        supervised: vec![true; seq],
                    })
                    .collect()
            })
            .collect();
        Ok(Bench {
            model,
            lora,
            optimizer,
            batches,
            rng,
        })
    }

    /// One full step on batch `i`: seconds.
    fn step(&mut self, i: usize, private: bool) -> Result<f64, Failure> {
        let started = Instant::now();
        let batch: Vec<&Example> = self.batches[i % self.batches.len()].iter().collect();
        let combine = if private {
            Combine::Private {
                clip_norm: 1.0,
                noise_multiplier: 1.0,
            }
        } else {
            Combine::Plain
        };
        let n = batch.len();
        let grad = step::gradient(
            &self.model,
            &self.lora,
            &batch,
            n,
            n as f64,
            combine,
            &mut self.rng,
        )?;
        let params: Vec<Tensor> = self.lora.tensors();
        let updated = self.optimizer.update(&params, &grad.gradient)?;
        self.lora.set_parameters(updated)?;
        Ok(started.elapsed().as_secs_f64())
    }
}

fn shape(a: &TrainBenchArgs) -> (usize, usize) {
    let tiny = a.model == "tiny";
    (
        a.batch.unwrap_or(if tiny { 16 } else { 8 }),
        a.seq.unwrap_or(if tiny { 128 } else { 64 }),
    )
}

fn load_model(name: &str, seq: usize) -> Result<Llama, Failure> {
    if name == "tiny" {
        // Written and loaded like any model: the benchmark exercises the
        // real loading path.
        let dir = std::env::temp_dir().join(format!("pft-bench-tiny-{}", std::process::id()));
        fixtures::write_hf(&dir, &TinySpec::benchmark())?;
        let loaded = model::load(&dir, DType::F32, &Device::Cpu, seq);
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(loaded?.model);
    }
    let path = crate::train::model_path(resolve_base_model(name, std::path::Path::new(".")))?;
    Ok(model::load(&path, DType::F32, &Device::Cpu, seq)?.model)
}

fn configurations(a: &TrainBenchArgs) -> Result<Vec<(String, Precision, bool)>, Failure> {
    let mut out = Vec::new();
    for name in a
        .precisions
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let precision = Precision::parse(name).ok_or_else(|| {
            Failure::Usage(format!(
                "--precisions: {name} is not one of f32, bf16, auto"
            ))
        })?;
        let resolved = precision.resolve();
        for private in [false, true] {
            let kind = if private { "dp" } else { "plain" };
            out.push((
                format!("{kind}_lora_{}", resolved.name()),
                resolved,
                private,
            ));
        }
    }
    if out.is_empty() {
        return Err(Failure::Usage("--precisions names no precision".into()));
    }
    Ok(out)
}

/// Peak resident memory since the last reset, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak to the current resident size (Linux: clear_refs 5).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The worker: build one configuration, reset the peak after building (as
/// the anchor does), run warm-up and a few steps, report the peak.
fn rss_worker(a: &TrainBenchArgs, name: &str) -> Outcome {
    let (_, precision, private) = configurations(a)?
        .into_iter()
        .find(|c| c.0 == name)
        .ok_or_else(|| Failure::Usage(format!("unknown configuration {name}")))?;
    let mut bench = Bench::new(a, precision)?;
    let reset = reset_peak_rss();
    for i in 0..a.warmup + 2 {
        bench.step(i, private)?;
    }
    let peak = if reset { peak_rss_mib() } else { None };
    crate::print_json(&serde_json::json!({ "peak_rss_mib": peak }))
}

fn measure_rss(a: &TrainBenchArgs, name: &str) -> anyhow::Result<Option<f64>> {
    let exe = std::env::current_exe().context("cannot find the pft executable")?;
    let (batch, seq) = shape(a);
    let output = Command::new(exe)
        .args([
            "bench",
            "train",
            "--model",
            &a.model,
            "--precisions",
            &a.precisions,
        ])
        .args(["--batch", &batch.to_string(), "--seq", &seq.to_string()])
        .args(["--warmup", &a.warmup.to_string(), "--rss-worker", name])
        .output()
        .context("cannot start the memory worker")?;
    if !output.status.success() {
        anyhow::bail!(
            "memory worker for {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(value["peak_rss_mib"].as_f64())
}

pub fn run(a: TrainBenchArgs) -> Outcome {
    if let Some(name) = &a.rss_worker {
        return rss_worker(&a, name);
    }
    let (batch, seq) = shape(&a);
    if batch == 0 || seq < 2 || a.rounds == 0 || a.steps_per_round == 0 {
        return Err(Failure::Usage(
            "--batch, --rounds and --steps-per-round must be at least 1, --seq at least 2".into(),
        ));
    }
    let configs = configurations(&a)?;
    // One model per precision; plain and DP share it, as the anchor's
    // configurations share a process.
    let mut benches: Vec<(Precision, Bench)> = Vec::new();
    for (_, precision, _) in &configs {
        if !benches.iter().any(|(p, _)| p == precision) {
            eprintln!("loading {} ({})", a.model, precision.name());
            benches.push((*precision, Bench::new(&a, *precision)?));
        }
    }
    let bench_of = |benches: &[(Precision, Bench)], p: Precision| -> usize {
        benches
            .iter()
            .position(|(q, _)| *q == p)
            .expect("built above")
    };
    let mut times: Vec<Vec<Vec<f64>>> = vec![Vec::new(); configs.len()];
    for (c, (_, precision, private)) in configs.iter().enumerate() {
        let b = bench_of(&benches, *precision);
        for i in 0..a.warmup {
            benches[b].1.step(i + c, *private)?;
        }
    }
    for round in 0..a.rounds {
        // Rotate the order every round, so no configuration always runs
        // first (or right after another's allocations).
        let order: Vec<usize> = (0..configs.len())
            .map(|i| (i + round) % configs.len())
            .collect();
        for &c in &order {
            let (_, precision, private) = &configs[c];
            let b = bench_of(&benches, *precision);
            let mut round_times = Vec::with_capacity(a.steps_per_round);
            for i in 0..a.steps_per_round {
                round_times.push(benches[b].1.step(round * a.steps_per_round + i, *private)?);
            }
            times[c].push(round_times);
        }
        eprintln!(
            "round {}: {}",
            round + 1,
            configs
                .iter()
                .zip(&times)
                .map(|((name, _, _), t)| format!("{name} {:.3}s", median(t[round].clone())))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    drop(benches);
    let tokens = batch * seq;
    let mut measured: Vec<Measured> = Vec::new();
    for (c, (name, precision, private)) in configs.iter().enumerate() {
        let all: Vec<f64> = times[c].iter().flatten().copied().collect();
        let med = median(all.clone());
        let plain = configs
            .iter()
            .position(|(_, p, private)| p == precision && !private)
            .expect("every precision has a plain configuration");
        let paired: Vec<f64> = times[c]
            .iter()
            .zip(&times[plain])
            .map(|(ours, base)| median(ours.clone()) / median(base.clone()))
            .collect();
        let peak = if a.no_rss {
            None
        } else {
            eprintln!("peak memory: {name}");
            measure_rss(&a, name)?
        };
        measured.push(Measured {
            name: name.clone(),
            precision: precision.name().into(),
            private: *private,
            step_seconds: all,
            median_seconds: med,
            tokens_per_second: tokens as f64 / med,
            time_vs_plain: (*private).then(|| median(paired)),
            peak_rss_mib: peak,
        });
    }
    let report = Report {
        model: a.model.clone(),
        batch,
        seq,
        tokens_per_step: tokens,
        threads: threads(),
        rounds: a.rounds,
        steps_per_round: a.steps_per_round,
        configs: measured,
    };
    emit(a.json, &report, |r| {
        let mut lines = vec![format!(
            "{} B={} T={} ({} tokens/step, {} threads), median of {}x{} steps",
            r.model, r.batch, r.seq, r.tokens_per_step, r.threads, r.rounds, r.steps_per_round
        )];
        lines.push(format!(
            "{:16} {:>10} {:>9} {:>14} {:>13}",
            "config", "s/step", "tok/s", "DP / plain", "peak MiB"
        ));
        for m in &r.configs {
            lines.push(format!(
                "{:16} {:>10.3} {:>9.1} {:>14} {:>13}",
                m.name,
                m.median_seconds,
                m.tokens_per_second,
                m.time_vs_plain.map_or("-".into(), |x| format!("{x:.3}x")),
                m.peak_rss_mib.map_or("-".into(), |x| format!("{x:.0}"))
            ));
        }
        lines.join("\n")
    })
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
