//! The `context_protection` section of `privacy.yaml`: before the dataset
//! is tokenized, every text (a record's `text`, or each chat message's
//! `content`) is scanned by the context guard and rewritten by the listed
//! strategies, so names, cards and secrets never reach the model. The
//! strategies are rules in order: a finding goes to the first one whose
//! `labels` include its label (no `labels`: every label), and that rule's
//! sensitivity decides whether it is replaced. The run's report counts
//! what was replaced and left, per label (never a value).
//!
//! Secrets (`salt`, `key`) are named, never written: `"${HASH_SALT}"`
//! takes the value of that environment variable when the run starts.

use std::collections::BTreeMap;

use pft_guard::strategy::{FpeKey, HashKey, Rule};
use pft_guard::{Guard, Label, Policy, Protected, Sensitivity, Strategy};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProtectionSection {
    /// The default sensitivity of the strategies.
    sensitivity: Option<String>,
    /// Use the entity model (names, places, street addresses); `false`
    /// runs the pattern recognizers alone.
    model: Option<bool>,
    strategies: Vec<StrategySection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategySection {
    #[serde(rename = "type")]
    kind: String,
    sensitivity: Option<String>,
    labels: Option<Vec<String>>,
    salt: Option<String>,
    key: Option<String>,
    key_rotation_hours: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    PiiRemoval,
    EntityHashing,
    SemanticEncryption,
}

/// One validated strategy. Holds the name of the environment variable
/// with its secret, never the secret, so the configuration can be printed
/// and fingerprinted.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub kind: StrategyKind,
    pub labels: Option<Vec<Label>>,
    pub sensitivity: Sensitivity,
    pub secret_env: Option<String>,
    pub key_rotation_hours: u64,
}

/// The validated `context_protection` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextProtection {
    pub entity_model: bool,
    pub rules: Vec<RuleSpec>,
}

fn sensitivity(s: &str, at: &str) -> std::result::Result<Sensitivity, String> {
    Sensitivity::parse(s)
        .ok_or_else(|| format!("{at}.sensitivity '{s}' is not low, medium or high"))
}

