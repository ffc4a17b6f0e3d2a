//! Recognizers: each proposes spans of one kind of sensitive data, with a
//! base score and the evidence behind it. Context words near a span adjust
//! its score afterwards ([`crate::context`]); overlaps are resolved by
//! [`crate::resolve`].

mod address;
mod age;
mod card;
mod datetime;
mod driver_license;
mod email;
mod iban;
mod ip;
mod organization;
mod phone;
mod place;
mod secret;
mod ssn;
mod street;
mod url;

use regex::Regex;

use crate::finding::{Candidate, Label, Reason, Tier};

pub use address::AddressParts;
pub use age::Age;
pub use card::PaymentCard;
pub use datetime::DateTime;
pub use driver_license::UsDriverLicense;
pub use email::Email;
pub use iban::Iban;
pub use ip::IpAddress;
pub use organization::Organization;
pub use phone::Phone;
pub use place::Place;
pub use secret::Secret;
pub use ssn::UsSsn;
pub use street::Street;
pub use url::Url;

pub trait Recognizer: Send + Sync {
    /// The name findings carry (`recognizer` in the output).
    fn name(&self) -> &'static str;
    /// Appends the spans found in `text` (byte offsets).
    fn find(&self, text: &str, out: &mut Vec<Candidate>);
    /// Words that, near a span, make it more likely to be what this
    /// recognizer says (lower case).
    fn context(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The pattern recognizers, in a fixed order (the order only matters for
/// reproducible output; overlaps are resolved by evidence, not order).
pub fn patterns() -> Vec<Box<dyn Recognizer>> {
    vec![
        Box::new(Email::new()),
        Box::new(PaymentCard::new()),
        Box::new(UsSsn::new()),
        Box::new(Iban::new()),
        Box::new(IpAddress::new()),
        Box::new(Url::new()),
        Box::new(Phone::new()),
        Box::new(DateTime::new()),
        Box::new(UsDriverLicense::new()),
        Box::new(Secret::new()),
        Box::new(Organization::new()),
        Box::new(Place::new()),
        Box::new(AddressParts::new()),
        Box::new(Street::new()),
        Box::new(Age::new()),
    ]
}

/// Capitalised words that begin a sentence rather than continue a name
/// or a place.
pub(crate) const SENTENCE_WORDS: &[&str] = &[
    "I", "I'm", "My", "May", "We", "Our", "The", "A", "An", "It", "He", "She", "They", "You",
    "Your", "Please", "Have", "Has", "Who", "What", "How", "Is", "Are", "Do", "Does", "Can",
    "When", "Where", "Why", "This", "That", "Thanks", "Thank", "Hi", "Hello", "Dear", "And", "But",
    "So", "If", "In", "On", "At", "For",
];

/// Compiles a pattern written into this crate (a failure is a bug caught by
/// every test, not an input error). Word boundaries in the patterns are
/// ASCII (`(?-u:\b)`): a Unicode `\b` keeps the regex crate off its DFA
/// on non-ASCII text, which made the date recognizer 25 times slower on
/// the development corpus.
pub(crate) fn compile(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(re) => re,
        Err(e) => panic!("built-in pattern does not compile: {e}"),
    }
}

/// Builds a candidate from a match.
#[allow(clippy::too_many_arguments)]
pub(crate) fn candidate(
    recognizer: &'static str,
    range: std::ops::Range<usize>,
    label: Label,
    score: f64,
    tier: Tier,
    pattern: &'static str,
    validator: Option<&'static str>,
) -> Candidate {
    Candidate {
        start: range.start,
        end: range.end,
        label,
        score,
        recognizer,
        reason: Reason {
            tier,
            pattern,
            validator,
            context: Vec::new(),
            base_score: score,
        },
    }
}

/// Whether the span stands alone: not glued to a letter or digit directly,
/// nor to a digit through one of `joiners` (so `1.5` glues, while a full
/// stop at a sentence's end or `-Office` after a number does not).
pub(crate) fn isolated(text: &str, start: usize, end: usize, joiners: &[u8]) -> bool {
    let b = text.as_bytes();
    let alnum = |i: usize| b.get(i).is_some_and(u8::is_ascii_alphanumeric);
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let joiner = |i: usize| b.get(i).is_some_and(|c| joiners.contains(c));
    let left =
        start > 0 && (alnum(start - 1) || (joiner(start - 1) && start > 1 && digit(start - 2)));
    let right = alnum(end) || (joiner(end) && digit(end + 1));
    !left && !right
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Recognizer;

    /// The texts of the spans a recognizer finds, with their labels.
    pub fn found(r: &dyn Recognizer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        r.find(text, &mut out);
        out.iter()
            .map(|c| text[c.start..c.end].to_string())
            .collect()
    }
}
