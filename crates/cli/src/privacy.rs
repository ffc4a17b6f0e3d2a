//! `pft privacy`: epsilon for a training plan, the noise a target needs,
//! the steps a budget allows.
//!
//! Numeric flags accept negative numbers, so that the range checks (which
//! say what is valid) report them rather than the argument parser.

use clap::{Args, Subcommand};
use pft_accountant::{calibrate, Epsilon, Method, Segment};
use serde::Serialize;

use crate::{print_json, Outcome};

#[derive(Subcommand)]
pub enum PrivacyCommand {
    /// Epsilon spent by a number of DP-SGD steps.
    Epsilon(EpsilonArgs),
    /// The smallest noise multiplier that keeps epsilon at or below a target.
    Noise(NoiseArgs),
    /// The largest number of steps a budget allows.
    Steps(StepsArgs),
}

#[derive(Args)]
pub struct Common {
    /// Target delta, in (0, 1); typically below 1/(dataset size).
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    delta: f64,
    /// Accountant: pld (tightest sound bound, default), rdp (sound, looser)
    /// or gdp (CLT approximation, not a bound).
    #[arg(long, value_name = "NAME", default_value = "pld")]
    accountant: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl Common {
    fn method(&self) -> Result<Method, crate::Failure> {
        Ok(self.accountant.parse::<Method>()?)
    }
}

#[derive(Args)]
pub struct EpsilonArgs {
    /// Poisson sampling rate: the chance each example joins a step, in (0, 1].
    #[arg(long, value_name = "Q", allow_negative_numbers = true)]
    sample_rate: f64,
    /// Noise standard deviation in units of the clipping norm, > 0.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    noise_multiplier: f64,
    /// Number of steps, >= 1.
    #[arg(long, value_name = "N")]
    steps: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct NoiseArgs {
    /// The epsilon not to exceed, > 0.
    #[arg(long, value_name = "E", allow_negative_numbers = true)]
    target_epsilon: f64,
    /// Poisson sampling rate, in (0, 1].
    #[arg(long, value_name = "Q", allow_negative_numbers = true)]
    sample_rate: f64,
    /// Number of steps planned, >= 1.
    #[arg(long, value_name = "N")]
    steps: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct StepsArgs {
    /// The epsilon not to exceed, > 0.
    #[arg(long, value_name = "E", allow_negative_numbers = true)]
    target_epsilon: f64,
    /// Poisson sampling rate, in (0, 1].
    #[arg(long, value_name = "Q", allow_negative_numbers = true)]
    sample_rate: f64,
    /// Noise multiplier, > 0.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    noise_multiplier: f64,
    #[command(flatten)]
    common: Common,
}

pub fn run(command: PrivacyCommand) -> Outcome {
    match command {
        PrivacyCommand::Epsilon(a) => epsilon(a),
        PrivacyCommand::Noise(a) => noise(a),
        PrivacyCommand::Steps(a) => steps(a),
    }
}

#[derive(Serialize)]
struct EpsilonReport {
    #[serde(flatten)]
    epsilon: Epsilon,
    sample_rate: f64,
    noise_multiplier: f64,
    steps: u64,
}

fn describe(method: Method) -> &'static str {
    match method {
        Method::Pld => "PLD, the tightest sound bound",
        Method::Rdp => "RDP, a sound but looser bound",
        Method::Gdp => "GDP, a CLT approximation that may under-report",
    }
}

fn epsilon(a: EpsilonArgs) -> Outcome {
    let method = a.common.method()?;
    let segment = Segment::new(a.noise_multiplier, a.sample_rate, a.steps)?;
    let epsilon = method.epsilon(&[segment], a.common.delta)?;
    if a.common.json {
        return print_json(&EpsilonReport {
            epsilon,
            sample_rate: a.sample_rate,
            noise_multiplier: a.noise_multiplier,
            steps: a.steps,
        });
    }
    println!(
        "epsilon = {:.6} at delta = {:e} ({}) after {} steps at sample rate {} with noise multiplier {}",
        epsilon.epsilon,
        epsilon.delta,
        describe(method),
        a.steps,
        a.sample_rate,
        a.noise_multiplier
    );
    Ok(())
}

#[derive(Serialize)]
struct NoiseReport {
    noise_multiplier: f64,
    epsilon: f64,
    target_epsilon: f64,
    delta: f64,
    accountant: Method,
    sample_rate: f64,
    steps: u64,
    at_search_floor: bool,
}

fn noise(a: NoiseArgs) -> Outcome {
    let method = a.common.method()?;
    let c = calibrate::noise_multiplier(
        method,
        a.target_epsilon,
        a.common.delta,
        a.sample_rate,
        a.steps,
    )?;
    if a.common.json {
        return print_json(&NoiseReport {
            noise_multiplier: c.noise_multiplier,
            epsilon: c.epsilon,
            target_epsilon: a.target_epsilon,
            delta: a.common.delta,
            accountant: method,
            sample_rate: a.sample_rate,
            steps: a.steps,
            at_search_floor: c.at_search_floor,
        });
    }
    println!(
        "noise multiplier = {:.6} gives epsilon = {:.6} <= {} at delta = {:e} ({}) for {} steps at sample rate {}",
        c.noise_multiplier,
        c.epsilon,
        a.target_epsilon,
        a.common.delta,
        method,
        a.steps,
        a.sample_rate
    );
    if c.at_search_floor {
        println!(
            "note: the target is met even at the smallest noise searched ({}); less noise would meet it too",
            calibrate::MIN_NOISE_MULTIPLIER
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct StepsReport {
    steps: u64,
    epsilon: f64,
    target_epsilon: f64,
    delta: f64,
    accountant: Method,
    sample_rate: f64,
    noise_multiplier: f64,
    at_search_ceiling: bool,
}

fn steps(a: StepsArgs) -> Outcome {
    let method = a.common.method()?;
    let c = calibrate::max_steps(
        method,
        a.target_epsilon,
        a.common.delta,
        a.sample_rate,
        a.noise_multiplier,
    )?;
    if a.common.json {
        return print_json(&StepsReport {
            steps: c.steps,
            epsilon: c.epsilon,
            target_epsilon: a.target_epsilon,
            delta: a.common.delta,
            accountant: method,
            sample_rate: a.sample_rate,
            noise_multiplier: a.noise_multiplier,
            at_search_ceiling: c.at_search_ceiling,
        });
    }
    println!(
        "{}{} steps fit the budget: epsilon = {:.6} <= {} at delta = {:e} ({}) with sample rate {} and noise multiplier {}",
        if c.at_search_ceiling { "at least " } else { "" },
        c.steps,
        c.epsilon,
        a.target_epsilon,
        a.common.delta,
        method,
        a.sample_rate,
        a.noise_multiplier
    );
    Ok(())
}
