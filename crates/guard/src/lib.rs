//! The context guard: finds PII and secrets in text and protects them.
//!
//! Start with [`Guard::scan`]: every recognizer proposes spans
//! ([`recognizers`]), context words adjust their scores ([`context`]), the
//! sensitivity's threshold filters them, and overlaps are resolved by
//! evidence ([`resolve`]). [`Guard::explain`] returns the same findings
//! with the reasons behind them, and [`Guard::protect`] rewrites the text
//! with a [`strategy`].

pub mod context;
pub mod coref;
pub mod finding;
pub mod kanon;
pub mod model;
pub mod ner;
pub mod recognizers;
pub mod resolve;
pub mod strategy;
pub mod validate;

use rayon::prelude::*;

pub use finding::{Finding, Label, Reason, Tier};
pub use strategy::{Policy, Strategy};

use finding::{Candidate, CodePoints};
use recognizers::Recognizer;

/// How eagerly spans are reported: `High` favours recall (a leaked value
/// costs more than a redacted word), `Low` favours precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sensitivity {
    Low,
    #[default]
    Medium,
    High,
}

impl Sensitivity {
    /// The least score a finding needs.
    pub fn threshold(self) -> f64 {
        match self {
            Sensitivity::Low => 0.7,
            Sensitivity::Medium => 0.5,
            Sensitivity::High => 0.35,
        }
    }

    pub fn parse(s: &str) -> Option<Sensitivity> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Some(Sensitivity::Low),
            "medium" => Some(Sensitivity::Medium),
            "high" => Some(Sensitivity::High),
            _ => None,
        }
    }
}

/// The recognizers and how they are combined.
pub struct Guard {
    recognizers: Vec<Box<dyn Recognizer>>,
    model: Option<ner::NerModel>,
}

impl Default for Guard {
    fn default() -> Self {
        Self::new()
    }
}

impl Guard {
    /// The pattern recognizers alone: no names, places or addresses.
    pub fn new() -> Self {
        Guard {
            recognizers: recognizers::patterns(),
            model: None,
        }
    }

    /// The pattern recognizers and the entity model.
    pub fn with_model(model: ner::NerModel) -> Self {
        Guard {
            model: Some(model),
            ..Guard::new()
        }
    }

    /// The pattern candidates with their context applied, before
    /// thresholds and overlap resolution.
    fn pattern_candidates(&self, text: &str) -> Vec<Candidate> {
        // The word index costs a pass over the text: build it only once a
        // span needs its context.
        let words = std::cell::OnceCell::new();
        let mut all = Vec::new();
        for r in &self.recognizers {
            let from = all.len();
            r.find(text, &mut all);
            if r.context().is_empty() {
                continue;
            }
            for c in &mut all[from..] {
                words
                    .get_or_init(|| context::Words::new(text))
                    .apply(text, c, r.context());
            }
        }
        all
    }

    /// The sensitive spans of `text` at `sensitivity`, in text order, never
    /// overlapping; offsets in code points.
    pub fn scan(&self, text: &str, sensitivity: Sensitivity) -> Result<Vec<Finding>, GuardError> {
        Ok(self.scan_chunk(&[text], sensitivity)?.remove(0))
    }

    /// Scans texts together, so the model batches their windows.
    fn scan_chunk(
        &self,
        texts: &[&str],
        sensitivity: Sensitivity,
    ) -> Result<Vec<Vec<Finding>>, GuardError> {
        let mut found = match &self.model {
            Some(model) => model.detect(texts)?,
            None => vec![Vec::new(); texts.len()],
        };
        let threshold = sensitivity.threshold();
        Ok(texts
            .iter()
            .zip(&mut found)
            .map(|(text, candidates)| {
                candidates.extend(self.pattern_candidates(text));
                candidates.retain(|c| c.score >= threshold);
                let kept = resolve::resolve(std::mem::take(candidates));
                let mut kept = coref::extend_names(text, kept);
                kept.retain(|c| c.score >= threshold);
                to_findings(text, resolve::join_addresses(text, kept))
            })
            .collect())
    }

    /// The findings at the highest sensitivity, each with its reason: the
    /// pattern, the validator, the context words and the score before
    /// context.
    pub fn explain(&self, text: &str) -> Result<Vec<Finding>, GuardError> {
        self.scan(text, Sensitivity::High)
    }

    /// Scans `text` and rewrites what `policy` covers (for one strategy
    /// at one sensitivity, [`Policy::single`]).
    pub fn protect(&self, text: &str, policy: &Policy) -> Result<Protected, GuardError> {
        let findings = self.scan(text, policy.scan_sensitivity())?;
        Protected::new(text, findings, policy)
    }

