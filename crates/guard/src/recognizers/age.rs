//! Ages: a number of years with the words that make it an age ("a
//! 44-year-old", "turned 24 years old", "at the age of 37", "aged 58",
//! "I'll turn 65"). The span is the number, as annotators mark it.

use regex::Regex;

use super::{candidate, compile, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct Age {
    after: Regex,
    before: Regex,
}

impl Age {
    pub(crate) fn new() -> Self {
        Age {
            after: compile(
                r"(?i)(?-u:\b)(\d{1,3})(?:\s|-)?(?:years?|yrs?)(?:\s|-)?old(?-u:\b)|(?-u:\b)(\d{1,3})\s?(?:y/o|yo)(?-u:\b)",
            ),
            before: compile(
                r"(?i)(?-u:\b)(?:aged|age of|age:|age is|turned|turning|i'?ll turn|will turn|i am|i'm)\s+(\d{1,3})(?-u:\b)",
            ),
        }
    }
}

impl Recognizer for Age {
    fn name(&self) -> &'static str {
        "age"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        let from = out.len();
        for (re, pattern, score, phrase_first) in [
            (&self.after, "N years old", 0.85, false),
            (&self.before, "age phrase + N", 0.6, true),
        ] {
            for c in re.captures_iter(text) {
                let Some(m) = c.get(1).or_else(|| c.get(2)) else {
                    continue;
                };
                if m.as_str().parse::<u32>().map_or(true, |n| n > 125) {
                    continue;
                }
                // "I am 5 minutes away": a number with a unit is not an age.
                let next = text[m.end()..]
                    .trim_start()
                    .split(|ch: char| !ch.is_alphabetic())
                    .next()
                    .unwrap_or("");
                if phrase_first && is_unit(next) {
                    continue;
                }
                if out[from..].iter().any(|c| c.start == m.start()) {
                    continue;
                }
                out.push(candidate(
                    self.name(),
                    m.range(),
                    Label::Age,
                    score,
                    Tier::Pattern,
                    pattern,
                    None,
                ));
            }
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &["age", "aged", "old", "birthday", "born"]
    }
}

fn is_unit(word: &str) -> bool {
    let w = word.to_lowercase();
    let w = w.strip_suffix('s').unwrap_or(&w);
    matches!(
        w,
        "second"
            | "sec"
            | "minute"
            | "min"
            | "hour"
            | "hr"
            | "day"
            | "week"
            | "month"
            | "degree"
            | "percent"
            | "time"
            | "people"
            | "person"
            | "item"
            | "km"
            | "mile"
            | "meter"
            | "metre"
            | "kg"
            | "lb"
            | "pound"
            | "dollar"
            | "euro"
            | "page"
            | "point"
            | "step"
            | "am"
            | "pm"
            | "o'clock"
            | "of"
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn ages() {
        let r = Age::new();
        assert_eq!(found(&r, "Patient is a 44-year-old male"), ["44"]);
        assert_eq!(found(&r, "He just turned 24 years old"), ["24"]);
        assert_eq!(found(&r, "retired at the age of 37 after"), ["37"]);
        assert_eq!(
            found(&r, "It's my birthday on the weekend. I'll turn 65."),
            ["65"]
        );
        assert_eq!(found(&r, "Mr. Harvey is a 49 year old man"), ["49"]);
    }

    #[test]
    fn numbers_that_are_not_ages() {
        let r = Age::new();
        assert!(found(
            &r,
            "I am 5 minutes away; turned 90 degrees; a 400 years old castle"
        )
        .is_empty());
    }
}
