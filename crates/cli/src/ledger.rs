//! `pft ledger`: show what has been spent, and record spend from training
//! done elsewhere.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use clap::{Args, Subcommand};
use pft_accountant::Method;
use pft_ledger::{DatasetId, DatasetSpend, Ledger, RunSpec};
use serde::Serialize;

use crate::{emit, print_json, Failure, Outcome};

#[derive(Args)]
pub struct LedgerLocation {
    /// Ledger database [default: $PFT_LEDGER, else $XDG_DATA_HOME/pft/ledger.db,
    /// else ~/.local/share/pft/ledger.db].
    #[arg(long, value_name = "PATH")]
    ledger: Option<PathBuf>,
}

impl LedgerLocation {
    pub(crate) fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.ledger {
            return Ok(path.clone());
        }
        if let Some(path) = std::env::var_os("PFT_LEDGER") {
            return Ok(PathBuf::from(path));
        }
        let data_home = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .context("cannot find a place for the ledger: set --ledger, PFT_LEDGER or HOME")?;
        Ok(data_home.join("pft").join("ledger.db"))
    }

    fn open(&self) -> Result<Ledger, Failure> {
        let path = self.path()?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        Ok(Ledger::open(&path)?)
    }
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Privacy spent per dataset and run.
    Show(ShowArgs),
    /// Record steps of a training run done outside pft.
    Record(RecordArgs),
}

#[derive(Args)]
pub struct ShowArgs {
    /// Only this dataset: its SHA-256 (as `pft ledger show` prints it) or a
    /// path to the dataset file.
    #[arg(long, value_name = "HASH|FILE")]
    dataset: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    location: LedgerLocation,
}

#[derive(Args)]
pub struct RecordArgs {
    /// The dataset trained on: a path to its file, or its SHA-256.
    #[arg(long, value_name = "FILE|HASH")]
    dataset: String,
    /// A label to show for the dataset.
    #[arg(long)]
    label: Option<String>,
    /// Run name; recording into an existing run continues it.
    #[arg(long)]
    run: String,
    /// First step recorded (default: the step after the run's last).
    #[arg(long, value_name = "K")]
    first_step: Option<u64>,
    /// Number of steps, >= 1.
    #[arg(long, value_name = "N")]
    steps: u64,
    /// Noise multiplier of those steps, > 0.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    noise_multiplier: f64,
    /// Poisson sampling rate of those steps, in (0, 1].
    #[arg(long, value_name = "Q", allow_negative_numbers = true)]
    sample_rate: f64,
    /// The run's delta, in (0, 1).
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    delta: f64,
    /// The run's accountant: pld, rdp or gdp.
    #[arg(long, default_value = "pld")]
    accountant: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    location: LedgerLocation,
}

pub fn run(command: LedgerCommand) -> Outcome {
    match command {
        LedgerCommand::Show(a) => show(a),
        LedgerCommand::Record(a) => record(a),
    }
}

/// A dataset argument: an existing file is hashed; otherwise it must be a
/// SHA-256 in hex.
fn dataset_id(argument: &str) -> Result<DatasetId, Failure> {
    let path = Path::new(argument);
    if path.is_file() {
        return Ok(DatasetId::of_file(path)?);
    }
    DatasetId::parse(argument).map_err(|_| {
        Failure::Usage(format!(
            "--dataset '{argument}' is neither a readable file nor a SHA-256 (64 hexadecimal characters)"
        ))
    })
}

#[derive(Serialize)]
struct ShowReport {
    ledger: PathBuf,
    datasets: Vec<DatasetSpend>,
}

fn show(a: ShowArgs) -> Outcome {
    let dataset = a.dataset.as_deref().map(dataset_id).transpose()?;
    let ledger = a.location.open()?;
    let datasets = ledger.report(dataset.as_ref())?;
    if a.json {
        return print_json(&ShowReport {
            ledger: ledger.path().to_path_buf(),
            datasets,
        });
    }
    println!("ledger {}", ledger.path().display());
    if datasets.is_empty() {
        println!("no privacy spent yet");
    }
    for d in &datasets {
        match &d.label {
            Some(label) => println!("\ndataset {} ({label})", d.dataset),
            None => println!("\ndataset {}", d.dataset),
        }
        println!(
            "  {:<24} {:<10} {:>10} {:>10} {:>12}",
            "run", "accountant", "delta", "steps", "epsilon"
        );
        for r in &d.runs {
            let eps = r
                .epsilon
                .map_or_else(|| "-".to_string(), |e| format!("{e:.6}"));
            println!(
                "  {:<24} {:<10} {:>10.1e} {:>10} {:>12}",
                r.run, r.accountant, r.delta, r.steps, eps
            );
        }
        if let Some(t) = &d.total {
            println!(
                "  total: epsilon {:.6} at delta {:e} over {} steps ({} across all runs)",
                t.epsilon, t.delta, t.steps, t.accountant
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct RecordReport {
    dataset: DatasetId,
    run: String,
    first_step: u64,
    last_step: u64,
    replayed: bool,
    epsilon: f64,
    delta: f64,
    accountant: Method,
}

fn record(a: RecordArgs) -> Outcome {
    let dataset = dataset_id(&a.dataset)?;
    let accountant: Method = a.accountant.parse()?;
    let mut ledger = a.location.open()?;
    let spec = RunSpec {
        name: a.run.clone(),
        accountant,
        delta: a.delta,
        target_epsilon: None,
    };
    let run = ledger.open_run(&dataset, a.label.as_deref(), &spec, SystemTime::now())?;
    let first = match a.first_step {
        Some(k) => k,
        None => ledger.last_step(run)? + 1,
    };
    let receipt = ledger.record_steps(run, first, a.steps, a.noise_multiplier, a.sample_rate)?;
    let epsilon = accountant
        .epsilon(&ledger.run_history(run)?, a.delta)?
        .epsilon;
    let report = RecordReport {
        dataset,
        run: a.run,
        first_step: first,
        last_step: receipt.step(),
        replayed: receipt.replayed(),
        epsilon,
        delta: a.delta,
        accountant,
    };
    emit(a.json, &report, |r| {
        format!(
            "recorded steps {}..={} of run '{}' on dataset {}{}; the run has spent epsilon {:.6} at delta {:e} ({})",
            r.first_step,
            r.last_step,
            r.run,
            r.dataset,
            if r.replayed { " (already recorded)" } else { "" },
            r.epsilon,
            r.delta,
            r.accountant
        )
    })
}
