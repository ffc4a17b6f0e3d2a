//! Redaction strategies (the product's `RedactionStrategy`): what replaces
//! each finding.

mod fpe;
mod hashing;

pub use fpe::{Alphabet, FpeKey};
pub use hashing::HashKey;

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
    /// `text` with every finding replaced. Findings must be the disjoint,
    /// ordered output of a scan of this text.
    pub fn apply(&self, text: &str, findings: &[Finding]) -> Result<Rewritten, GuardError> {
        let mut out = String::with_capacity(text.len());
        let mut replaced = Vec::with_capacity(findings.len());
        let mut at = 0;
        // Code points written so far, counted as the output grows.
        let mut chars = 0;
        for f in findings {
            let r = f.bytes.clone();
            if r.start < at || r.end > text.len() {
                return Err(GuardError::Invalid(
                    "findings overlap or lie outside the text they were scanned from".into(),
                ));
            }
            let kept = &text[at..r.start];
            out.push_str(kept);
            chars += kept.chars().count();
            let value = &text[r.clone()];
            let start = out.len();
            let mut alphabet = None;
            match self {
                Strategy::PiiRemoval => out.push_str(f.label.placeholder()),
                Strategy::EntityHashing(key) => out.push_str(&key.pseudonym(f.label, value)),
                Strategy::SemanticEncryption { key, version } => {
                    match key.encrypt(*version, f.label, value) {
                        Some((cipher, a)) => {
                            out.push_str(&cipher);
                            alphabet = Some(a);
                        }
                        // Too short to encrypt safely: not reversible.
                        None => out.push_str(f.label.placeholder()),
                    }
                }
            }
            let written = out[start..].chars().count();
            replaced.push(Replaced {
                start: chars,
                end: chars + written,
                bytes: start..out.len(),
                label: f.label,
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
