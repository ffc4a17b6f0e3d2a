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

/// Compiled patterns the phone-number metadata keeps. The crate's
/// default of 100 is fewer than one North American number needs: its
/// validation tries the patterns of each of the 25 regions sharing +1,
/// so with the default cache nearly every validation recompiles them
/// (measured: 18 µs per grouped candidate on the development corpus).
/// All the metadata's patterns fit in this many.
const METADATA_REGEX_CACHE: usize = 8192;

impl Phone {
    pub(crate) fn new() -> Self {
        static ENLARGE: std::sync::Once = std::sync::Once::new();
        ENLARGE.call_once(|| {
            if let Ok(mut cache) = phonenumber::metadata::DATABASE.cache().lock() {
                *cache = regex_cache::RegexCache::new(METADATA_REGEX_CACHE);
            }
        });
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
        Some(Id::US)
    };
    phonenumber::parse(region, s).is_ok_and(|n| phonenumber::is_valid(&n))
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
