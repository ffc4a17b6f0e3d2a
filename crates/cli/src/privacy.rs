//! `pft privacy`: epsilon for a training plan, the noise a target needs,
//! the steps a budget allows.
//!
//! Numeric flags accept negative numbers, so that the range checks (which
//! say what is valid) report them rather than the argument parser.

use clap::{Args, Subcommand};
use pft_accountant::{calibrate, Epsilon, Method, Segment};
use serde::Serialize;

use crate::{emit, Outcome};

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
    let report = EpsilonReport {
        epsilon: method.epsilon(&[segment], a.common.delta)?,
        sample_rate: a.sample_rate,
        noise_multiplier: a.noise_multiplier,
        steps: a.steps,
    };
    emit(a.common.json, &report, |r| {
        format!(
            "epsilon = {:.6} at delta = {:e} ({}) after {} steps at sample rate {} with noise multiplier {}",
            r.epsilon.epsilon,
            r.epsilon.delta,
            describe(method),
            r.steps,
            r.sample_rate,
            r.noise_multiplier
        )
    })
}

#[derive(Serialize)]
struct NoiseReport {
    #[serde(flatten)]
    calibration: calibrate::NoiseCalibration,
    target_epsilon: f64,
    delta: f64,
    accountant: Method,
    sample_rate: f64,
    steps: u64,
}

fn noise(a: NoiseArgs) -> Outcome {
    let method = a.common.method()?;
    let report = NoiseReport {
        calibration: calibrate::noise_multiplier(
            method,
            a.target_epsilon,
            a.common.delta,
            a.sample_rate,
            a.steps,
        )?,
        target_epsilon: a.target_epsilon,
        delta: a.common.delta,
        accountant: method,
        sample_rate: a.sample_rate,
        steps: a.steps,
    };
    emit(a.common.json, &report, |r| {
        let c = &r.calibration;
        let floor = if c.at_search_floor {
            format!(
                "\nnote: the target is met even at the smallest noise searched ({}); less noise would meet it too",
                calibrate::MIN_NOISE_MULTIPLIER
            )
        } else {
            String::new()
        };
        format!(
            "noise multiplier = {:.6} gives epsilon = {:.6} <= {} at delta = {:e} ({}) for {} steps at sample rate {}{floor}",
            c.noise_multiplier, c.epsilon, r.target_epsilon, r.delta, r.accountant, r.steps, r.sample_rate
        )
    })
}

#[derive(Serialize)]
struct StepsReport {
    #[serde(flatten)]
    calibration: calibrate::StepsCalibration,
    target_epsilon: f64,
    delta: f64,
    accountant: Method,
    sample_rate: f64,
    noise_multiplier: f64,
}

fn steps(a: StepsArgs) -> Outcome {
    let method = a.common.method()?;
    let report = StepsReport {
        calibration: calibrate::max_steps(
            method,
            a.target_epsilon,
            a.common.delta,
            a.sample_rate,
            a.noise_multiplier,
        )?,
        target_epsilon: a.target_epsilon,
        delta: a.common.delta,
        accountant: method,
        sample_rate: a.sample_rate,
        noise_multiplier: a.noise_multiplier,
    };
    emit(a.common.json, &report, |r| {
        let c = &r.calibration;
        format!(
            "{}{} steps fit the budget: epsilon = {:.6} <= {} at delta = {:e} ({}) with sample rate {} and noise multiplier {}",
            if c.at_search_ceiling { "at least " } else { "" },
            c.steps, c.epsilon, r.target_epsilon, r.delta, r.accountant, r.sample_rate, r.noise_multiplier
        )
    })
}
