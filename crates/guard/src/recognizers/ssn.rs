//! US Social Security numbers: `AAA-GG-SSSS` (or with spaces or dots, the
//! same separator twice), within the ranges the SSA issues. Nine bare
//! digits are only a weak pattern: they need a context word to count.

use regex::Regex;

use super::{candidate, compile, isolated, Recognizer};
use crate::finding::{Candidate, Label, Tier};
use crate::validate;

pub struct UsSsn {
    re: Regex,
}

impl UsSsn {
    pub(crate) fn new() -> Self {
        UsSsn {
            re: compile(r"([0-9]{3})([- .]?)([0-9]{2})([- .]?)([0-9]{4})"),
        }
    }
}

impl Recognizer for UsSsn {
    fn name(&self) -> &'static str {
        "us_ssn"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for c in self.re.captures_iter(text) {
            let Some(m) = c.get(0) else { continue };
            if !isolated(text, m.start(), m.end(), b"-.") {
                continue;
            }
            let part = |i: usize| c.get(i).map_or("", |g| g.as_str());
            let (sep1, sep2) = (part(2), part(4));
            if sep1 != sep2 {
                continue;
            }
            let num = |i: usize| part(i).parse::<u32>().unwrap_or(0);
            if !validate::ssn_ranges(num(1), num(3), num(5)) {
                continue;
            }
            let (score, pattern) = if sep1.is_empty() {
                (0.3, "nine digits")
            } else {
                (0.85, "AAA-GG-SSSS")
            };
            out.push(candidate(
                self.name(),
                m.range(),
                Label::UsSsn,
                score,
                Tier::Validated,
                pattern,
                Some("SSA area, group and serial ranges"),
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &["ssn", "social", "security", "ss#", "ssid", "taxpayer"]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_separated_numbers_in_issued_ranges() {
        let r = UsSsn::new();
        assert_eq!(
            found(
                &r,
                "SSN 151-14-2224; also 009 49 8402, not 666-12-3456 or 123-00-4567"
            ),
            ["151-14-2224", "009 49 8402"]
        );
    }

    #[test]
    fn mixed_separators_and_longer_numbers_are_not_ssns() {
        let r = UsSsn::new();
        assert!(found(&r, "151-14 2224 and 1151-14-2224 and 151-14-22245").is_empty());
    }
}