    /// [`Guard::scan`] over many texts, in parallel, in input order.
    pub fn batch_scan(
        &self,
        texts: &[&str],
        sensitivity: Sensitivity,
    ) -> Result<Vec<Vec<Finding>>, GuardError> {
        let chunks: Vec<Vec<Vec<Finding>>> = texts
            .par_chunks(CHUNK)
            .map(|chunk| self.scan_chunk(chunk, sensitivity))
            .collect::<Result<_, _>>()?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// [`Guard::protect`] over many texts, in parallel, in input order.
    pub fn batch_protect(
        &self,
        texts: &[&str],
        policy: &Policy,
    ) -> Result<Vec<Protected>, GuardError> {
        let findings = self.batch_scan(texts, policy.scan_sensitivity())?;
        texts
            .par_iter()
            .zip(findings)
            .map(|(text, findings)| Protected::new(text, findings, policy))
            .collect()
    }
}

/// Texts scanned together by one worker in the batch APIs: enough for
/// the model to fill its batches, few enough to share work between cores.
const CHUNK: usize = 32;

fn to_findings(text: &str, kept: Vec<Candidate>) -> Vec<Finding> {
    let mut offsets = Vec::with_capacity(kept.len() * 2);
    for c in &kept {
        offsets.push(c.start);
        offsets.push(c.end);
    }
    // Resolved spans are disjoint and in order, so the offsets are sorted.
    let cps = CodePoints::new(text).convert_sorted(&offsets);
    kept.into_iter()
        .enumerate()
        .map(|(i, c)| Finding {
            start: cps[2 * i],
            end: cps[2 * i + 1],
            label: c.label,
            score: c.score,
            recognizer: c.recognizer,
            bytes: c.start..c.end,
            reason: c.reason,
        })
        .collect()
}

/// A protected text, what was replaced in the original, and where the
/// replacements are in the protected text (`findings[i]` became
/// `replaced[i]`).
#[derive(Clone, Debug)]
pub struct Protected {
    pub text: String,
    pub findings: Vec<Finding>,
    pub replaced: Vec<strategy::Replaced>,
    /// Found at the policy's scan sensitivity but left in place: below
    /// the threshold of the rule that claims their label, or claimed by
    /// none.
    pub left: Vec<Finding>,
}

impl Protected {
    /// `text` rewritten by `policy` at the `findings` a scan of it
    /// returned.
    fn new(text: &str, findings: Vec<Finding>, policy: &Policy) -> Result<Self, GuardError> {
        let rewritten = policy.apply(text, &findings)?;
        let (findings, left) = findings
            .into_iter()
            .partition(|f| policy.strategy_for(f).is_some());
        Ok(Protected {
            text: rewritten.text,
            replaced: rewritten.replaced,
            findings,
            left,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example() {
        let g = Guard::new();
        let out = g
            .protect(
                "Process payment for John Doe, card 4111-1111-1111-1111",
                &Policy::single(Strategy::PiiRemoval, Sensitivity::Medium),
            )
            .unwrap();
        assert!(out.text.ends_with("card [PAYMENT_CARD]"), "{}", out.text);
    }

    #[test]
    fn replacements_report_code_points_in_the_protected_text() {
        let g = Guard::new();
        let text = "Grüße: jürgen@example.com, ÿ 4111-1111-1111-1111";
        let out = g
            .protect(
                text,
                &Policy::single(Strategy::PiiRemoval, Sensitivity::Medium),
            )
            .unwrap();
        let chars: Vec<char> = out.text.chars().collect();
        let seen: Vec<String> = out
            .replaced
            .iter()
            .map(|r| chars[r.start..r.end].iter().collect())
            .collect();
        assert_eq!(seen, ["[EMAIL]", "[PAYMENT_CARD]"]);
        for r in &out.replaced {
            assert_eq!(out.text[r.bytes.clone()].chars().count(), r.end - r.start);
        }
    }

    #[test]
    fn offsets_are_code_points() {
        let g = Guard::new();
        let text = "Grüße von Jürgen: jürgen@example.com";
        let f = g.scan(text, Sensitivity::Medium).unwrap();
        assert_eq!(f.len(), 1);
        let chars: Vec<char> = text.chars().collect();
        let found: String = chars[f[0].start..f[0].end].iter().collect();
        assert_eq!(found, "jürgen@example.com");
        assert_eq!(&text[f[0].bytes.clone()], "jürgen@example.com");
    }
}
