//! What one finding says about the rest of its text.
//!
//! A person named in full once is usually named again by one part of the
//! name ("directed by Zizi Kónya and starring Kónya"), where a token
//! classifier, seeing the bare surname without its context, often misses
//! it. This is the one-sense-per-discourse assumption of named-entity
//! work (Gale, Church and Yarowsky 1992; used for NER by Krishnan and
//! Manning 2006): a word that names a person in a text names a person
//! throughout it.
//!
//! Likewise a letter's signature: a line that is shaped like a name (two
//! to four capitalised words or initials) directly above an organization
//! or an address found by other means is the person the letter is from.

use crate::finding::{Candidate, Label, Tier};
use crate::recognizers::candidate;

/// Given names that are also common English words: at the start of a
/// sentence they are read as words, not as repeats of a name.
const ALSO_WORDS: &[&str] = &[
    "will", "may", "mark", "bill", "rose", "june", "april", "even", "art", "grant", "hope", "joy",
    "faith", "ray", "dawn", "summer", "page", "hunter", "king", "young", "long", "white", "black",
    "brown", "green", "little", "rich", "frank", "major", "chase", "pat", "sue", "gene", "jack",
    "dean", "miles", "sky", "lane", "wood", "rock", "bird", "fox", "price", "cook", "day",
];

/// Adds to `kept` (disjoint, in text order) the other occurrences of the
/// words of its PERSON findings, and signature lines; the result is still
/// disjoint and in text order.
pub fn extend_names(text: &str, mut kept: Vec<Candidate>) -> Vec<Candidate> {
    let before = kept.len();
    for signature in signatures(text, &kept) {
        if !covered(&kept, &(signature.start..signature.end)) {
            kept.push(signature);
        }
    }
    let lower_case_text = !text.chars().any(char::is_uppercase);
    let mut names: Vec<(&str, f64)> = Vec::new();
    for c in kept.iter().filter(|c| c.label == Label::Person) {
        let shouted = !text[c.start..c.end].chars().any(char::is_lowercase);
        for word in words(&text[c.start..c.end]) {
            let w = &text[c.start + word.start..c.start + word.end];
            // A name is capitalised; an acronym ("ASCII") in a name the
            // model proposed is more likely a misreading than a name.
            let mut chars = w.chars();
            let capital = chars.next().is_some_and(char::is_uppercase)
                && (shouted || chars.any(char::is_lowercase));
            if w.chars().count() >= 3 && (capital || lower_case_text) {
                names.push((w, c.score));
            }
        }
    }
    if !names.is_empty() {
        for word in words(text) {
            // "Kónya's" repeats "Kónya".
            let word = match text[word.clone()].strip_suffix("'s") {
                Some(stem) => word.start..word.start + stem.len(),
                None => word,
            };
            let w = &text[word.clone()];
            let Some(&(_, score)) = names.iter().find(|(n, _)| *n == w) else {
                continue;
            };
            if covered(&kept, &word)
                || (sentence_start(text, word.start)
                    && ALSO_WORDS.contains(&w.to_lowercase().as_str()))
            {
                continue;
            }
            kept.push(candidate(
                "coreference",
                word,
                Label::Person,
                score,
                Tier::Model,
                "a word of a name found elsewhere in the text",
                None,
            ));
        }
    }
    if kept.len() == before {
        return kept;
    }
    kept.sort_by_key(|c| (c.start, c.end));
    join_adjacent_names(text, kept)
}

/// Name-shaped lines directly above a line that begins with an
/// organization or an address.
fn signatures(text: &str, kept: &[Candidate]) -> Vec<Candidate> {
    let mut out = Vec::new();
    for c in kept
        .iter()
        .filter(|c| matches!(c.label, Label::Organization | Label::Address))
    {
        let line_start = text[..c.start].rfind('\n').map_or(0, |i| i + 1);
        if !text[line_start..c.start]
            .chars()
            .all(|ch| !ch.is_alphanumeric())
            || line_start == 0
        {
            continue;
        }
        let above = &text[..line_start - 1];
        let from = above.rfind('\n').map_or(0, |i| i + 1);
        let line = &above[from..];
        let lead = line.len()
            - line
                .trim_start_matches(|ch: char| !ch.is_alphanumeric())
                .len();
        let name = line[lead..].trim_end();
        let range = from + lead..from + lead + name.len();
        if name_shaped(name) && !covered(kept, &range) {
            out.push(candidate(
                "coreference",
                range,
                Label::Person,
                0.6,
                Tier::Weak,
                "a name-shaped line above an organization or address",
                None,
            ));
        }
    }
    out
}

/// Two to four words, each a capitalised word or an initial, the last a
/// word: "Giovana G Almeida", "Shovda K. Gairbekov".
fn name_shaped(line: &str) -> bool {
    let parts: Vec<&str> = line.split(' ').collect();
    (2..=4).contains(&parts.len())
        && parts.last().is_some_and(|p| capitalised(p))
        && capitalised(parts[0])
        && parts.iter().all(|p| capitalised(p) || initial(p))
}

