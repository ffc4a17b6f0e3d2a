//! International bank account numbers for every country in the SWIFT
//! registry: country code, check digits, the country's length, mod-97.

use regex::Regex;

use super::{candidate, compile, isolated, Recognizer};
use crate::finding::{Candidate, Label, Tier};
use crate::validate;

pub struct Iban {
    re: Regex,
}

impl Iban {
    pub(crate) fn new() -> Self {
        Iban {
            // Grouped in fours (as printed) or compact.
            re: compile(
                r"(?i)[a-z]{2}[0-9]{2}(?:(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?|[a-z0-9]{11,30})",
            ),
        }
    }
}

impl Recognizer for Iban {
    fn name(&self) -> &'static str {
        "iban"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.re.find_iter(text) {
            if !isolated(text, m.start(), m.end(), b"") || !validate::iban(m.as_str()) {
                continue;
            }
            out.push(candidate(
                self.name(),
                m.range(),
                Label::IbanCode,
                1.0,
                Tier::Validated,
                "country, check digits, account",
                Some("registry length, mod-97"),
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &["iban", "bank", "account", "transfer", "wire"]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_compact_grouped_and_lowercase() {
        let r = Iban::new();
        assert_eq!(
            found(&r, "IBAN GB82 WEST 1234 5698 7654 32, DE89370400440532013000 and gb82west12345698765432."),
            ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "gb82west12345698765432"]
        );
    }

    #[test]
    fn rejects_bad_check_digits() {
        assert!(found(&Iban::new(), "GB83WEST12345698765432").is_empty());
    }
}
