//! Redaction strategies (the product's `RedactionStrategy`): what replaces
//! each finding.

mod fpe;
mod hashing;
mod policy;

pub use fpe::{Alphabet, FpeKey};
pub use hashing::HashKey;
pub use policy::{Policy, Rule};

use crate::finding::{Finding, Label};
use crate::GuardError;

pub enum Strategy {
    /// `PII_REMOVAL`: typed placeholders such as `[PERSON]`.
    PiiRemoval,
    /// `ENTITY_HASHING`: keyed pseudonyms, the same for the same value
    /// under the same key.
    EntityHashing(HashKey),
    /// `SEMANTIC_ENCRYPTION`: format-preserving encryption under the key of
    /// `version`, reversible with [`restore`].
    SemanticEncryption { key: FpeKey, version: u32 },
}

/// Where a replacement lies in the rewritten text.
#[derive(Clone, Debug, PartialEq)]
pub struct Replaced {
    /// Offsets in the rewritten text in code points, end exclusive (as
    /// findings report theirs).
    pub start: usize,
    pub end: usize,
    /// The same range in bytes.
    pub bytes: std::ops::Range<usize>,
    pub label: Label,
    /// [`Strategy::name`] of what replaced it.
    pub strategy: &'static str,
    /// For encrypted values, the alphabet [`restore`] needs; `None` for
    /// placeholders and pseudonyms, which nothing restores.
    pub alphabet: Option<Alphabet>,
}

/// A rewritten text and where its replacements are.
#[derive(Clone, Debug, PartialEq)]
pub struct Rewritten {
    pub text: String,
    pub replaced: Vec<Replaced>,
}

impl Strategy {
    /// The strategy's name in configuration files and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::PiiRemoval => "pii_removal",
            Strategy::EntityHashing(_) => "entity_hashing",
            Strategy::SemanticEncryption { .. } => "semantic_encryption",
        }
    }

    /// What replaces `value`, and the alphabet [`restore`] needs where it
    /// can be decrypted.
    fn replacement(&self, label: Label, value: &str) -> (String, Option<Alphabet>) {
        match self {
            Strategy::PiiRemoval => (label.placeholder().to_owned(), None),
            Strategy::EntityHashing(key) => (key.pseudonym(label, value), None),
            Strategy::SemanticEncryption { key, version } => {
                match key.encrypt(*version, label, value) {
                    Some((cipher, alphabet)) => (cipher, Some(alphabet)),
                    // Too short to encrypt safely: not reversible.
                    None => (label.placeholder().to_owned(), None),
                }
            }
        }
    }
}

/// `text` with each finding that has a strategy replaced by it. Findings
/// must be the disjoint, ordered output of a scan of this text.
fn rewrite<'a>(
    text: &str,
    findings: impl Iterator<Item = (&'a Finding, &'a Strategy)>,
) -> Result<Rewritten, GuardError> {
    let mut out = String::with_capacity(text.len());
    let mut replaced = Vec::new();
    let mut at = 0;
    // Code points written so far, counted as the output grows.
    let mut chars = 0;
    for (f, strategy) in findings {
        let r = f.bytes.clone();
        if r.start < at || r.end > text.len() {
            return Err(GuardError::Invalid(
                "findings overlap or lie outside the text they were scanned from".into(),
            ));
        }
        let kept = &text[at..r.start];
        out.push_str(kept);
        chars += kept.chars().count();
        let (replacement, alphabet) = strategy.replacement(f.label, &text[r.clone()]);
        let start = out.len();
        out.push_str(&replacement);
        let written = replacement.chars().count();
        replaced.push(Replaced {
            start: chars,
            end: chars + written,
            bytes: start..out.len(),
            label: f.label,
            strategy: strategy.name(),
            alphabet,
        });
        chars += written;
        at = r.end;
    }
    out.push_str(&text[at..]);
    Ok(Rewritten {
        text: out,
        replaced,
    })
}

/// The original of a text protected with `SemanticEncryption` under key
/// `version`: each encrypted replacement decrypted in place (they keep
/// their byte length, so positions hold); placeholders stay.
pub fn restore(
    key: &FpeKey,
    version: u32,
    text: &str,
    replaced: &[Replaced],
) -> Result<String, GuardError> {
    let mut out = text.to_string();
    for r in replaced {
        let Some(alphabet) = r.alphabet else { continue };
        let cipher = text.get(r.bytes.clone()).ok_or_else(|| {
            GuardError::Invalid(format!(
                "encrypted span {}..{} is not within the text (was the text edited?)",
                r.bytes.start, r.bytes.end
            ))
        })?;
        let plain = key.decrypt(version, r.label, alphabet, cipher)?;
        out.replace_range(r.bytes.clone(), &plain);
    }
    Ok(out)
}