/// A word written as names are: a capital, then lower case, hyphens and
/// apostrophes ("Maslow", "Ashby-smith"), at least two characters.
pub(crate) fn capitalised(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(char::is_uppercase)
        && !chars.as_str().is_empty()
        && chars.all(|c| c.is_lowercase() || c == '-' || c == '\'')
}

/// An initial: a capital alone or with a full stop ("K", "K.").
pub(crate) fn initial(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(char::is_uppercase) && matches!(chars.as_str(), "" | ".")
}

/// Joins PERSON spans separated by a single space: a given name found by
/// the model and its surname found again.
fn join_adjacent_names(text: &str, kept: Vec<Candidate>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::with_capacity(kept.len());
    for c in kept {
        if let Some(last) = out.last_mut() {
            if last.label == Label::Person
                && c.label == Label::Person
                && text.get(last.end..c.start) == Some(" ")
            {
                last.end = c.end;
                last.score = last.score.max(c.score);
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn covered(kept: &[Candidate], range: &std::ops::Range<usize>) -> bool {
    kept.iter()
        .any(|c| c.start < range.end && range.start < c.end)
}

/// Whether a word at `at` begins a sentence: the text's start, or only
/// spaces, quotes and dashes back to a line break or a full stop,
/// question mark or exclamation mark.
fn sentence_start(text: &str, at: usize) -> bool {
    match text[..at]
        .trim_end_matches([' ', '"', '\'', '-'])
        .chars()
        .next_back()
    {
        None => true,
        Some(c) => matches!(c, '\n' | '.' | '?' | '!' | ':'),
    }
}

/// The words of `text`: runs of letters, with inner hyphens and
/// apostrophes, as byte ranges.
fn words(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = chars.by_ref().find(|(_, c)| c.is_alphabetic())?;
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            let inner = (c == '-' || c == '\'')
                && text[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphabetic);
            if c.is_alphabetic() || inner {
                chars.next();
            } else {
                end = i;
                break;
            }
        }
        Some(start..end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(text: &str, name: &str) -> Candidate {
        let i = text.find(name).unwrap();
        candidate(
            "t",
            i..i + name.len(),
            Label::Person,
            0.9,
            Tier::Model,
            "p",
            None,
        )
    }

    fn spans(text: &str, kept: &[Candidate]) -> Vec<(String, Label)> {
        kept.iter()
            .map(|c| (text[c.start..c.end].to_string(), c.label))
            .collect()
    }

    #[test]
    fn a_surname_named_again_is_the_same_person() {
        let text = "Directed by Zizi Kónya and starring Kónya. Zizi's film.";
        let out = extend_names(text, vec![person(text, "Zizi Kónya")]);
        let found: Vec<String> = spans(text, &out).into_iter().map(|(s, _)| s).collect();
        assert_eq!(found, ["Zizi Kónya", "Kónya", "Zizi"]);
    }

    #[test]
    fn names_that_are_words_start_sentences_as_words() {
        let text = "Will Smith called. Will you answer? Ask Will.";
        let out = extend_names(text, vec![person(text, "Will Smith")]);
        let found: Vec<String> = spans(text, &out).into_iter().map(|(s, _)| s).collect();
        assert_eq!(found, ["Will Smith", "Will"]);
        assert_eq!(out[1].start, text.rfind("Will").unwrap());
    }

    #[test]
    fn acronyms_in_mixed_case_names_are_not_spread() {
        let text = "The ASCII Bell character. Plain ASCII text.";
        let out = extend_names(text, vec![person(text, "ASCII Bell")]);
        assert_eq!(out.len(), 1);
        let text = "JOHN SMITH wrote. Ask JOHN.";
        let out = extend_names(text, vec![person(text, "JOHN SMITH")]);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn short_and_lower_case_parts_are_not_spread() {
        let text = "Al de Vries met al and de la Cruz";
        let out = extend_names(text, vec![person(text, "Al de Vries")]);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_signature_above_an_organization() {
        let text = "Thanks,\n}}Giovana G Almeida\n}}BHP Group PLC\n";
        let org = text.find("BHP Group PLC").unwrap();
        let kept = vec![candidate(
            "t",
            org..org + 13,
            Label::Organization,
            0.8,
            Tier::Pattern,
            "p",
            None,
        )];
        let out = extend_names(text, kept);
        assert_eq!(
            spans(text, &out),
            [
                ("Giovana G Almeida".to_string(), Label::Person),
                ("BHP Group PLC".to_string(), Label::Organization)
            ]
        );
        // Not a name: a sentence, or a single word.
        for above in ["Please see the report", "Regards"] {
            let text = format!("{above}\nBHP Group PLC");
            let org = text.find("BHP").unwrap();
            let kept = vec![candidate(
                "t",
                org..text.len(),
                Label::Organization,
                0.8,
                Tier::Pattern,
                "p",
                None,
            )];
            assert_eq!(extend_names(&text, kept).len(), 1, "{above}");
        }
    }

    #[test]
    fn name_shapes() {
        assert!(name_shaped("Shovda K. Gairbekov"));
        assert!(name_shaped("Ompoly Boros"));
        assert!(!name_shaped("Ompoly"));
        assert!(!name_shaped("K. Gairbekov"));
        assert!(!name_shaped("Polypipe Group PLC"));
        assert!(!name_shaped("The report is"));
    }
}
