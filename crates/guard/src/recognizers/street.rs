//! Street lines and postal address blocks.
//!
//! A street line is recognised by the word that names the kind of way,
//! which every language puts in one of three places: after the name as a
//! word ("76 College Avenue", "Dózsa György út 78."), glued to the name
//! ("Kronwiesenweg 95", "Algade 60"), or before it ("Rue Pain Leve",
//! "ul. Grochowa 80"). An English-style line needs its house number, the
//! others need a number on one side, so "the main road" is not an address.
//!
//! Many street names carry no such word ("Kooli 97", "Tylova 285"); they
//! are recognised by the layout of a postal address instead: a block of
//! short lines where a street line (a number and a name) is followed by
//! more address lines (a unit, a place, a postcode, or a place with its
//! postcode: "Dayton", "United States 32331", "Fortaleza CE 60850-000").
//! Two such lines together are strong evidence; either alone is not, so a
//! block needs its street or unit line and another line that carries a
//! number. Within a block, place lines are the city or state (LOCATION)
//! and the rest is the address; [`crate::resolve::join_addresses`] then
//! makes one address of the parts.

use regex::Regex;

use super::{candidate, compile, Recognizer};
use crate::finding::{Candidate, Label, Tier};

/// Words for a kind of way written after the name, English and others
/// that stand as their own word.
const AFTER_NAME: &str = "Street|St|Avenue|Ave|Road|Rd|Drive|Dr|Lane|Ln|Way|Boulevard|Blvd|Court|Ct|Place|Pl|Terrace|Crescent|Close|Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Trail|Row|Gardens|Walk|Mews|Grove|Alley|Plaza|Loop|Ridge|Crossing|Heights|Expressway|Freeway|Turnpike|Causeway";
/// Ways named after a word, before the name (Romance and Slavic
/// languages; "Avenue"/"Boulevard" in French).
const BEFORE_NAME: &str = "Rue|Rua|R\\.|Via|Viale|Vicolo|Corso|Piazza|Piazzale|Largo|Calle|Avenida|Avda\\.|Av\\.|Paseo|Camino|Carrer|Strada|Calea|Bulevardul|Bd\\.|ul\\.|ulica|Aleja|al\\.|Chemin|Allée|Avenue|Boulevard|Place|Quai|Impasse|Route|Travessa|Estrada|Praça|Rambla|Ronda";
/// The same kind of word in languages that glue it to the name
/// ("Kronwiesenweg", "Algade", "Mannerheimintie").
const GLUED: &str = "straße|strasse|str\\.|weg|gasse|platz|allee|straat|laan|plein|gracht|kade|vej|veien|vegen|gata|gatan|vägen|väg|gade|katu|tie|kuja|utca|tänav";
/// ... or write as a word of its own between the name and the number
/// ("Dózsa György út 78.", "Erzsébet krt. 60.", "Agip u. 96.").
const SEPARATE: &str = "utca|út|útja|körút|krt\\.|tér|u\\.|ulice|cesta|iela|gatvė|tänav|maantee|straße|strasse|straat|vej|gade|gasse|weg";

pub struct Street {
    /// "76 College Avenue", "5833 3326 Coal Street".
    number_first: Regex,
    /// "Rue Pain Leve", "114 Avenue Aghlabit", "ul. Grochowa 80".
    way_first: Regex,
    /// "Kronwiesenweg 95", "Algade 60".
    glued: Regex,
    /// "Dózsa György út 78.", "Síp utca 36.".
    way_last: Regex,
    /// The same four for text written all in lower case.
    lower: [Regex; 4],
    lines: LineShapes,
}

/// The shapes of the lines of a postal address block, each matched
/// against a whole line (without its indentation and trailing commas).
struct LineShapes {
    /// A number and a name, either way round, perhaps with a unit after:
    /// "Kooli 97 Apt. 656", "0302 76 College Avenue", "Agip u. 96.".
    street: Regex,
    unit: Regex,
    /// A place and a postcode: "United States 32331", "Saint Clair NH
    /// 9012", "Fortaleza CE 60850-000". Group 1 is the place.
    place_postcode: Regex,
    postcode: Regex,
    /// A city, a state or a country: up to four words, no digits.
    place: Regex,
}

const NAME_WORD: &str = r"\p{Lu}[\p{L}'’.-]*";
const LOWER_WORD: &str = r"\p{Ll}[\p{L}'’.-]*";
const HOUSE: &str = r"[0-9]{1,6}[A-Za-z]?";
/// French, Spanish, Italian and Portuguese particles inside street names.
const PARTICLE: &str = r"(?:de|du|des|del|della|di|da|do|dos|das|la|le|les|el|von|van|der|den)";

