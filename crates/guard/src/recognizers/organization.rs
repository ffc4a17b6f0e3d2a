//! Organizations named with a legal form: "Saul Centers Inc.", "Greene
//! King plc", "TOBISHIMA CORPORATION", "Aluminum Corporation of China
//! Limited". The name is the run of words before the legal form, back to
//! a function word, a line break or punctuation; in text that is not all
//! lower case, leading lower-case words are not part of it ("work for SPX
//! Corporation").
//!
//! Unambiguous legal forms (Inc, Ltd, GmbH, plc, ...) count in any case,
//! so lower-cased text is covered; words that are also common nouns
//! (Group, Holdings, Bank, Fund) count only capitalised and after a
//! capitalised name word.

use regex::Regex;

use super::{candidate, compile, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct Organization {
    legal: Regex,
    generic: Regex,
    /// A legal form written without its space ("GMO MediaInc.",
    /// "Asahi Group HoldingsLtd."), as company lists often print them.
    glued: Regex,
}

/// Words that end a name looking backwards: they begin the sentence
/// around it, not the name.
const STOP: &[&str] = &[
    "a",
    "an",
    "the",
    "at",
    "for",
    "from",
    "of",
    "with",
    "by",
    "to",
    "in",
    "on",
    "and",
    "or",
    "is",
    "was",
    "are",
    "were",
    "be",
    "my",
    "our",
    "your",
    "their",
    "his",
    "her",
    "its",
    "i",
    "we",
    "you",
    "he",
    "she",
    "they",
    "it",
    "me",
    "us",
    "them",
    "that",
    "this",
    "these",
    "those",
    "as",
    "about",
    "into",
    "via",
    "per",
    "including",
    "join",
    "joined",
    "work",
    "works",
    "worked",
    "working",
    "meet",
    "called",
    "named",
    "contact",
    "support",
    "but",
    "if",
    "when",
    "while",
    "than",
    "then",
    "so",
    "not",
    "no",
    "all",
    "any",
    "some",
    "every",
];

const MAX_NAME_WORDS: usize = 6;

impl Organization {
    pub(crate) fn new() -> Self {
        Organization {
            legal: compile(
                r"(?i)(?-u:\b)(?:inc|incorporated|corp|corporation|co\.?\s?ltd|ltd|limited|llc|l\.l\.c|llp|plc|gmbh|ag|s\.a|sa|n\.v|nv|b\.v|bv|oyj|oy|ab|asa|a/s|s\.p\.a|spa|srl|pty|s\.a\.s|sas|kgaa|company|co)(?-u:\b)\.?",
            ),
            generic: compile(
                r"(?-u:\b)(?:Group|Holdings|Bancorp|Bank|Trust|Partners|Associates|Capital|Industries|Technologies|Systems|Pharmaceuticals|Pharma|Therapeutics|Fund|REIT|Resources|Enterprises|Foundation|University|Institute|Hospital|GROUP|HOLDINGS|BANK|TRUST|INDUSTRIES|RESOURCES|FUND)(?-u:\b)",
            ),
            glued: compile(r"\p{Ll}(?:Inc|Ltd|Corp|LLC|PLC|GmbH)\."),
        }
    }
}

/// The start of the name ending at `end`: up to `MAX_NAME_WORDS` words,
/// stopping at a function word, a line break or punctuation other than
/// `&`, `.`, `'` and `-`. `None` when no word qualifies.
fn name_start(text: &str, end: usize, capitalised_only: bool) -> Option<usize> {
    let head = &text[..end];
    let mut start = None;
    let mut words = 0;
    let mut rest = head.trim_end_matches([' ', '\t']);
    while words < MAX_NAME_WORDS {
        let word_start = rest
            .rfind(|c: char| !(c.is_alphanumeric() || "&.'-/".contains(c)))
            .map_or(0, |i| {
                i + rest[i..].chars().next().map_or(1, char::len_utf8)
            });
        let word = &rest[word_start..];
        if word.is_empty() {
            break;
        }
        let bare = word.trim_matches(|c: char| !c.is_alphanumeric());
        if bare.is_empty() || STOP.contains(&bare.to_lowercase().as_str()) {
            break;
        }
        let capital = bare
            .chars()
            .next()
            .is_some_and(|c| c.is_uppercase() || c.is_numeric());
        if capitalised_only && !capital {
            break;
        }
        start = Some(word_start);
        words += 1;
        let before = &rest[..word_start];
        // Only spaces may separate the words of one name.
        if !before.ends_with(' ') {
            break;
        }
        rest = before.trim_end_matches(' ');
    }
    start
}

impl Recognizer for Organization {
    fn name(&self) -> &'static str {
        "organization"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        let from = out.len();
        let lower_case_text = !text.chars().any(char::is_uppercase);
        for (re, pattern) in [
            (&self.legal, "name + legal form"),
            (&self.generic, "name + organization noun"),
        ] {
            let generic = pattern.ends_with("noun");
            for m in re.find_iter(text) {
                // Already part of a name ("... of China Limited",
                // "Scotgold Resources Limited").
                if out[from..]
                    .iter()
                    .any(|c| c.start <= m.start() && m.start() < c.end)
                {
                    continue;
                }
                // "Co" must be the abbreviation, and "SA", "AG", "AB" and
                // "Company" must be written as a legal form is.
                let form = m.as_str().trim_end_matches('.');
                if matches!(
                    form.to_lowercase().as_str(),
                    "co" | "sa" | "ag" | "ab" | "nv" | "bv" | "spa" | "sas" | "company"
                ) && !lower_case_text
                    && !form.chars().next().is_some_and(char::is_uppercase)
                {
                    continue;
                }
                let capitalised_only = generic || !lower_case_text;
                let Some(start) = name_start(text, m.start(), capitalised_only) else {
                    continue;
                };
                let mut end = m.end();
                // "Aluminum Corporation of China Limited": an "of" clause
                // closed by a second legal form belongs to the name.
                if let Some(more) = text[end..].strip_prefix(" of ") {
                    if let Some(next) = self.legal.find(more) {
                        let between = &more[..next.start()];
                        if between.split_whitespace().count() <= 3 && !between.contains(['\n', ','])
                        {
                            end += 4 + next.end();
                        }
                    }
                }
                let score = if generic { 0.55 } else { 0.7 };
                out.push(candidate(
                    self.name(),
                    start..end,
                    Label::Organization,
                    score,
                    Tier::Pattern,
                    pattern,
                    None,
                ));
            }
        }
        for m in self.glued.find_iter(text) {
            let word_start = text[..m.start()]
                .rfind(|c: char| !c.is_alphanumeric())
                .map_or(0, |i| {
                    i + text[i..].chars().next().map_or(1, char::len_utf8)
                });
            let start = name_start(text, word_start, true).unwrap_or(word_start);
            out.push(candidate(
                self.name(),
                start..m.end(),
                Label::Organization,
                0.7,
                Tier::Pattern,
                "name + glued legal form",
                None,
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &[
            "company",
            "employer",
            "firm",
            "works",
            "worked",
            "work",
            "organization",
            "organisation",
            "vendor",
            "client",
            "from",
            "at",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn names_with_legal_forms() {
        let r = Organization::new();
        assert_eq!(
            found(&r, "I used to work for SPX Corporation as translator"),
            ["SPX Corporation"]
        );
        assert_eq!(
            found(&r, "Tony Kurutz of AMC Entertainment Inc., and others"),
            ["AMC Entertainment Inc."]
        );
        assert_eq!(
            found(
                &r,
                "Elizabeth Vasala of Aluminum Corporation of China Limited, 8307"
            ),
            ["Aluminum Corporation of China Limited"]
        );
        assert_eq!(
            found(&r, "Radislava Ostrovška\nS LINE CO.LTD.\n66673"),
            ["S LINE CO.LTD."]
        );
        assert_eq!(
            found(&r, "Milana Melikov\nGMO MediaInc.\n25593 Marsveien 48"),
            ["GMO MediaInc."]
        );
        // "Asahi Group" is proposed too, at a lower score.
        assert!(found(
            &r,
            "Looking to support Asahi Group HoldingsLtd. in Weißenhorn"
        )
        .contains(&"Asahi Group HoldingsLtd.".to_string()));
        assert_eq!(
            found(&r, "i work at sinclair broadcast group inc. now"),
            ["sinclair broadcast group inc."]
        );
        assert_eq!(
            found(
                &r,
                "Looking to support Scotgold Resources Limited in Chicago"
            ),
            ["Scotgold Resources Limited"]
        );
    }

    #[test]
    fn common_nouns_are_not_organizations() {
        let r = Organization::new();
        assert!(found(
            &r,
            "Our group met the company at the bank; we trust the fund."
        )
        .is_empty());
        assert!(found(&r, "The company said so. And co-workers agreed.").is_empty());
        assert!(found(&r, "Limited time offer").is_empty());
    }
}
