//! Dates and date-times: ISO 8601 (with a time part, fractions and zones),
//! numeric day/month/year forms, written months ("5 March 2021",
//! "March 5, 2021", "Mar 2021"), and weekdays. Numeric dates are checked
//! (month 1-12, day 1-31); a lone year counts only with a context word.

use regex::Regex;

use super::{candidate, compile, isolated, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct DateTime {
    iso: Regex,
    numeric: Regex,
    written: Regex,
    weekday: Regex,
    year: Regex,
}

const MONTH: &str = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?";

impl DateTime {
    pub(crate) fn new() -> Self {
        DateTime {
            iso: compile(
                r"([12][0-9]{3})-([01][0-9])-([0-3][0-9])(?:[T ][0-2][0-9]:[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9})?)?(?:Z|[+-][0-2][0-9]:?[0-5][0-9])?)?",
            ),
            numeric: compile(r"([0-9]{1,2})([/.-])([0-9]{1,2})([/.-])((?:1[89]|20)?[0-9]{2})"),
            written: compile(&format!(
                r"(?i)(?-u:\b)(?:[0-3]?[0-9](?:st|nd|rd|th)?(?: of)? {MONTH},? (?:1[89]|20)[0-9]{{2}}|{MONTH} [0-3]?[0-9](?:st|nd|rd|th)?,? (?:1[89]|20)[0-9]{{2}}|{MONTH} (?:1[89]|20)[0-9]{{2}}|[0-3]?[0-9](?:st|nd|rd|th)? (?:of )?{MONTH}|{MONTH} [0-3]?[0-9](?:st|nd|rd|th))(?-u:\b)"
            )),
            weekday: compile(
                r"(?i)(?-u:\b)(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?(?-u:\b)",
            ),
            year: compile(
                r"(?i)((?-u:\b)(?:in|during|since|until|by|from|before|after|of|circa|year)\s+)?(?-u:\b)(?:1[89]|20)[0-9]{2}(?-u:\b)",
            ),
        }
    }
}

impl Recognizer for DateTime {
    fn name(&self) -> &'static str {
        "date_time"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        let name = self.name();
        let push = |out: &mut Vec<Candidate>,
                    r: std::ops::Range<usize>,
                    score,
                    tier,
                    pattern,
                    validator| {
            out.push(candidate(
                name,
                r,
                Label::DateTime,
                score,
                tier,
                pattern,
                validator,
            ));
        };
        for c in self.iso.captures_iter(text) {
            let Some(m) = c.get(0) else { continue };
            let num = |i: usize| {
                c.get(i)
                    .map_or(0, |g| g.as_str().parse::<u32>().unwrap_or(0))
            };
            if (1..=12).contains(&num(2))
                && (1..=31).contains(&num(3))
                && isolated(text, m.start(), m.end(), b"")
            {
                push(
                    out,
                    m.range(),
                    0.95,
                    Tier::Validated,
                    "ISO 8601",
                    Some("month and day ranges"),
                );
            }
        }
        for c in self.numeric.captures_iter(text) {
            let Some(m) = c.get(0) else { continue };
            let sep = |i: usize| c.get(i).map_or("", |g| g.as_str());
            let num = |i: usize| {
                c.get(i)
                    .map_or(0, |g| g.as_str().parse::<u32>().unwrap_or(0))
            };
            let (a, b) = (num(1), num(3));
            // Month/day (US) or day/month: one of the two readings holds.
            let plausible = (1..=31).contains(&a) && (1..=31).contains(&b) && (a <= 12 || b <= 12);
            if sep(2) == sep(4) && plausible && isolated(text, m.start(), m.end(), b"./-") {
                push(
                    out,
                    m.range(),
                    0.85,
                    Tier::Validated,
                    "d/m/y or m/d/y",
                    Some("day and month ranges"),
                );
            }
        }
        for m in self.written.find_iter(text) {
            push(out, m.range(), 0.85, Tier::Pattern, "written month", None);
        }
        for m in self.weekday.find_iter(text) {
            push(out, m.range(), 0.6, Tier::Pattern, "weekday", None);
        }
        for c in self.year.captures_iter(text) {
            let Some(m) = c.get(0) else { continue };
            // A year after a preposition of time is a date; alone it needs
            // a context word such as "born".
            let (start, score, pattern) = match c.get(1) {
                Some(p) => (p.end(), 0.6, "preposition and year"),
                None => (m.start(), 0.2, "year"),
            };
            if isolated(text, start, m.end(), b"-/.:") {
                push(out, start..m.end(), score, Tier::Pattern, pattern, None);
            }
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &[
            "born",
            "birth",
            "birthday",
            "dob",
            "date",
            "since",
            "year",
            "until",
            "expires",
            "expiry",
            "graduated",
            "joined",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_iso_numeric_written_and_weekdays() {
        let r = DateTime::new();
        let f = found(&r, "At 2005-04-01 14:44:46.994600, on 8/2/1951, 5 March 2021 and March 5, 2021; see you Monday.");
        for want in [
            "2005-04-01 14:44:46.994600",
            "8/2/1951",
            "5 March 2021",
            "March 5, 2021",
            "Monday",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
        }
    }

    #[test]
    fn impossible_dates_are_not_found() {
        let r = DateTime::new();
        let mut out = Vec::new();
        r.find("2005-13-01 and 40/40/2000 and 1-2/2020", &mut out);
        // Only the lone years remain, as weak candidates that need context.
        assert!(
            out.iter()
                .all(|c| c.reason.pattern == "year" && c.score < 0.35),
            "{out:?}"
        );
    }
}
