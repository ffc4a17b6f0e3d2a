//! Redaction strategies (the product's `RedactionStrategy`): what replaces
//! each finding.

mod hashing;

pub use hashing::HashKey;

use crate::finding::Finding;
use crate::GuardError;

pub enum Strategy {
    /// `PII_REMOVAL`: typed placeholders such as `[PERSON]`.
    PiiRemoval,
    /// `ENTITY_HASHING`: keyed pseudonyms, the same for the same value
    /// under the same key.
    EntityHashing(HashKey),
}

impl Strategy {
    /// `text` with every finding replaced. Findings must be the disjoint,
    /// ordered output of a scan of this text.
    pub fn apply(&self, text: &str, findings: &[Finding]) -> Result<String, GuardError> {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in findings {
            let r = f.bytes.clone();
            if r.start < at || r.end > text.len() {
                return Err(GuardError::Invalid(
                    "findings overlap or lie outside the text they were scanned from".into(),
                ));
            }
            out.push_str(&text[at..r.start]);
            let value = &text[r.clone()];
            match self {
                Strategy::PiiRemoval => out.push_str(f.label.placeholder()),
                Strategy::EntityHashing(key) => out.push_str(&key.pseudonym(f.label, value)),
            }
            at = r.end;
        }
        out.push_str(&text[at..]);
        Ok(out)
    }
}