/// The street patterns with `word` for a word of the name and `glued`
/// for a name with its kind of way glued on.
fn street_patterns(word: &str, glued: &str) -> [Regex; 4] {
    let after = format!(
        r"(?-u:\b){HOUSE}(?:[ ][0-9]{{1,6}})?,?[ ](?:(?:{word}|[0-9]{{1,3}}(?:st|nd|rd|th))[ ]){{1,4}}(?i:{AFTER_NAME})(?-u:\b)\.?"
    );
    let before = format!(
        r"(?:(?-u:\b){HOUSE}[ ](?:[0-9]{{1,6}}[ ])?)?(?-u:\b)(?i:{BEFORE_NAME})[ ](?:{PARTICLE}[ ]|d')?{word}(?:[ ](?:{word}|{PARTICLE}))*(?:,?[ ]{HOUSE}(?-u:\b))?"
    );
    let glued = format!(
        r"(?:(?-u:\b){HOUSE}[ ])?(?:{word}[ ]){{0,2}}{glued}(?:{GLUED})[ ]{HOUSE}(?-u:\b)\.?"
    );
    let last =
        format!(r"(?:(?-u:\b){HOUSE}[ ])?(?:{word}[ ]){{1,3}}(?i:{SEPARATE})[ ]{HOUSE}(?-u:\b)\.?");
    [
        compile(&after),
        compile(&before),
        compile(&glued),
        compile(&last),
    ]
}

impl Street {
    pub(crate) fn new() -> Self {
        let [number_first, way_first, glued, way_last] =
            street_patterns(NAME_WORD, r"\p{Lu}\p{Ll}+");
        let any_word = format!("(?:{NAME_WORD}|{LOWER_WORD})");
        let unit = r"(?i:apt|apartment|suite|ste|unit|flat)\.?[ ]?#?[ ]?[0-9]{1,5}[A-Za-z]?";
        let name = r"\p{L}[\p{L}'’.-]*(?:[ ]\p{L}[\p{L}'’.-]*){0,5}";
        Street {
            number_first,
            way_first,
            glued,
            way_last,
            lower: street_patterns(&any_word, r"\p{Ll}{2,}"),
            lines: LineShapes {
                street: compile(&format!(
                    r"^(?:(?:{HOUSE}[ ]){{0,2}}{name}[ ]{HOUSE}\.?|{HOUSE}(?:[ ][0-9]{{1,6}})?[ ]{name})(?:,?[ ]{unit})?$"
                )),
                unit: compile(&format!("^{unit}$")),
                place_postcode: compile(
                    r"^(\p{L}[\p{L}'’.-]*(?:[ ]\p{L}[\p{L}'’.-]*){0,3})(?:[ ][A-Z]{2})?[ ](?:[0-9]{3,5}(?:[- ][0-9]{2,4})?|[A-Z]{1,2}[0-9][0-9A-Z]?[ ][0-9][A-Z]{2})$",
                ),
                postcode: compile(
                    r"^(?:[0-9]{3,5}(?:[- ][0-9]{2,4})?|[A-Z]{1,2}[0-9][0-9A-Z]?[ ][0-9][A-Z]{2})$",
                ),
                place: compile(r"^\p{L}[\p{L}'’.-]*(?:[ ]\p{L}[\p{L}'’.-]*){0,3}$"),
            },
        }
    }

    fn street_lines(&self, text: &str, out: &mut Vec<Candidate>) {
        let patterns: [&Regex; 4] = if text.chars().any(char::is_uppercase) {
            [
                &self.number_first,
                &self.way_first,
                &self.glued,
                &self.way_last,
            ]
        } else {
            [
                &self.lower[0],
                &self.lower[1],
                &self.lower[2],
                &self.lower[3],
            ]
        };
        for re in patterns {
            for m in re.find_iter(text) {
                // "Route 66" or "Place 3" alone is a number, not a street:
                // a street has a name.
                if !m.as_str().chars().any(char::is_alphabetic) {
                    continue;
                }
                out.push(candidate(
                    self.name(),
                    m.range(),
                    Label::Address,
                    0.7,
                    Tier::Pattern,
                    "street with a street-type word",
                    None,
                ));
                if let Some(city) = city_after(text, m.end()) {
                    out.push(candidate(
                        self.name(),
                        city,
                        Label::Location,
                        0.6,
                        Tier::Weak,
                        "place after a street and a comma",
                        None,
                    ));
                }
            }
        }
    }

