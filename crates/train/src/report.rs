//! The privacy report a run leaves beside its adapter: what was guaranteed,
//! computed (never typed in) from the ledger's record of the steps.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pft_accountant::Method;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};
use crate::model::Precision;

pub const FILE: &str = "privacy_report.json";

/// Why training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// All planned steps ran.
    Completed,
    /// The next step would have exceeded the target epsilon.
    BudgetReached,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrivacyReport {
    pub epsilon: f64,
    pub delta: f64,
    pub accountant: Method,
    pub target_epsilon: Option<f64>,
    pub noise_multiplier: f64,
    pub sample_rate: f64,
    pub steps: u64,
    pub clip_norm: f64,
    pub expected_batch_size: usize,
    /// How the frozen base weights were multiplied (never `auto`).
    pub precision: Precision,
    /// Epsilon spent on this dataset by every run the ledger knows,
    /// composed (PLD), at this run's delta.
    pub dataset_total_epsilon: f64,
    pub guarantee: String,
    pub dataset: DatasetInfo,
    /// What the guard replaced in the dataset before tokenization, per
    /// label (counts only); absent when `context_protection` is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_protection: Option<crate::protection::ProtectionReport>,
    pub base_model: ModelInfo,
    pub adapter: AdapterInfo,
    pub run: String,
    pub ledger: PathBuf,
    pub finish: Finish,
    pub software: Software,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub sha256: String,
    pub examples: usize,
    pub truncated_examples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub source: PathBuf,
    pub sha256: String,
    pub parameters: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub path: PathBuf,
    /// SHA-256 of `adapter_model.safetensors`.
    pub sha256: String,
    pub rank: usize,
    pub alpha: f64,
    pub target_modules: Vec<String>,
    pub parameters: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Software {
    pub name: &'static str,
    pub version: &'static str,
}

pub const SOFTWARE: Software = Software {
    name: "privacy-finetuner",
    version: env!("CARGO_PKG_VERSION"),
};

/// The sentence the report stands behind.
pub fn guarantee(epsilon: f64, delta: f64) -> String {
    format!(
        "The adapter, and anything computed from it alone, is ({epsilon:.4}, {delta:e})-differentially \
         private with respect to adding or removing any one example of the dataset. The training log \
         and checkpoints are not covered: they hold non-private statistics and the noise generator's \
         state, and stay inside the trust boundary."
    )
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

pub fn write(dir: &Path, report: &PrivacyReport) -> Result<PathBuf> {
    let path = dir.join(FILE);
    let text =
        serde_json::to_string_pretty(report).map_err(|e| TrainError::Invalid(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))?;
    Ok(path)
}

pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 UTC time of a Unix timestamp (days to civil date after Howard
/// Hinnant's algorithm).
pub fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
