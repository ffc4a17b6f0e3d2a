//! Phone numbers in national and international formats: digit groups
//! joined by spaces, dots, hyphens or brackets, 7 to 15 digits (ITU-T
//! E.164's maximum), an optional extension. A number that the `phonenumber`
//! crate (libphonenumber's metadata) parses as valid, internationally or
//! for the US, is validated; any other phone-shaped number is only a
//! pattern and needs a context word at the stricter sensitivities.

use phonenumber::country::Id;
use regex::Regex;

use super::{candidate, compile, isolated, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct Phone {
    re: Regex,
}

impl Phone {
    pub(crate) fn new() -> Self {
        Phone {
            re: compile(
                r"(?i)(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,12}(?:(?:[ .-]|[ .-]?\([0-9]{1,4}\)[ .-]?)[0-9]{1,8}){0,5}(?:[ ]?(?:x|ext\.?|extension)[ ]?[0-9]{1,6})?",
            ),
        }
    }
}

fn valid(s: &str) -> bool {
    let region = if s.starts_with('+') {
        None
    } else {
        if !could_be_us(s) {
            return false;
        }
        Some(Id::US)
    };
    phonenumber::parse(region, s).is_ok_and(|n| phonenumber::is_valid(&n))
}

/// Whether a number without `+` could be a valid US (NANP) number:
/// ten digits (`[2-9]XX [2-9]XX XXXX`), eleven with a leading 1, or an
/// international number after the US exit code 011. A necessary condition
/// only, checked before the metadata because libphonenumber's parse costs
/// tens of microseconds and most digit groups in text fail this cheaply.
fn could_be_us(s: &str) -> bool {
    // The extension ("x42", "ext. 42") is not part of the number.
    let number = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or(s, |at| &s[..at]);
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    let national = match digits.as_slice() {
        [b'0', b'1', b'1', ..] => return true,
        [b'1', rest @ ..] if rest.len() == 10 => rest,
        all => all,
    };
    national.len() == 10 && national[0] >= b'2' && national[3] >= b'2'
}

impl Recognizer for Phone {
    fn name(&self) -> &'static str {
        "phone"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.re.find_iter(text) {
            let s = m.as_str();
            let digits = s.bytes().filter(u8::is_ascii_digit).count();
            if !(6..=15).contains(&digits) || !isolated(text, m.start(), m.end(), b"-./") {
                continue;
            }
            // Bare runs of digits are ids and amounts far more often than
            // phone numbers, and six digits are a short local number at
            // best: both count only with a context word ("call", "fax").
            let grouped = s
                .bytes()
                .any(|b| matches!(b, b' ' | b'-' | b'.' | b'(' | b'+'));
            let (score, tier, validator) = match (grouped, digits >= 7 && valid(s)) {
                (true, true) => (0.75, Tier::Validated, Some("libphonenumber metadata")),
                (true, false) if digits >= 7 => (0.4, Tier::Pattern, None),
                (false, true) => (0.3, Tier::Validated, Some("libphonenumber metadata")),
                _ => (0.15, Tier::Pattern, None),
            };
            out.push(candidate(
                self.name(),
                m.range(),
                Label::PhoneNumber,
                score,
                tier,
                "grouped digits",
                validator,
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &[
            "phone",
            "telephone",
            "tel",
            "call",
            "mobile",
            "cell",
            "fax",
            "office",
            "number",
            "contact",
            "reach",
            "dial",
            "whatsapp",
            "landline",
            "home",
            "work",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_national_and_international_formats() {
        let r = Phone::new();
        for p in [
            "+41 (0)44 740 12 66",
            "641-938-4469x7195",
            "+41 30 060 21 46",
            "(91) 4696-3487",
            "0739-9433570",
            "(07) 4948 9275",
            "+1 (415) 555-2671",
            "415.555.2671",
        ] {
            assert_eq!(found(&r, &format!("call {p} today")), [p], "{p}");
        }
    }

    #[test]
    fn validated_only_when_the_metadata_agrees() {
        let r = Phone::new();
        let mut out = Vec::new();
        r.find("+1 415 555 2671 or 51-41-72-48", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].reason.tier, Tier::Validated);
        assert_eq!(out[1].reason.tier, Tier::Pattern);
    }

    proptest::proptest! {
        /// The cheap US pre-check never rejects what the metadata accepts.
        #[test]
        fn the_us_precheck_only_rejects_invalid_numbers(
            digits in "[0-9]{7,12}",
            sep in proptest::sample::select(vec!["", " ", "-", "."]),
            ext in proptest::option::of("[0-9]{1,4}"),
        ) {
            let grouped: String = digits
                .as_bytes()
                .chunks(3)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(sep);
            let s = match ext {
                Some(e) => format!("{grouped} x{e}"),
                None => grouped,
            };
            let by_metadata = phonenumber::parse(Some(Id::US), &s)
                .is_ok_and(|n| phonenumber::is_valid(&n));
            if by_metadata {
                proptest::prop_assert!(could_be_us(&s), "{s}");
            }
        }
    }

    #[test]
    fn the_us_precheck_accepts_us_shapes_only() {
        assert!(could_be_us("415-555-2671"));
        assert!(could_be_us("1 (415) 555-2671 ext. 12"));
        assert!(could_be_us("011 44 20 7946 0958"));
        assert!(!could_be_us("0739-9433570"));
        assert!(!could_be_us("155-555-2671"));
        assert!(!could_be_us("51-41-72-48"));
    }

    #[test]
    fn plain_digit_runs_and_short_numbers_are_weak() {
        let mut out = Vec::new();
        Phone::new().find(
            "order 4155552671 shipped, code 66 79 29, 12 items",
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|c| c.score <= 0.3));
    }
}