    /// Address blocks: see the module's note.
    /// `streets` are the streets found by their kind-of-way word.
    fn blocks(&self, text: &str, streets: &[std::ops::Range<usize>], out: &mut Vec<Candidate>) {
        if !text.contains('\n') {
            return;
        }
        let mut block: Vec<(Line, std::ops::Range<usize>)> = Vec::new();
        let mut blank_run = 0;
        let mut start = 0;
        for raw in text.split_inclusive('\n') {
            let range = content(text, start, raw);
            start += raw.len();
            if range.is_empty() {
                blank_run += 1;
                if blank_run > 1 {
                    self.emit(text, &block, out);
                    block.clear();
                }
                continue;
            }
            blank_run = 0;
            let line = self.lines.classify(&text[range.clone()]);
            if line == Line::Other {
                self.emit(text, &block, out);
                block.clear();
                // A sentence that ends in a street begins an address.
                if let Some(street) = streets.iter().find(|s| s.end == range.end) {
                    block.push((Line::Street, street.start..range.end));
                }
                continue;
            }
            block.push((line, range));
        }
        self.emit(text, &block, out);
    }

    /// Emits the address in one block of classified lines, if it is one:
    /// from its first street or unit line, as long as lines continue it.
    fn emit(&self, text: &str, block: &[(Line, std::ops::Range<usize>)], out: &mut Vec<Candidate>) {
        let Some(anchor) = block
            .iter()
            .position(|(l, _)| matches!(l, Line::Street | Line::Unit))
        else {
            return;
        };
        let mut end = anchor + 1;
        while end < block.len() {
            // A postcode ends an address, unless a bare postcode follows.
            let closes = matches!(block[end - 1].0, Line::PlacePostcode | Line::Postcode);
            if closes && block[end].0 != Line::Postcode {
                break;
            }
            if block[end].0 == Line::Street && end > anchor + 1 {
                break;
            }
            end += 1;
        }
        let lines = &block[anchor..end];
        let numbered = lines
            .iter()
            .filter(|(l, _)| !matches!(l, Line::Place))
            .count();
        if numbered < 2 {
            return;
        }
        for (line, range) in lines {
            let (label, pattern) = match line {
                Line::Place => (Label::Location, "city or state line of an address block"),
                Line::PlacePostcode => {
                    let place = self
                        .lines
                        .place_postcode
                        .captures(&text[range.clone()])
                        .and_then(|c| c.get(1))
                        .map_or(0, |m| m.end());
                    let at = range.start + place;
                    out.push(candidate(
                        self.name(),
                        range.start..at,
                        Label::Location,
                        0.6,
                        Tier::Weak,
                        "place line of an address block",
                        None,
                    ));
                    out.push(candidate(
                        self.name(),
                        at + 1..range.end,
                        Label::Address,
                        0.6,
                        Tier::Pattern,
                        "postcode of an address block",
                        None,
                    ));
                    continue;
                }
                _ => (Label::Address, "line of an address block"),
            };
            // A place line may be a name the model reads better (a person
            // in a signature), so it is weak evidence.
            let tier = if label == Label::Location {
                Tier::Weak
            } else {
                Tier::Pattern
            };
            out.push(candidate(
                self.name(),
                range.clone(),
                label,
                0.6,
                tier,
                pattern,
                None,
            ));
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    Street,
    Unit,
    PlacePostcode,
    Postcode,
    Place,
    Other,
}

impl LineShapes {
    fn classify(&self, line: &str) -> Line {
        if line.len() > 60 {
            Line::Other
        } else if self.unit.is_match(line) {
            Line::Unit
        } else if self.postcode.is_match(line) {
            Line::Postcode
        } else if self.place_postcode.is_match(line) {
            Line::PlacePostcode
        } else if self.street.is_match(line) {
            Line::Street
        } else if self.place.is_match(line) {
            Line::Place
        } else {
            Line::Other
        }
    }
}

/// The place that follows a street after a comma ("2689 Hersnapvej 18,
/// København K"): up to three capitalised words, stopping at a word that
/// begins a sentence.
fn city_after(text: &str, end: usize) -> Option<std::ops::Range<usize>> {
    let rest = text[end..].strip_prefix(", ")?;
    let start = end + 2;
    let (mut to, mut at) = (start, start);
    for (i, word) in rest.split(' ').take(3).enumerate() {
        // A line break or punctuation ends the place.
        let cut = word
            .find(|c: char| !(c.is_alphabetic() || "'’-".contains(c)))
            .unwrap_or(word.len());
        let bare = &word[..cut];
        let capital = bare.chars().next().is_some_and(char::is_uppercase);
        if !capital || (i > 0 && super::SENTENCE_WORDS.contains(&bare)) {
            break;
        }
        to = at + cut;
        if cut < word.len() {
            break;
        }
        at += word.len() + 1;
    }
    (to > start).then_some(start..to)
}

/// The byte range of a line's content: without indentation, quoting
/// (`>`, `}`, `|`) or leading punctuation, and without trailing spaces
/// and commas.
fn content(text: &str, start: usize, raw: &str) -> std::ops::Range<usize> {
    let trimmed_start = raw.trim_start_matches(|c: char| !c.is_alphanumeric());
    let from = start + raw.len() - trimmed_start.len();
    let trimmed = trimmed_start.trim_end_matches(|c: char| c.is_whitespace() || c == ',');
    let to = from + trimmed.len();
    debug_assert!(text.is_char_boundary(from) && text.is_char_boundary(to));
    from..to
}

impl Recognizer for Street {
    fn name(&self) -> &'static str {
        "street"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        let from = out.len();
        self.street_lines(text, out);
        let streets: Vec<_> = out[from..]
            .iter()
            .filter(|c| c.label == Label::Address)
            .map(|c| c.start..c.end)
            .collect();
        self.blocks(text, &streets, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn streets_named_by_their_kind_of_way() {
        let r = Street::new();
        for (text, street) in [
            (
                "How do I change my address to 5833 3326 Coal Street for mail?",
                "5833 3326 Coal Street",
            ),
            (
                "meet you at 2078 57 Rue Abdelkader after",
                "2078 57 Rue Abdelkader",
            ),
            (
                "I lived at Kronwiesenweg 95, Knittelfeld",
                "Kronwiesenweg 95",
            ),
            ("Dózsa György út 78. is home", "Dózsa György út 78."),
            ("send it to ul. Grochowa 80 please", "ul. Grochowa 80"),
            ("it's at 187 lusk place, right", "187 lusk place"),
            (
                "692 Villacher Strasse 89, Bobrová",
                "692 Villacher Strasse 89",
            ),
        ] {
            assert!(
                found(&r, text).iter().any(|f| f == street),
                "{street:?} in {text:?}: {:?}",
                found(&r, text)
            );
        }
    }

    #[test]
    fn ordinary_prose_is_not_a_street() {
        let r = Street::new();
        for text in [
            "Walk 5 blocks down the road and turn left.",
            "Take Route 66 west.",
            "We met in the main square.",
            "The 3 Little Pigs live there",
            "Chapter 3\nIntroduction\nThis chapter explains",
        ] {
            assert!(
                found(&r, text).is_empty(),
                "{text:?}: {:?}",
                found(&r, text)
            );
        }
    }

    #[test]
    fn an_address_block_is_read_line_by_line() {
        let r = Street::new();
        let text = "Tyler Stewart\n\n0302 76 College Avenue\n Suite 687\n Dayton\n\n United States 32331\nThanks";
        let mut out = Vec::new();
        r.find(text, &mut out);
        let mut spans: Vec<(&str, Label)> = out
            .iter()
            .filter(|c| c.reason.pattern.contains("block"))
            .map(|c| (&text[c.start..c.end], c.label))
            .collect();
        spans.sort();
        assert_eq!(
            spans,
            [
                ("0302 76 College Avenue", Label::Address),
                ("32331", Label::Address),
                ("Dayton", Label::Location),
                ("Suite 687", Label::Address),
                ("United States", Label::Location),
            ]
        );
    }

    #[test]
    fn a_place_after_a_street_and_a_comma() {
        let r = Street::new();
        assert_eq!(
            found(&r, "He lives at 2689 Hersnapvej 18, København K My card is"),
            ["2689 Hersnapvej 18", "København K"]
        );
        assert_eq!(
            found(&r, "Limited, 325 Via Loreto 123, Ponzano Di Fermo\n"),
            ["325 Via Loreto 123", "Ponzano Di Fermo"]
        );
        assert_eq!(
            found(&r, "at 69 McLeans Road, then home"),
            ["69 McLeans Road"]
        );
    }

    #[test]
    fn a_sentence_ending_in_a_street_begins_a_block() {
        let r = Street::new();
        let text = "Ms. Lisa Kozłowski Apt. 069 59590 82 rue Ernest Renan\nCHAUMONT CA 52000\n";
        let found = found(&r, text);
        assert!(found.contains(&"CHAUMONT CA".to_string()), "{found:?}");
        assert!(found.contains(&"52000".to_string()), "{found:?}");
    }

    #[test]
    fn a_block_needs_two_numbered_lines() {
        let r = Street::new();
        // Quoted lines, a street without a kind-of-way word, a state code
        // and a postcode on lines of their own.
        let text = "}} Kooli 97 Apt. 656\n}} Vanamõisa\n}} RA\n}} 78257\n";
        assert_eq!(
            found(&r, text),
            ["Kooli 97 Apt. 656", "Vanamõisa", "RA", "78257"]
        );
        // A numbered line and places alone are not enough.
        assert!(found(&r, "Kooli 97\nVanamõisa\nRA").is_empty());
        assert!(found(&r, "Version 2\nRelease notes\n").is_empty());
    }
}
