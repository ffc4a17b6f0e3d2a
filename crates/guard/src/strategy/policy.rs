//! Which strategy protects which finding: an ordered list of rules, as a
//! `context_protection` section lists its strategies. A finding goes to
//! the first rule that claims its label (a rule without labels claims
//! every label); that rule's sensitivity decides whether it is replaced.

use super::{rewrite, Rewritten, Strategy};
use crate::finding::{Finding, Label};
use crate::{GuardError, Sensitivity};

pub struct Rule {
    pub strategy: Strategy,
    /// The labels this rule protects; `None`: every label.
    pub labels: Option<Vec<Label>>,
    /// The least evidence a finding needs for this rule to replace it.
    pub sensitivity: Sensitivity,
}

impl Rule {
    fn claims(&self, label: Label) -> bool {
        self.labels.as_ref().is_none_or(|ls| ls.contains(&label))
    }
}

pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// One strategy for every label.
    pub fn single(strategy: Strategy, sensitivity: Sensitivity) -> Policy {
        Policy {
            rules: vec![Rule {
                strategy,
                labels: None,
                sensitivity,
            }],
        }
    }

    /// Rules in order of precedence. At most one may encrypt: a record
    /// carries one key version for `restore`.
    pub fn new(rules: Vec<Rule>) -> Result<Policy, GuardError> {
        if rules.is_empty() {
            return Err(GuardError::Invalid(
                "a protection policy needs at least one strategy".into(),
            ));
        }
        let encrypting = rules
            .iter()
            .filter(|r| matches!(r.strategy, Strategy::SemanticEncryption { .. }))
            .count();
        if encrypting > 1 {
            return Err(GuardError::Invalid(
                "at most one semantic_encryption strategy per policy (restore reads one key version per record)".into(),
            ));
        }
        if let Some(i) = rules
            .iter()
            .position(|r| r.labels.as_ref().is_some_and(Vec::is_empty))
        {
            return Err(GuardError::Invalid(format!(
                "strategy {} lists no labels; omit `labels` to protect every label",
                i + 1
            )));
        }
        Ok(Policy { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rules (0-based) that no finding can reach: every label they claim
    /// is claimed by an earlier rule.
    pub fn unreachable(&self) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&i| {
                !Label::ALL.iter().any(|&label| {
                    self.rules[i].claims(label) && !self.rules[..i].iter().any(|r| r.claims(label))
                })
            })
            .collect()
    }

    /// The sensitivity to scan at: the most eager of the rules'.
    pub fn scan_sensitivity(&self) -> Sensitivity {
        self.rules
            .iter()
            .map(|r| r.sensitivity)
            .min_by(|a, b| a.threshold().total_cmp(&b.threshold()))
            .unwrap_or_default()
    }

    /// The strategy that replaces `f`, if any.
    pub fn strategy_for(&self, f: &Finding) -> Option<&Strategy> {
        let rule = self.rules.iter().find(|r| r.claims(f.label))?;
        (f.score >= rule.sensitivity.threshold()).then_some(&rule.strategy)
    }

    /// The key and version of the encrypting rule, if there is one.
    pub fn encryption(&self) -> Option<(&super::FpeKey, u32)> {
        self.rules.iter().find_map(|r| match &r.strategy {
            Strategy::SemanticEncryption { key, version } => Some((key, *version)),
            _ => None,
        })
    }

    /// `text` with every finding this policy covers replaced. Findings
    /// must be the disjoint, ordered output of a scan of this text.
    pub fn apply(&self, text: &str, findings: &[Finding]) -> Result<Rewritten, GuardError> {
        rewrite(
            text,
            findings
                .iter()
                .filter_map(|f| self.strategy_for(f).map(|s| (f, s))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::HashKey;
    use crate::Guard;

    fn hashing() -> Strategy {
        Strategy::EntityHashing(HashKey::new(b"a salt of sixteen bytes or more").unwrap())
    }

    #[test]
    fn the_first_rule_claiming_a_label_decides() {
        let policy = Policy::new(vec![
            Rule {
                strategy: hashing(),
                labels: Some(vec![Label::EmailAddress]),
                sensitivity: Sensitivity::Medium,
            },
            Rule {
                strategy: Strategy::PiiRemoval,
                labels: None,
                sensitivity: Sensitivity::Medium,
            },
        ])
        .unwrap();
        let text = "mail ann@example.org or call +1 415 555 0142, card 4111 1111 1111 1111";
        let guard = Guard::new();
        let out = guard.protect(text, &policy).unwrap();
        assert!(!out.text.contains("ann@example.org"), "{}", out.text);
        assert!(!out.text.contains("[EMAIL]"), "{}", out.text);
        assert!(out.text.contains("[PAYMENT_CARD]"), "{}", out.text);
        let by: Vec<(&str, &str)> = out
            .replaced
            .iter()
            .map(|r| (r.label.as_str(), r.strategy))
            .collect();
        assert!(by.contains(&("EMAIL_ADDRESS", "entity_hashing")), "{by:?}");
        assert!(by.contains(&("CREDIT_CARD", "pii_removal")), "{by:?}");
        assert!(policy.unreachable().is_empty());
    }

    #[test]
    fn a_rule_below_its_threshold_leaves_the_finding() {
        let text = "call 415 555 0142";
        let guard = Guard::new();
        let found = guard.scan(text, Sensitivity::High).unwrap();
        let score = found.first().map(|f| f.score).unwrap_or(0.0);
        let lenient = Policy::single(Strategy::PiiRemoval, Sensitivity::High);
        let strict = Policy::single(Strategy::PiiRemoval, Sensitivity::Low);
        assert!(lenient
            .apply(text, &found)
            .unwrap()
            .text
            .contains("[PHONE]"));
        let strict_text = strict.apply(text, &found).unwrap().text;
        // Whether the strict rule replaces it follows from the score alone.
        assert_eq!(
            strict_text.contains("[PHONE]"),
            score >= Sensitivity::Low.threshold(),
            "{score}"
        );
    }

    #[test]
    fn shadowed_rules_are_reported_and_bad_policies_refused() {
        let policy = Policy::new(vec![
            Rule {
                strategy: Strategy::PiiRemoval,
                labels: None,
                sensitivity: Sensitivity::High,
            },
            Rule {
                strategy: hashing(),
                labels: None,
                sensitivity: Sensitivity::Low,
            },
        ])
        .unwrap();
        assert_eq!(policy.unreachable(), vec![1]);
        assert_eq!(policy.scan_sensitivity(), Sensitivity::High);
        assert!(Policy::new(vec![]).is_err());
        let empty_labels = Rule {
            strategy: Strategy::PiiRemoval,
            labels: Some(vec![]),
            sensitivity: Sensitivity::Medium,
        };
        assert!(Policy::new(vec![empty_labels]).is_err());
    }
}
