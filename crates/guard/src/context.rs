//! Context words: a word such as "card" or "phone" within a few words of a
//! span raises its score, as in Presidio's context enhancer: by
//! [`BOOST`], and to at least [`FLOOR`]. Words are compared in lower case,
//! whole words only.

use crate::finding::Candidate;

/// How much a context word raises a score.
pub const BOOST: f64 = 0.35;
/// The least score a span with a context word has.
pub const FLOOR: f64 = 0.4;
/// Words looked at before the span, and after it.
const BEFORE: usize = 6;
const AFTER: usize = 2;

/// The words of a text, as byte ranges, in order.
pub struct Words(Vec<(usize, usize)>);

impl Words {
    pub fn new(text: &str) -> Self {
        let b = text.as_bytes();
        let mut words = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_alphabetic() {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'\'' || b[i] == b'#') {
                    i += 1;
                }
                words.push((start, i));
            } else {
                i += 1;
            }
        }
        Words(words)
    }

    /// Applies the first of `context` found near `c` to its score and
    /// reason.
    pub fn apply(&self, text: &str, c: &mut Candidate, context: &[&str]) {
        let first_after = self.0.partition_point(|&(s, _)| s < c.end);
        let last_before = self.0.partition_point(|&(_, e)| e <= c.start);
        let before = &self.0[last_before.saturating_sub(BEFORE)..last_before];
        let after = &self.0[first_after..(first_after + AFTER).min(self.0.len())];
        for &(s, e) in before.iter().rev().chain(after) {
            let word = &text[s..e];
            if let Some(hit) = context.iter().find(|w| w.eq_ignore_ascii_case(word)) {
                c.score = (c.score + BOOST).clamp(FLOOR, 1.0);
                c.reason.context.push((*hit).to_string());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Label, Tier};
    use crate::recognizers::candidate;

    fn at(text: &str, needle: &str, score: f64) -> Candidate {
        let s = text.find(needle).unwrap();
        candidate(
            "t",
            s..s + needle.len(),
            Label::PhoneNumber,
            score,
            Tier::Pattern,
            "p",
            None,
        )
    }

    #[test]
    fn a_near_word_raises_the_score_a_far_one_does_not() {
        let text = "my office phone is 414 0848";
        let mut c = at(text, "414 0848", 0.4);
        Words::new(text).apply(text, &mut c, &["phone"]);
        assert!((c.score - 0.75).abs() < 1e-12);
        assert_eq!(c.reason.context, ["phone"]);

        let far = "phone one two three four five six seven 414 0848";
        let mut c = at(far, "414 0848", 0.4);
        Words::new(far).apply(far, &mut c, &["phone"]);
        assert_eq!(c.score, 0.4);
    }

    #[test]
    fn whole_words_only() {
        let text = "telephoned 414 0848";
        let mut c = at(text, "414 0848", 0.1);
        Words::new(text).apply(text, &mut c, &["phone"]);
        assert_eq!(c.score, 0.1);
    }
}
