//! Differential-privacy accounting for DP-SGD.
//!
//! Three analyses of the Poisson-subsampled Gaussian mechanism, each a pure
//! function of a step history:
//! - [`pld`]: privacy loss distributions, the default and the tightest sound
//!   bound;
//! - [`rdp`]: Rényi DP, sound and cheap, looser;
//! - [`gdp`]: Gaussian DP via the central limit theorem, an approximation.
//!
//! [`Accountant`] keeps the history of a training run (segments of
//! noise multiplier, sample rate and steps) apart from those analyses, and
//! [`calibrate`] inverts them: the least noise for a target, the most steps
//! for a budget.

pub mod accountant;
pub mod calibrate;
pub mod error;
pub mod gdp;
pub mod mechanism;
pub mod normal;
pub mod pld;
pub mod rdp;

pub use accountant::{Accountant, Detail, Epsilon, Method};
pub use error::{AccountantError, Argument, Result};
pub use mechanism::Segment;
