//! `pft`: the command line of privacy-finetuner. It parses arguments, calls
//! the library crates and prints their results; the logic lives in the
//! crates.

mod bench;
mod guard;
mod kanon;
mod ledger;
mod privacy;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pft_accountant::{AccountantError, Argument};

#[derive(Parser)]
#[command(
    name = "pft",
    version,
    about = "Fine-tune and serve LLM agents on sensitive data with differential privacy",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Privacy accounting: epsilon spent, noise for a target, steps a budget allows.
    #[command(subcommand)]
    Privacy(privacy::PrivacyCommand),
    /// The durable privacy-budget ledger.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// DP-SGD LoRA fine-tuning: calibrated noise, per-example clipping,
    /// budget stop, resumable runs, a privacy report.
    Train(train::TrainArgs),
    /// Loss and perplexity of a model (with an adapter or without) on data.
    Eval(train::EvalArgs),
    /// Generate text with a model and, optionally, a trained adapter.
    Generate(train::GenerateArgs),
    /// The context guard: find, explain and protect PII and secrets.
    #[command(subcommand)]
    Guard(guard::GuardCommand),
    /// Bundled models: install and list.
    #[command(subcommand)]
    Model(train::ModelCommand),
    /// Benchmarks that print ratios against baselines measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// How a command failed: bad input (exit 2, one line saying what to fix),
/// stopped by the user (exit 130), or anything else (exit 1).
pub enum Failure {
    Usage(String),
    /// Stopped on request before finishing (exit 130, as after SIGINT).
    Stopped(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<pft_ledger::LedgerError> for Failure {
    fn from(e: pft_ledger::LedgerError) -> Self {
        match e {
            pft_ledger::LedgerError::Accountant(a) => a.into(),
            pft_ledger::LedgerError::BadDatasetId(_)
            | pft_ledger::LedgerError::StepGap { .. }
            | pft_ledger::LedgerError::ConflictingReplay { .. }
            | pft_ledger::LedgerError::RunMismatch { .. } => Failure::Usage(e.to_string()),
            other => Failure::Other(other.into()),
        }
    }
}

/// The flag that carries each validated argument.
fn flag(argument: Argument) -> &'static str {
    match argument {
        Argument::SampleRate => "--sample-rate",
        Argument::NoiseMultiplier => "--noise-multiplier",
        Argument::Steps => "--steps",
        Argument::Delta => "--delta",
        Argument::TargetEpsilon => "--target-epsilon",
    }
}

impl From<AccountantError> for Failure {
    fn from(e: AccountantError) -> Self {
        match e {
            AccountantError::OutOfRange {
                argument,
                value,
                range,
            } => Failure::Usage(format!(
                "{} {value} is outside the valid range {range}",
                flag(argument)
            )),
            AccountantError::UnknownAccountant(_)
            | AccountantError::TargetUnreachable { .. }
            | AccountantError::BudgetBelowOneStep { .. }
            | AccountantError::Unbounded { .. } => Failure::Usage(e.to_string()),
            AccountantError::Numerical { .. } => Failure::Other(e.into()),
        }
    }
}

pub type Outcome = Result<(), Failure>;

/// candle runs its element-wise ops on a thread pool of its own whose idle
/// workers spin, while the training kernels and matrix products run on
/// rayon's pool; two spinning pools on the same cores slowed a SmolLM2
/// training step by 10%. What is left to candle's pool is small, so it gets
/// one thread unless the user sets `CANDLE_NUM_THREADS`.
fn keep_candle_off_the_training_cores() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // First thing in `main`: no other thread exists yet to read the
        // environment concurrently.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

fn main() -> ExitCode {
    keep_candle_off_the_training_cores();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            // One line: clap's first line names the argument and the problem.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Command::Privacy(c) => privacy::run(c),
        Command::Ledger(c) => ledger::run(c),
        Command::Train(a) => train::train(a),
        Command::Eval(a) => train::eval(a),
        Command::Generate(a) => train::generate(a),
        Command::Model(c) => train::model(c),
        Command::Guard(c) => guard::run(c),
        Command::Bench(c) => bench::run(c),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Stopped(message)) => {
            eprintln!("{message}");
            ExitCode::from(130)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Prints `value` as one line of JSON.
pub fn print_json(value: &impl serde::Serialize) -> Outcome {
    let text = serde_json::to_string(value).map_err(anyhow::Error::from)?;
    println!("{text}");
    Ok(())
}

/// Prints a command's report: one line of JSON, or the text `describe`
/// gives.
pub fn emit<R: serde::Serialize>(
    json: bool,
    report: &R,
    describe: impl FnOnce(&R) -> String,
) -> Outcome {
    if json {
        print_json(report)
    } else {
        println!("{}", describe(report));
        Ok(())
    }
}
