//! `pft bench`: timings with a baseline measured in the same run.

mod accountant;
mod train;

use clap::Subcommand;

use crate::Outcome;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time the accountants: epsilon over a grid of cases, extreme inputs,
    /// and calibration.
    Accountant(accountant::AccountantArgs),
    /// Time a non-private LoRA training step against a DP-SGD step on the
    /// same model, batch and sequence length, with peak memory.
    Train(train::TrainBenchArgs),
}

pub fn run(command: BenchCommand) -> Outcome {
    match command {
        BenchCommand::Accountant(a) => accountant::run(a),
        BenchCommand::Train(a) => train::run(a),
    }
}

/// The median (upper median for an even count); `values` must not be empty.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn max(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}
