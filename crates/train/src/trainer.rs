//! A DP-SGD fine-tuning run, from configuration to adapter and report.
//!
//! Order of each step (the ledger invariant): sample, compute the noised
//! gradient, record the step in the ledger (durable), and only then apply
//! the update. Before each step the accountant checks that it would stay
//! within the target epsilon; the noise was calibrated so the planned steps
//! do. Checkpoints every few steps, and on interruption, make a crash or
//! Ctrl-C resumable bit for bit: a resumed run replays any step the ledger
//! already holds without counting it again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use candle_core::{DType, Device, Tensor};
use pft_accountant::{calibrate, Accountant, Method};
use pft_ledger::{Ledger, RunSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::TrainConfig;
use crate::data::{Dataset, Example};
use crate::error::{Result, TrainError};
use crate::lora::Lora;
use crate::model::{self, LoadedModel, Precision};
use crate::optim::{AdamW, AdamWConfig};
use crate::protection::Protector;
use crate::report::{self, Finish, PrivacyReport};
use crate::step::{self, Combine};

pub const LOG_FILE: &str = "train_log.jsonl";

/// Everything a run needs besides the configuration.
pub struct RunOptions {
    pub config: TrainConfig,
    pub model_path: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    pub ledger: PathBuf,
    pub run_name: Option<String>,
    pub resume: bool,
    /// A fixed generator seed. Only for tests: noise and sampling drawn
    /// from a known seed protect nothing.
    pub insecure_seed: Option<u64>,
    pub dtype: DType,
    pub device: Device,
}

/// One line of the training log, and what progress displays.
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub step: u64,
    pub planned: u64,
    pub examples: usize,
    pub tokens: usize,
    /// Mean of the sampled examples' losses (absent for an empty batch).
    pub loss: Option<f64>,
    pub epsilon: f64,
    pub learning_rate: f64,
    /// Share of examples whose gradient was clipped.
    pub clipped: f64,
    pub seconds: f64,
}

/// Receives a run's progress.
pub trait Progress {
    fn message(&mut self, text: &str);
    fn start(&mut self, planned: u64, done: u64);
    fn step(&mut self, log: &StepLog);
}

/// How a run ended.
pub enum Outcome {
    Finished {
        report: Box<PrivacyReport>,
        report_path: PathBuf,
    },
    Interrupted {
        step: u64,
    },
}

/// The noise and the number of steps: calibrated from the target epsilon,
/// or, with a fixed noise multiplier, as many steps as the budget allows.
pub fn plan(config: &TrainConfig, sample_rate: f64) -> Result<(f64, u64)> {
    let method = config.accountant;
    match (config.noise_multiplier, config.target_epsilon) {
        (Some(sigma), Some(target)) => {
            let allowed = calibrate::max_steps(method, target, config.delta, sample_rate, sigma)?;
            Ok((sigma, config.max_steps.min(allowed.steps)))
        }
        (Some(sigma), None) => Ok((sigma, config.max_steps)),
        (None, Some(target)) => {
            let c = calibrate::noise_multiplier(
                method,
                target,
                config.delta,
                sample_rate,
                config.max_steps,
            )?;
            Ok((c.noise_multiplier, config.max_steps))
        }
        (None, None) => Err(TrainError::Invalid(
            "set a target epsilon or a noise multiplier".into(),
        )),
    }
}

fn config_fingerprint(config: &TrainConfig, precision: Precision) -> String {
    // Debug output is stable for a given build and covers every field; the
    // resolved precision joins it because `auto` may resolve differently on
    // another machine, and a resumed run must compute what the first did.
    hex::encode(Sha256::digest(
        format!("{config:?} {precision:?}").as_bytes(),
    ))
}

