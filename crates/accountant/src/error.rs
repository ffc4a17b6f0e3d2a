use std::fmt;

use thiserror::Error;

/// The inputs an accountant validates; callers map these to their own names
/// (a CLI flag, a config key) when they report the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argument {
    SampleRate,
    NoiseMultiplier,
    Steps,
    Delta,
    TargetEpsilon,
}

impl Argument {
    /// The snake_case name used in configuration files and JSON.
    pub fn key(self) -> &'static str {
        match self {
            Argument::SampleRate => "sample_rate",
            Argument::NoiseMultiplier => "noise_multiplier",
            Argument::Steps => "steps",
            Argument::Delta => "delta",
            Argument::TargetEpsilon => "target_epsilon",
        }
    }
}

impl fmt::Display for Argument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum AccountantError {
    #[error("{argument} = {value} is outside the valid range {range}")]
    OutOfRange {
        argument: Argument,
        value: f64,
        range: &'static str,
    },

    #[error("unknown accountant '{0}'; choose one of: pld, rdp, gdp")]
    UnknownAccountant(String),

    #[error(
        "no noise multiplier up to {max_noise_multiplier} keeps epsilon at or below {target_epsilon} \
         (delta {delta}, sample rate {sample_rate}, {steps} steps); raise the target epsilon or \
         lower the sample rate or the number of steps"
    )]
    TargetUnreachable {
        target_epsilon: f64,
        delta: f64,
        sample_rate: f64,
        steps: u64,
        max_noise_multiplier: f64,
    },

    #[error(
        "a single step already spends epsilon {one_step_epsilon:.6} > target {target_epsilon} \
         (delta {delta}); raise the target epsilon or the noise multiplier, or lower the sample rate"
    )]
    BudgetBelowOneStep {
        target_epsilon: f64,
        delta: f64,
        one_step_epsilon: f64,
    },

    #[error(
        "epsilon is unbounded at delta {delta}: the mechanism fails with probability above delta"
    )]
    Unbounded { delta: f64 },

    #[error("numerical failure in the {accountant} accountant: {detail}")]
    Numerical {
        accountant: &'static str,
        detail: String,
    },
}

impl AccountantError {
    /// The argument at fault, when the error is a bad input rather than a
    /// property of the privacy analysis.
    pub fn argument(&self) -> Option<Argument> {
        match self {
            AccountantError::OutOfRange { argument, .. } => Some(*argument),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, AccountantError>;