/// The variable `NAME` of a value written `${NAME}`.
fn env_name(value: &str, at: &str) -> std::result::Result<String, String> {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .filter(|n| {
            !n.is_empty()
                && !n.starts_with(|c: char| c.is_ascii_digit())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(str::to_owned)
        .ok_or_else(|| {
            format!("{at} must name an environment variable, as \"${{HASH_SALT}}\": secrets do not belong in configuration files")
        })
}

impl ContextProtection {
    pub(crate) fn from_section(section: ProtectionSection) -> std::result::Result<Self, String> {
        let default_sensitivity = match &section.sensitivity {
            Some(s) => sensitivity(s, "context_protection")?,
            None => Sensitivity::Medium,
        };
        if section.strategies.is_empty() {
            return Err("context_protection.strategies lists no strategy".into());
        }
        let mut rules = Vec::with_capacity(section.strategies.len());
        for (i, s) in section.strategies.iter().enumerate() {
            let at = format!("context_protection.strategies[{i}]");
            let kind = match s.kind.to_ascii_lowercase().as_str() {
                "pii_removal" => StrategyKind::PiiRemoval,
                "entity_hashing" => StrategyKind::EntityHashing,
                "semantic_encryption" => StrategyKind::SemanticEncryption,
                other => {
                    return Err(format!(
                        "{at}.type '{other}' is not pii_removal, entity_hashing or semantic_encryption (k_anonymization is for records: pft guard kanon)"
                    ))
                }
            };
            let secret_env = match kind {
                StrategyKind::PiiRemoval => {
                    if s.salt.is_some() || s.key.is_some() || s.key_rotation_hours.is_some() {
                        return Err(format!(
                            "{at}: pii_removal takes no salt, key or key_rotation_hours"
                        ));
                    }
                    None
                }
                StrategyKind::EntityHashing => {
                    if s.key.is_some() || s.key_rotation_hours.is_some() {
                        return Err(format!(
                            "{at}: entity_hashing takes a salt, not a key or key_rotation_hours"
                        ));
                    }
                    Some(env_name(
                        s.salt.as_deref().unwrap_or("${HASH_SALT}"),
                        &format!("{at}.salt"),
                    )?)
                }
                StrategyKind::SemanticEncryption => {
                    if s.salt.is_some() {
                        return Err(format!("{at}: semantic_encryption takes a key, not a salt"));
                    }
                    Some(env_name(
                        s.key.as_deref().unwrap_or("${FPE_KEY}"),
                        &format!("{at}.key"),
                    )?)
                }
            };
            let labels = s
                .labels
                .as_ref()
                .map(|names| {
                    names
                        .iter()
                        .map(|n| {
                            Label::parse(n).ok_or_else(|| {
                                format!("{at}.labels: '{n}' is not a label (PERSON, EMAIL_ADDRESS, CREDIT_CARD, ...)")
                            })
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
                .transpose()?;
            rules.push(RuleSpec {
                kind,
                labels,
                sensitivity: match &s.sensitivity {
                    Some(v) => sensitivity(v, &at)?,
                    None => default_sensitivity,
                },
                secret_env,
                key_rotation_hours: s.key_rotation_hours.unwrap_or(0),
            });
        }
        Ok(ContextProtection {
            entity_model: section.model.unwrap_or(true),
            rules,
        })
    }

    /// The guard's policy, with the secrets read from the environment.
    fn policy(&self) -> Result<Policy> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, spec) in self.rules.iter().enumerate() {
            let at = format!("context_protection.strategies[{i}]");
            let secret = || -> Result<std::ffi::OsString> {
                let name = spec.secret_env.as_deref().unwrap_or_default();
                std::env::var_os(name).ok_or_else(|| {
                    TrainError::Invalid(format!(
                        "{at}: set the environment variable {name} to the secret (at least 16 random bytes)"
                    ))
                })
            };
            let bad_key = |e: pft_guard::GuardError| TrainError::Invalid(format!("{at}: {e}"));
            let strategy = match spec.kind {
                StrategyKind::PiiRemoval => Strategy::PiiRemoval,
                StrategyKind::EntityHashing => Strategy::EntityHashing(
                    HashKey::new(secret()?.as_encoded_bytes()).map_err(bad_key)?,
                ),
                StrategyKind::SemanticEncryption => {
                    let key = FpeKey::new(secret()?.as_encoded_bytes(), spec.key_rotation_hours)
                        .map_err(bad_key)?;
                    let version = key.current_version();
                    Strategy::SemanticEncryption { key, version }
                }
            };
            rules.push(Rule {
                strategy,
                labels: spec.labels.clone(),
                sensitivity: spec.sensitivity,
            });
        }
        Policy::new(rules).map_err(|e| TrainError::Invalid(format!("context_protection: {e}")))
    }

    /// The guard: the pattern recognizers, and the entity model unless the
    /// section turns it off (installed on first use).
    fn guard(&self) -> Result<Guard> {
        if !self.entity_model {
            return Ok(Guard::new());
        }
        let failed =
            |e: String| TrainError::Invalid(format!("context_protection: entity model: {e}"));
        let cache = pft_fetch::cache_dir().map_err(|e| failed(e.to_string()))?;
        let files = pft_guard::model::install(&cache).map_err(|e| failed(e.to_string()))?;
        let model = files
            .load(rayon::current_num_threads())
            .map_err(|e| failed(e.to_string()))?;
        Ok(Guard::with_model(model))
    }
}

/// What protection did to a dataset: counts per label, never values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProtectionReport {
    /// The strategies, in order of precedence.
    pub strategies: Vec<&'static str>,
    pub entity_model: bool,
    /// Texts scanned (a chat counts each message).
    pub texts: usize,
    /// Texts that had something replaced.
    pub texts_changed: usize,
    /// Label -> strategy -> spans replaced.
    pub replaced: BTreeMap<&'static str, BTreeMap<&'static str, usize>>,
    /// Label -> spans found but left in place (below the sensitivity of
    /// the strategy claiming the label).
    pub left: BTreeMap<&'static str, usize>,
}

/// The guard and policy a run protects its dataset with.
pub struct Protector {
    guard: Guard,
    policy: Policy,
    entity_model: bool,
}

impl Protector {
    /// Reads the secrets first, so a missing one fails before the entity
    /// model is installed or loaded.
    pub fn new(spec: &ContextProtection) -> Result<Protector> {
        let policy = spec.policy()?;
        Ok(Protector {
            guard: spec.guard()?,
            policy,
            entity_model: spec.entity_model,
        })
    }

    /// Strategies no finding can reach (an earlier one claims all their
    /// labels), by their position in the section.
    pub fn unreachable(&self) -> Vec<usize> {
        self.policy.unreachable()
    }

    /// Rewrites `texts` in place and counts what was done.
    pub fn apply(&self, texts: &mut [String]) -> Result<ProtectionReport> {
        let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
        let protected: Vec<Protected> = self
            .guard
            .batch_protect(&borrowed, &self.policy)
            .map_err(|e| TrainError::Invalid(format!("context_protection: {e}")))?;
        let mut report = ProtectionReport {
            strategies: self
                .policy
                .rules()
                .iter()
                .map(|r| r.strategy.name())
                .collect(),
            entity_model: self.entity_model,
            texts: texts.len(),
            ..ProtectionReport::default()
        };
        for (text, p) in texts.iter_mut().zip(protected) {
            if !p.replaced.is_empty() {
                report.texts_changed += 1;
            }
            for r in &p.replaced {
                *report
                    .replaced
                    .entry(r.label.as_str())
                    .or_default()
                    .entry(r.strategy)
                    .or_default() += 1;
            }
            for f in &p.left {
                *report.left.entry(f.label.as_str()).or_default() += 1;
            }
            *text = p.text;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> std::result::Result<ContextProtection, String> {
        let s: ProtectionSection = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        ContextProtection::from_section(s)
    }

    #[test]
    fn the_documented_section_parses() {
        let p = section(
            "strategies:\n  - type: pii_removal\n    sensitivity: high\n  - type: entity_hashing\n    salt: \"${HASH_SALT}\"\n  - type: semantic_encryption\n    key_rotation_hours: 24\n",
        )
        .unwrap();
        assert!(p.entity_model);
        assert_eq!(p.rules.len(), 3);
        assert_eq!(p.rules[0].sensitivity, Sensitivity::High);
        assert_eq!(p.rules[1].secret_env.as_deref(), Some("HASH_SALT"));
        assert_eq!(p.rules[2].secret_env.as_deref(), Some("FPE_KEY"));
        assert_eq!(p.rules[2].key_rotation_hours, 24);
        assert_eq!(p.rules[1].sensitivity, Sensitivity::Medium);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("strategies: []", "lists no strategy"),
            ("strategies:\n  - type: k_anonymization", "pft guard kanon"),
            (
                "strategies:\n  - type: entity_hashing\n    salt: hunter2hunter2hunter2",
                "must name an environment variable",
            ),
            (
                "strategies:\n  - type: pii_removal\n    labels: [PERSN]",
                "'PERSN' is not a label",
            ),
            (
                "strategies:\n  - type: pii_removal\n    sensitivity: extreme",
                "not low, medium or high",
            ),
            (
                "strategies:\n  - type: pii_removal\n    key: \"${K}\"",
                "takes no salt",
            ),
            (
                "strategies:\n  - type: pii_removal\n    colour: red",
                "unknown field",
            ),
        ];
        for (yaml, message) in cases {
            let err = section(yaml).unwrap_err();
            assert!(err.contains(message), "{yaml}: {err}");
        }
    }

    #[test]
    fn texts_are_rewritten_and_counted_by_label_and_strategy() {
        let p = section(
            "model: false\nstrategies:\n  - type: pii_removal\n    labels: [CREDIT_CARD]\n  - type: pii_removal\n    sensitivity: low\n",
        )
        .unwrap();
        let protector = Protector::new(&p).unwrap();
        let mut texts = vec![
            "card 4111 1111 1111 1111, mail ann@example.org".to_string(),
            "nothing to see".to_string(),
            "call 415 555 0142".to_string(),
        ];
        let report = protector.apply(&mut texts).unwrap();
        assert_eq!(texts[0], "card [PAYMENT_CARD], mail [EMAIL]");
        assert_eq!(texts[1], "nothing to see");
        assert_eq!(report.texts, 3);
        assert_eq!(report.replaced["CREDIT_CARD"]["pii_removal"], 1);
        assert_eq!(report.replaced["EMAIL_ADDRESS"]["pii_removal"], 1);
        // Whatever the phone's score, it is either replaced or counted as
        // left: nothing found goes unreported.
        let phone = report
            .replaced
            .get("PHONE_NUMBER")
            .map_or(0, |m| m["pii_removal"])
            + report.left.get("PHONE_NUMBER").copied().unwrap_or(0);
        assert_eq!(phone, 1);
        assert_eq!(
            report.texts_changed,
            1 + usize::from(texts[2] != "call 415 555 0142")
        );
    }
}
