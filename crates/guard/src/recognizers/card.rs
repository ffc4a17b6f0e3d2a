//! Payment card numbers: 12 to 19 digits, optionally grouped by spaces or
//! hyphens, with a known scheme's prefix and length (Visa, Mastercard
//! including the 2-series, Amex, Discover, JCB, Diners, UnionPay, Maestro,
//! Mir) and a valid Luhn check digit. Other Luhn-valid numbers of 13 to 19
//! digits are weak candidates that need a context word ("card", ...).

use regex::Regex;

use super::{candidate, compile, isolated, Recognizer};
use crate::finding::{Candidate, Label, Tier};
use crate::validate;

pub struct PaymentCard {
    re: Regex,
}

impl PaymentCard {
    pub(crate) fn new() -> Self {
        PaymentCard {
            re: compile(r"[0-9](?:[ -]?[0-9]){11,18}"),
        }
    }
}

impl Recognizer for PaymentCard {
    fn name(&self) -> &'static str {
        "payment_card"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.re.find_iter(text) {
            let s = m.as_str();
            if !isolated(text, m.start(), m.end(), b".") {
                continue;
            }
            // One separator style throughout, as cards are printed.
            if s.contains(' ') && s.contains('-') {
                continue;
            }
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            if !validate::luhn(&digits) {
                continue;
            }
            // A Luhn-valid number outside the published issuer ranges (test
            // ranges, new or private-label issuers) needs a context word.
            let (score, tier, validator) = match validate::card_scheme(&digits) {
                Some(_) => (1.0, Tier::Validated, "scheme prefix and length, Luhn"),
                None if digits.len() >= 13 => (0.3, Tier::Pattern, "Luhn"),
                None => continue,
            };
            out.push(candidate(
                self.name(),
                m.range(),
                Label::CreditCard,
                score,
                tier,
                "12-19 digits, grouped",
                Some(validator),
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &[
            "card",
            "credit",
            "debit",
            "visa",
            "mastercard",
            "amex",
            "payment",
            "cc",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_grouped_and_plain_numbers() {
        let r = PaymentCard::new();
        assert_eq!(
            found(
                &r,
                "card 4111-1111-1111-1111, amex 3782 822463 10005, 2223003122003222."
            ),
            [
                "4111-1111-1111-1111",
                "3782 822463 10005",
                "2223003122003222"
            ]
        );
        assert_eq!(
            found(&r, "my credit card number is 4391353746182?"),
            ["4391353746182"]
        );
    }

    #[test]
    fn rejects_bad_checksums_and_unknown_schemes() {
        let r = PaymentCard::new();
        assert!(found(&r, "4111 1111 1111 1112 and 1234567890123456").is_empty());
        assert!(found(&r, "order 4111-1111 1111-1111").is_empty());
        // Part of a longer number or a decimal.
        assert!(found(&r, "x4111111111111111 and 0.4111111111111111").is_empty());
    }
}
