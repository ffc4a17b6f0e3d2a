//! The stateful side: a run's history of steps, and the registry of
//! analyses by name.
//!
//! As in Opacus, the accountant only records what happened (segments of
//! noise multiplier, sample rate and step count); every privacy figure is
//! computed on demand by a pure analysis over that history, so the noise or
//! the sampling can change mid-training and the history can be persisted
//! and re-analysed with any method.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{AccountantError, Result};
use crate::mechanism::{validate_history, Segment};
use crate::pld::Direction;
use crate::{gdp, pld, rdp};

/// The analyses, by name: the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Privacy loss distributions: the tightest sound bound (default).
    #[default]
    Pld,
    /// Rényi DP: sound, cheap, looser.
    Rdp,
    /// Gaussian DP via the CLT: an approximation, not a bound.
    Gdp,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Pld, Method::Rdp, Method::Gdp];

    pub fn name(self) -> &'static str {
        match self {
            Method::Pld => "pld",
            Method::Rdp => "rdp",
            Method::Gdp => "gdp",
        }
    }

    /// Whether the method's epsilon is a guaranteed upper bound. GDP's is
    /// not: report it only as an approximation.
    pub fn is_upper_bound(self) -> bool {
        !matches!(self, Method::Gdp)
    }

    /// Epsilon of `history` at `delta` under this analysis.
    pub fn epsilon(self, history: &[Segment], delta: f64) -> Result<Epsilon> {
        let detail = match self {
            Method::Pld => {
                let r = pld::epsilon(history, delta)?;
                (
                    r.epsilon,
                    Detail::Pld {
                        direction: r.direction,
                        grid_step: r.grid_step,
                        fft_size: r.fft_size,
                    },
                )
            }
            Method::Rdp => {
                let (epsilon, order) = rdp::epsilon(history, delta)?;
                (epsilon, Detail::Rdp { order })
            }
            Method::Gdp => {
                let (epsilon, mu) = gdp::epsilon(history, delta)?;
                (epsilon, Detail::Gdp { mu })
            }
        };
        Ok(Epsilon {
            epsilon: detail.0,
            delta,
            accountant: self,
            upper_bound: self.is_upper_bound(),
            detail: detail.1,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = AccountantError;

    fn from_str(s: &str) -> Result<Self> {
        Method::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| AccountantError::UnknownAccountant(s.to_string()))
    }
}

/// An epsilon and how it was computed.
#[derive(Debug, Clone, Serialize)]
pub struct Epsilon {
    pub epsilon: f64,
    pub delta: f64,
    pub accountant: Method,
    /// False for approximations (GDP), which may under-report.
    pub upper_bound: bool,
    #[serde(flatten)]
    pub detail: Detail,
}

/// Method-specific facts about a computation.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Pld {
        /// Neighbouring direction that attains epsilon (`None` for an
        /// unsampled Gaussian, solved exactly).
        direction: Option<Direction>,
        grid_step: f64,
        fft_size: usize,
    },
    Rdp {
        /// The Rényi order that gave the bound.
        order: f64,
    },
    Gdp {
        /// The CLT's Gaussian-DP parameter.
        mu: f64,
    },
}

/// A training run's privacy history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accountant {
    pub method: Method,
    history: Vec<Segment>,
}

impl Accountant {
    pub fn new(method: Method) -> Self {
        Accountant {
            method,
            history: Vec::new(),
        }
    }

    /// Rebuilds an accountant from a stored history, validating it.
    pub fn from_history(method: Method, history: Vec<Segment>) -> Result<Self> {
        validate_history(&history)?;
        Ok(Accountant { method, history })
    }

    pub fn history(&self) -> &[Segment] {
        &self.history
    }

    pub fn total_steps(&self) -> u64 {
        self.history.iter().map(|s| s.steps).sum()
    }

    /// Records `count` steps taken with these parameters.
    pub fn record(&mut self, noise_multiplier: f64, sample_rate: f64, count: u64) -> Result<()> {
        let segment = Segment::new(noise_multiplier, sample_rate, count)?;
        let mut history = self.history.clone();
        match history.last_mut() {
            Some(last)
                if last.noise_multiplier == noise_multiplier && last.sample_rate == sample_rate =>
            {
                last.steps += count;
            }
            _ => history.push(segment),
        }
        validate_history(&history)?;
        self.history = history;
        Ok(())
    }

    /// Epsilon spent so far at `delta`.
    pub fn epsilon(&self, delta: f64) -> Result<Epsilon> {
        self.method.epsilon(&self.history, delta)
    }

    /// Epsilon the history would reach after `count` more steps with these
    /// parameters: what a trainer checks before taking them.
    pub fn epsilon_after(
        &self,
        noise_multiplier: f64,
        sample_rate: f64,
        count: u64,
        delta: f64,
    ) -> Result<Epsilon> {
        let mut next = self.clone();
        next.record(noise_multiplier, sample_rate, count)?;
        next.epsilon(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_round_trips_every_name() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!("PLD".parse::<Method>().unwrap(), Method::Pld);
        let err = "prv".parse::<Method>().unwrap_err();
        assert!(err.to_string().contains("pld, rdp, gdp"), "{err}");
    }

    #[test]
    fn history_merges_repeated_settings_and_serializes() {
        let mut acc = Accountant::new(Method::Rdp);
        acc.record(1.0, 0.01, 10).unwrap();
        acc.record(1.0, 0.01, 5).unwrap();
        acc.record(2.0, 0.01, 1).unwrap();
        assert_eq!(acc.history().len(), 2);
        assert_eq!(acc.total_steps(), 16);
        let json = serde_json::to_string(&acc).unwrap();
        let back: Accountant = serde_json::from_str(&json).unwrap();
        assert_eq!(back, acc);
        assert!(json.contains("\"method\":\"rdp\""), "{json}");
    }

    #[test]
    fn a_bad_step_leaves_the_history_untouched() {
        let mut acc = Accountant::new(Method::Pld);
        acc.record(1.0, 0.01, 3).unwrap();
        assert!(acc.record(1.0, 1.5, 1).is_err());
        assert!(acc.record(-1.0, 0.1, 1).is_err());
        assert_eq!(acc.total_steps(), 3);
    }

    #[test]
    fn changing_noise_mid_run_composes_both_segments() {
        let mut both = Accountant::new(Method::Pld);
        both.record(1.0, 0.01, 500).unwrap();
        both.record(2.0, 0.01, 500).unwrap();
        let mut first = Accountant::new(Method::Pld);
        first.record(1.0, 0.01, 500).unwrap();
        let e_both = both.epsilon(1e-5).unwrap().epsilon;
        let e_first = first.epsilon(1e-5).unwrap().epsilon;
        assert!(e_both > e_first, "{e_both} <= {e_first}");
        let after = first.epsilon_after(2.0, 0.01, 500, 1e-5).unwrap().epsilon;
        assert!((after - e_both).abs() <= 1e-9 * e_both);
    }
}