pub fn run(options: RunOptions, progress: &mut dyn Progress, stop: &AtomicBool) -> Result<Outcome> {
    let config = &options.config;
    std::fs::create_dir_all(&options.out).map_err(|e| TrainError::io(&options.out, e))?;
    let has_checkpoint = options.out.join(checkpoint::FILE).is_file();
    if options.resume && !has_checkpoint {
        return Err(TrainError::Invalid(format!(
            "nothing to resume: {} holds no checkpoint",
            options.out.display()
        )));
    }
    if !options.resume && has_checkpoint {
        return Err(TrainError::Invalid(format!(
            "{} holds the checkpoint of an unfinished run; pass --resume to continue it, or choose another output directory",
            options.out.display()
        )));
    }
    if !options.resume && options.out.join(report::FILE).is_file() {
        return Err(TrainError::Invalid(format!(
            "{} already holds a finished run; choose another output directory",
            options.out.display()
        )));
    }
    if options.insecure_seed.is_some() {
        progress.message(
            "WARNING: fixed random seed. This run is NOT private: the noise and the sampling are predictable. Use it for tests only.",
        );
    }

    // Secrets and the entity model before the base model, so a missing
    // secret fails fast.
    let protector = config
        .context_protection
        .as_ref()
        .map(Protector::new)
        .transpose()?;
    if let Some(p) = &protector {
        for i in p.unreachable() {
            progress.message(&format!(
                "note: context_protection.strategies[{i}] protects nothing: earlier strategies claim all its labels (give them `labels` to share the work)"
            ));
        }
    }

    let precision = config.precision.resolve();
    if precision == Precision::Bf16 && options.dtype != DType::F32 {
        return Err(TrainError::Invalid(format!(
            "precision bf16 runs f32 activations; this run's dtype is {:?}",
            options.dtype
        )));
    }
    let LoadedModel {
        mut model,
        tokenizer,
        weights_hash,
        source,
    } = model::load(
        &options.model_path,
        options.dtype,
        &options.device,
        config.max_seq_len,
    )?;
    if precision == Precision::Bf16 {
        model.use_bf16_products()?;
    }
    let dataset = Dataset::load(
        &options.data,
        &tokenizer,
        config.max_seq_len.min(model.max_len()),
        protector.as_ref(),
    )?;
    drop(protector);
    if let Some(p) = &dataset.protection {
        let replaced: usize = p.replaced.values().flat_map(|m| m.values()).sum();
        progress.message(&format!(
            "context protection: {replaced} spans replaced in {} of {} texts ({} found and left below their strategy's sensitivity)",
            p.texts_changed,
            p.texts,
            p.left.values().sum::<usize>()
        ));
    }
    let n = dataset.len();
    if config.expected_batch > n {
        return Err(TrainError::Invalid(format!(
            "the expected batch ({} = batch_size x gradient_accumulation_steps) exceeds the dataset's {n} examples",
            config.expected_batch
        )));
    }
    let sample_rate = config.expected_batch as f64 / n as f64;
    if config.delta >= 1.0 / n as f64 {
        progress.message(&format!(
            "note: delta = {} is not below 1/n = {:.2e}; with that delta, releasing one example in the clear is (0, delta)-DP",
            config.delta,
            1.0 / n as f64
        ));
    }
    for setting in &config.not_applied {
        progress.message(&format!("note: {setting} is not applied by pft train"));
    }
    if dataset.truncated > 0 {
        progress.message(&format!(
            "note: {} examples were cut to {} tokens",
            dataset.truncated, config.max_seq_len
        ));
    }
    let (noise_multiplier, planned) = plan(config, sample_rate)?;
    let fingerprint = config_fingerprint(config, precision);

    // The generator, the adapter and the optimizer: fresh or resumed.
    let mut rng: ChaCha20Rng;
    let mut lora: Lora;
    let mut optimizer: AdamW;
    let adam_config = AdamWConfig {
        learning_rate: config.learning_rate,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: config.weight_decay,
        warmup_steps: config.warmup_steps,
        total_steps: planned,
    };
    let (done, run_name, started_at);
    if options.resume {
        // Shapes and names come from a fresh adapter of the same config.
        let mut scratch_rng = ChaCha20Rng::seed_from_u64(0);
        lora = Lora::init(
            &config.lora,
            &model.config,
            options.dtype,
            &options.device,
            &mut scratch_rng,
        )?;
        let names: Vec<String> = lora.parameters().into_iter().map(|(n, _)| n).collect();
        let ck = checkpoint::load(&options.out, &names, &options.device)?
            .ok_or_else(|| TrainError::Invalid("checkpoint vanished".into()))?;
        let m = &ck.meta;
        let mismatch = |what: &str| {
            TrainError::Invalid(format!(
                "cannot resume: the {what} differs from the checkpointed run's"
            ))
        };
        if m.dataset_sha256 != dataset.id.as_str() {
            return Err(mismatch("dataset"));
        }
        if m.model_sha256 != weights_hash {
            return Err(mismatch("base model"));
        }
        if m.config_sha256 != fingerprint {
            return Err(mismatch("configuration"));
        }
        rng = m.rng.restore()?;
        lora.set_parameters(ck.params)?;
        optimizer = AdamW {
            config: adam_config,
            step: m.optimizer_step,
            m: ck.m,
            v: ck.v,
        };
        done = m.step;
        run_name = m.run_name.clone();
        started_at = m.started_at;
        if m.noise_multiplier != noise_multiplier || m.planned_steps != planned {
            return Err(TrainError::Invalid(format!(
                "cannot resume: this configuration plans {planned} steps at noise multiplier {noise_multiplier}, the checkpointed run {} steps at {}",
                m.planned_steps, m.noise_multiplier
            )));
        }
        progress.message(&format!("resuming run '{run_name}' after step {done}"));
        truncate_log(&options.out.join(LOG_FILE), done)?;
    } else {
        rng = match options.insecure_seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_os_rng(),
        };
        lora = Lora::init(
            &config.lora,
            &model.config,
            options.dtype,
            &options.device,
            &mut rng,
        )?;
        let params: Vec<Tensor> = lora.tensors();
        optimizer = AdamW::new(adam_config, &params)?;
        done = 0;
        started_at = report::unix_seconds(SystemTime::now());
        run_name = options
            .run_name
            .clone()
            .unwrap_or_else(|| format!("run-{started_at}"));
        let _ = std::fs::remove_file(options.out.join(LOG_FILE));
    }

    let mut ledger = Ledger::open(&options.ledger)?;
    let run_id = ledger.open_run(
        &dataset.id,
        dataset.path.file_name().and_then(|n| n.to_str()),
        &RunSpec {
            name: run_name.clone(),
            accountant: config.accountant,
            delta: config.delta,
            target_epsilon: config.target_epsilon,
        },
        SystemTime::now(),
    )?;
    let mut accountant = Accountant::new(config.accountant);
    if done > 0 {
        accountant.record(noise_multiplier, sample_rate, done)?;
    }
    progress.message(&format!(
        "run '{run_name}': {n} examples, sample rate {sample_rate:.4}, noise multiplier {noise_multiplier:.4}, clip norm {}, {planned} steps planned, {} products",
        config.clip_norm,
        precision.name()
    ));
    progress.start(planned, done);

    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(options.out.join(LOG_FILE))
        .map_err(|e| TrainError::io(options.out.join(LOG_FILE), e))?;
    let checkpoint_now =
        |step: u64, rng: &ChaCha20Rng, lora: &Lora, optimizer: &AdamW| -> Result<()> {
            let meta = CheckpointMeta::new(
                step,
                planned,
                noise_multiplier,
                sample_rate,
                dataset.id.as_str().to_string(),
                weights_hash.clone(),
                fingerprint.clone(),
                run_name.clone(),
                started_at,
                optimizer.step,
                rng,
            );
            let params: Vec<(String, Tensor)> = lora
                .parameters()
                .into_iter()
                .map(|(n, t)| (n, t.clone()))
                .collect();
            checkpoint::save(&options.out, meta, &params, &optimizer.m, &optimizer.v)
        };

    if !options.resume {
        // A checkpoint before the first step: a run killed at any point
        // after this can be resumed, and resumes with the same generator.
        checkpoint_now(0, &rng, &lora, &optimizer)?;
    }
    let mut finish = Finish::Completed;
    let mut last_done = done;
    for step_number in (done + 1)..=planned {
        if stop.load(Ordering::SeqCst) {
            checkpoint_now(last_done, &rng, &lora, &optimizer)?;
            return Ok(Outcome::Interrupted { step: last_done });
        }
        let epsilon_after = accountant
            .epsilon_after(noise_multiplier, sample_rate, 1, config.delta)?
            .epsilon;
        if config
            .target_epsilon
            .is_some_and(|target| epsilon_after > target)
        {
            finish = Finish::BudgetReached;
            progress.message(&format!(
                "stopping before step {step_number}: it would spend epsilon {epsilon_after:.4}, above the target"
            ));
            break;
        }
        let started = Instant::now();
        let sample: Vec<&Example> = crate::dpsgd::poisson_sample(n, sample_rate, &mut rng)
            .into_iter()
            .map(|i| &dataset.examples[i])
            .collect();
        let grad = step::gradient(
            &model,
            &lora,
            &sample,
            config.micro_batch,
            config.expected_batch as f64,
            Combine::Private {
                clip_norm: config.clip_norm,
                noise_multiplier,
            },
            &mut rng,
        )?;
        // Durable before release: only a receipt lets the update through.
        let receipt = ledger.record_step(run_id, step_number, noise_multiplier, sample_rate)?;
        apply_update(&mut lora, &mut optimizer, &grad.gradient, &receipt)?;
        accountant.record(noise_multiplier, sample_rate, 1)?;
        last_done = step_number;
        let entry = StepLog {
            step: step_number,
            planned,
            examples: sample.len(),
            tokens: grad.tokens,
            loss: (!grad.losses.is_empty())
                .then(|| grad.losses.iter().sum::<f64>() / grad.losses.len() as f64),
            epsilon: epsilon_after,
            learning_rate: optimizer.config.rate(optimizer.step),
            clipped: if grad.norms.is_empty() {
                0.0
            } else {
                grad.norms.iter().filter(|n| **n > config.clip_norm).count() as f64
                    / grad.norms.len() as f64
            },
            seconds: started.elapsed().as_secs_f64(),
        };
        let line = serde_json::to_string(&entry).map_err(|e| TrainError::Invalid(e.to_string()))?;
        writeln!(log, "{line}").map_err(|e| TrainError::io(options.out.join(LOG_FILE), e))?;
        progress.step(&entry);
        if step_number % config.checkpoint_every == 0 && step_number < planned {
            checkpoint_now(step_number, &rng, &lora, &optimizer)?;
        }
    }

    // The adapter, then the report computed from the ledger.
    lora.save_peft(&options.out, &source.display().to_string())?;
    let history = ledger.run_history(run_id)?;
    let steps: u64 = history.iter().map(|s| s.steps).sum();
    let epsilon = config.accountant.epsilon(&history, config.delta)?.epsilon;
    let dataset_spend = ledger.report(Some(&dataset.id))?;
    let combined: Vec<_> = dataset_spend
        .iter()
        .flat_map(|d| d.runs.iter().flat_map(|r| r.history.clone()))
        .collect();
    let dataset_total_epsilon = if combined.is_empty() {
        0.0
    } else {
        Method::Pld.epsilon(&combined, config.delta)?.epsilon
    };
    let adapter_path = options.out.join("adapter_model.safetensors");
    let report = PrivacyReport {
        epsilon,
        delta: config.delta,
        accountant: config.accountant,
        target_epsilon: config.target_epsilon,
        noise_multiplier,
        sample_rate,
        steps,
        clip_norm: config.clip_norm,
        expected_batch_size: config.expected_batch,
        precision,
        dataset_total_epsilon,
        guarantee: report::guarantee(epsilon, config.delta),
        dataset: report::DatasetInfo {
            path: dataset.path.clone(),
            sha256: dataset.id.as_str().to_string(),
            examples: n,
            truncated_examples: dataset.truncated,
        },
        context_protection: dataset.protection.clone(),
        base_model: report::ModelInfo {
            source: source.clone(),
            sha256: weights_hash.clone(),
            parameters: model.config.parameter_count(),
        },
        adapter: report::AdapterInfo {
            sha256: report::sha256_file(&adapter_path)?,
            path: adapter_path,
            rank: config.lora.rank,
            alpha: config.lora.alpha,
            target_modules: config
                .lora
                .targets
                .iter()
                .map(|t| t.name().to_string())
                .collect(),
            parameters: lora.parameter_count(),
        },
        run: run_name.clone(),
        ledger: options.ledger.clone(),
        finish,
        software: report::SOFTWARE,
        started_at: report::rfc3339(started_at),
        finished_at: report::rfc3339(report::unix_seconds(SystemTime::now())),
    };
    let report_path = report::write(&options.out, &report)?;
    checkpoint::remove(&options.out)?;
    Ok(Outcome::Finished {
        report: Box::new(report),
        report_path,
    })
}

/// Applies an optimizer step; the receipt proves the step is in the ledger.
fn apply_update(
    lora: &mut Lora,
    optimizer: &mut AdamW,
    gradient: &[Tensor],
    _receipt: &pft_ledger::StepReceipt,
) -> Result<()> {
    let params: Vec<Tensor> = lora.tensors();
    let updated = optimizer.update(&params, gradient)?;
    lora.set_parameters(updated)
}

/// Drops log lines of steps after `done` (a crashed run may have run past
/// its last checkpoint; those steps are replayed).
fn truncate_log(path: &Path, done: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= done)
        })
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    std::fs::write(path, body).map_err(|e| TrainError::io(path, e))
}
