//! US driver licence numbers. State formats (one or two letters and 4 to
//! 14 digits, or 7 to 9 digits alone) overlap with every other identifier,
//! so a match is a weak pattern that counts only with a context word
//! ("driver", "licence", "DL") nearby.

use regex::Regex;

use super::{candidate, compile, isolated, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct UsDriverLicense {
    re: Regex,
}

impl UsDriverLicense {
    pub(crate) fn new() -> Self {
        UsDriverLicense {
            re: compile(
                r"(?i)[a-z]{1,2}[0-9]{4,14}|[0-9]{7,9}|[a-z][0-9]{3}-[0-9]{3}-[0-9]{2}-[0-9]{3}-[0-9]",
            ),
        }
    }
}

impl Recognizer for UsDriverLicense {
    fn name(&self) -> &'static str {
        "us_driver_license"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.re.find_iter(text) {
            if !isolated(text, m.start(), m.end(), b"-") {
                continue;
            }
            out.push(candidate(
                self.name(),
                m.range(),
                Label::UsDriverLicense,
                0.1,
                Tier::Pattern,
                "state licence formats",
                None,
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &[
            "driver", "driver's", "drivers", "license", "licence", "dl", "dmv", "permit",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn proposes_state_formats() {
        assert_eq!(
            found(&UsDriverLicense::new(), "licence D1234567, 123456789"),
            ["D1234567", "123456789"]
        );
    }
}
