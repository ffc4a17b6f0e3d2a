//! The model tier: a token classifier for the entities no pattern can
//! describe (names, places, street addresses).
//!
//! The model is Rampart (a 6-layer, 384-wide BERT token classifier with
//! 4-bit weights, CC BY 4.0), run through ONNX Runtime, which is loaded
//! at run time from a shared library ([`crate::model`] installs both).
//! Text is read in overlapping 480-character windows, the context the
//! model was tuned on; windows from many texts are batched by length so
//! one run of the network serves several of them.
//!
//! Word pieces are merged into entities by the package's rule (same type,
//! an `I-` tag, only whitespace between), plus one: a piece that continues
//! a word with no gap is merged even when tagged `B-`, since a 4-bit model
//! often restarts inside a word ("Spring" + "field").

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::Tokenizer;

use crate::finding::{Candidate, Label, Reason, Tier};
use crate::GuardError;

/// Characters per window, and how much consecutive windows share.
const WINDOW_CHARS: usize = 480;
const WINDOW_OVERLAP: usize = 64;
/// The network's limit, including `[CLS]` and `[SEP]`.
const MAX_TOKENS: usize = 512;
/// Windows run together in one batch.
const BATCH: usize = 16;
/// A token counts only if the model gives our tags together this
/// probability: the least any sensitivity accepts, so that the span's
/// score (the mean over its tokens) decides.
const TOKEN_THRESHOLD: f32 = 0.35;

/// What a tag of the model means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    GivenName,
    Surname,
    Street,
    Building,
    Secondary,
    Zip,
    City,
    State,
}

impl Part {
    fn from_tag(tag: &str) -> Option<Part> {
        Some(match tag {
            "GIVEN_NAME" => Part::GivenName,
            "SURNAME" => Part::Surname,
            "STREET_NAME" => Part::Street,
            "BUILDING_NUMBER" => Part::Building,
            "SECONDARY_ADDRESS" => Part::Secondary,
            "ZIP_CODE" => Part::Zip,
            "CITY" => Part::City,
            "STATE" => Part::State,
            // The model's e-mail, phone, URL and identifier tags are left
            // to the validated patterns, which are more precise.
            _ => return None,
        })
    }

    fn label(self) -> Label {
        match self {
            Part::GivenName | Part::Surname => Label::Person,
            Part::Street | Part::Building | Part::Secondary | Part::Zip => Label::Address,
            Part::City | Part::State => Label::Location,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Tag {
    part: Option<Part>,
    begins: bool,
}

/// A span the network proposed, in bytes of the text it ran on.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Piece {
    start: usize,
    end: usize,
    part: Part,
    /// The sum of its tokens' probabilities; the mean is the score.
    score: f32,
    tokens: u32,
}

impl Piece {
    /// Extends this piece over `next`, which starts inside or after it.
    fn absorb(&mut self, next: Piece) {
        self.end = self.end.max(next.end);
        self.score += next.score;
        self.tokens += next.tokens;
    }
}

/// The loaded model: its tokenizer and one inference session per worker
/// thread (a session runs one batch at a time).
pub struct NerModel {
    tokenizer: Tokenizer,
    sessions: Vec<Mutex<Session>>,
    tags: Vec<Tag>,
    cls: i64,
    sep: i64,
    wants_token_types: bool,
}

static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` once per process.
fn load_runtime(library: &Path) -> Result<&'static Environment, GuardError> {
    RUNTIME
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| e.to_string())?
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            GuardError::Invalid(format!(
                "cannot load ONNX Runtime from {}: {e}; run `pft guard fetch-model`",
                library.display()
            ))
        })
}

impl NerModel {
    /// Loads the model in `dir` (`config.json`, `tokenizer.json`,
    /// `onnx/model_q4.onnx`) with the runtime library at `runtime`, with
    /// one session for each of `workers` threads.
    pub fn load(dir: &Path, runtime: &Path, workers: usize) -> Result<NerModel, GuardError> {
        let environment = load_runtime(runtime)?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| {
                GuardError::Invalid(format!(
                    "cannot read {}: {e}; run `pft guard fetch-model`",
                    path.display()
                ))
            })
        };
        let config: serde_json::Value = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| GuardError::Invalid(format!("model config.json: {e}")))?;
        let tags = parse_tags(&config)?;
        let tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| GuardError::Invalid(format!("model tokenizer.json: {e}")))?;
        let special = |t: &str| {
            tokenizer
                .token_to_id(t)
                .map(i64::from)
                .ok_or_else(|| GuardError::Invalid(format!("tokenizer has no {t} token")))
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        let network = dir.join("onnx").join("model_q4.onnx");
        let bytes = read("onnx/model_q4.onnx")?;
        let open = || -> Result<Session, ort::Error> {
            Session::builder(environment)?
                .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)?
                .with_intra_threads(1)?
                .with_inter_threads(1)?
                .commit_from_memory(&bytes)
        };
        let sessions = (0..workers.max(1))
            .map(|_| open().map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GuardError::Invalid(format!("{}: {e}", network.display())))?;
        let wants_token_types = sessions[0]
            .lock()
            .map_err(|_| GuardError::Invalid("model session poisoned".into()))?
            .inputs()
            .iter()
            .any(|i| i.name() == "token_type_ids");
        Ok(NerModel {
            tokenizer,
            sessions,
            tags,
            cls,
            sep,
            wants_token_types,
        })
    }

    /// The model's entities in each text, as candidates in byte offsets.
    pub(crate) fn detect(&self, texts: &[&str]) -> Result<Vec<Vec<Candidate>>, GuardError> {
        let mut windows = Vec::new();
        for (doc, text) in texts.iter().enumerate() {
            for (offset, window) in char_windows(text) {
                self.token_windows(doc, offset, window, &mut windows)?;
            }
        }
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| windows[i].ids.len());
        let mut pieces: Vec<Vec<Piece>> = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            let batch: Vec<&Window> = batch.iter().map(|&i| &windows[i]).collect();
            let tagged = self.run(&batch)?;
            for (w, tokens) in batch.into_iter().zip(tagged) {
                pieces[w.doc].extend(aggregate(texts[w.doc], w, &tokens));
            }
        }
        Ok(texts
            .iter()
            .zip(pieces)
            .map(|(text, p)| {
                let mut found = entities(text, union_overlaps(p));
                for c in &mut found {
                    complete_word(text, c);
                    extend_person(text, c);
                }
                found.retain(|c| plausible(text, c));
                found
            })
            .collect())
    }

    /// Splits a character window into token windows that fit the network.
    fn token_windows(
        &self,
        doc: usize,
        offset: usize,
        window: &str,
        out: &mut Vec<Window>,
    ) -> Result<(), GuardError> {
        let encoding = self
            .tokenizer
            .encode(window, false)
            .map_err(|e| GuardError::Invalid(format!("tokenizer: {e}")))?;
        let ids = encoding.get_ids();
        let offsets = encoding.get_offsets();
        let room = MAX_TOKENS - 2;
        let mut from = 0;
        // A window whose text expands past the limit (rare: some scripts
        // normalise into several pieces per character) is read in
        // overlapping token windows; only tokens past the previous
        // window's end are kept from each.
        let mut kept_from = 0;
        loop {
            let to = (from + room).min(ids.len());
            out.push(Window {
                doc,
                ids: ids[from..to].iter().map(|&i| i64::from(i)).collect(),
                spans: offsets[from..to]
                    .iter()
                    .map(|&(s, e)| (s + offset, e + offset))
                    .collect(),
                keep_from: kept_from - from,
            });
            if to >= ids.len() {
                return Ok(());
            }
            kept_from = to;
            from = to - WINDOW_OVERLAP;
        }
    }

    /// Runs one batch; returns each window's tag and probability per token.
    fn run(&self, batch: &[&Window]) -> Result<Vec<Vec<(Tag, f32)>>, GuardError> {
        let rows = batch.len();
        let width = batch.iter().map(|w| w.ids.len() + 2).max().unwrap_or(2);
        let mut ids = vec![0i64; rows * width];
        let mut mask = vec![0i64; rows * width];
        for (r, w) in batch.iter().enumerate() {
            let row = &mut ids[r * width..(r + 1) * width];
            row[0] = self.cls;
            row[1..=w.ids.len()].copy_from_slice(&w.ids);
            row[w.ids.len() + 1] = self.sep;
            mask[r * width..r * width + w.ids.len() + 2].fill(1);
        }
        let shape = [rows as i64, width as i64];
        let fail = |e: ort::Error| GuardError::Invalid(format!("model inference: {e}"));
        let mut inputs = vec![
            ("input_ids", Tensor::from_array((shape, ids)).map_err(fail)?),
            (
                "attention_mask",
                Tensor::from_array((shape, mask)).map_err(fail)?,
            ),
        ];
        if self.wants_token_types {
            let zeros = vec![0i64; rows * width];
            inputs.push((
                "token_type_ids",
                Tensor::from_array((shape, zeros)).map_err(fail)?,
            ));
        }
        let slot = rayon::current_thread_index().unwrap_or(0) % self.sessions.len();
        let mut session = self.sessions[slot]
            .lock()
            .map_err(|_| GuardError::Invalid("model session poisoned".into()))?;
        let outputs = session.run(inputs).map_err(fail)?;
        let (out_shape, logits) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
        let classes = out_shape.last().copied().unwrap_or(0) as usize;
        if classes != self.tags.len() || logits.len() != rows * width * classes {
            return Err(GuardError::Invalid(format!(
                "model output has shape {out_shape:?}, expected [{rows}, {width}, {}]",
                self.tags.len()
            )));
        }
        Ok(batch
            .iter()
            .enumerate()
            .map(|(r, w)| {
                (0..w.ids.len())
                    .map(|t| {
                        let at = (r * width + t + 1) * classes;
                        self.best_tag(&logits[at..at + classes])
                    })
                    .collect()
            })
            .collect())
    }

    /// The most probable of our tags for one token, and the probability
    /// that the token belongs to any of them. Scoring by that total rather
    /// than the winning tag keeps a name the model hesitates over (say
    /// between given name and surname) from looking unlikely.
    fn best_tag(&self, logits: &[f32]) -> (Tag, f32) {
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (mut total, mut ours, mut best) = (0.0f32, 0.0f32, (0usize, 0.0f32));
        for (i, &x) in logits.iter().enumerate() {
            let p = (x - top).exp();
            total += p;
            if self.tags[i].part.is_some() {
                ours += p;
                if p > best.1 {
                    best = (i, p);
                }
            }
        }
        (self.tags[best.0], ours / total)
    }
}

/// Token ids of one window of a text and where each token lies in it.
struct Window {
    doc: usize,
    ids: Vec<i64>,
    /// Byte spans in the whole text.
    spans: Vec<(usize, usize)>,
    /// Tokens before this index were already read by the previous window.
    keep_from: usize,
}

fn parse_tags(config: &serde_json::Value) -> Result<Vec<Tag>, GuardError> {
    let map = config
        .get("id2label")
        .and_then(|m| m.as_object())
        .ok_or_else(|| GuardError::Invalid("model config.json has no id2label".into()))?;
    let mut tags = vec![
        Tag {
            part: None,
            begins: false
        };
        map.len()
    ];
    for (id, name) in map {
        let i: usize = id
            .parse()
            .ok()
            .filter(|&i| i < map.len())
            .ok_or_else(|| GuardError::Invalid(format!("model label id {id} out of range")))?;
        let name = name.as_str().unwrap_or("O");
        let (begins, tag) = match name.split_once('-') {
            Some((bio, tag)) => (bio.eq_ignore_ascii_case("B"), tag),
            None => (false, name),
        };
        tags[i] = Tag {
            part: Part::from_tag(tag),
            begins,
        };
    }
    Ok(tags)
}

/// Character windows of `text` with their byte offsets: `WINDOW_CHARS`
/// long, each sharing `WINDOW_OVERLAP` characters with the one before.
fn char_windows(text: &str) -> Vec<(usize, &str)> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let to = (from + WINDOW_CHARS).min(chars);
        out.push((bounds[from], &text[bounds[from]..bounds[to]]));
        if to == chars {
            return out;
        }
        from = to - WINDOW_OVERLAP;
    }
}

/// Merges tagged tokens of one window into pieces.
fn aggregate(text: &str, window: &Window, tokens: &[(Tag, f32)]) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    let mut open = false;
    for (t, &(tag, p)) in tokens.iter().enumerate().skip(window.keep_from) {
        let (start, end) = window.spans[t];
        let part = tag.part.filter(|_| p >= TOKEN_THRESHOLD && start < end);
        let Some(part) = part else {
            open = false;
            continue;
        };
        let token = Piece {
            start,
            end,
            part,
            score: p,
            tokens: 1,
        };
        if open {
            if let Some(last) = out.last_mut() {
                let gap = &text[last.end.min(start)..start];
                if last.part == part && (gap.is_empty() || (!tag.begins && gap.trim().is_empty())) {
                    last.absorb(token);
                    continue;
                }
            }
        }
        out.push(token);
        open = true;
    }
    out
}

/// Unions overlapping pieces of the same part: an entity that straddles a
/// window boundary is seen twice, partly, by the two windows sharing it.
fn union_overlaps(mut pieces: Vec<Piece>) -> Vec<Piece> {
    pieces.sort_by_key(|p| (p.start, p.end));
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        if let Some(same) = out
            .iter_mut()
            .rev()
            .take_while(|q| q.end > p.start)
            .find(|q| q.part == p.part)
        {
            if p.end > same.end {
                same.absorb(p);
            }
            continue;
        }
        out.push(p);
    }
    out
}

/// Joins pieces into entities: a given name and surname with only
/// spaces, dots or an initial between them are one person; the parts of
/// a street address separated by spaces, commas or line breaks are one
/// address, and a city or state that continues an address belongs to it.
fn entities(text: &str, pieces: Vec<Piece>) -> Vec<Candidate> {
    let mut out: Vec<(Piece, Label)> = Vec::new();
    for p in pieces {
        let label = p.part.label();
        if let Some((last, last_label)) = out.last_mut() {
            let gap = &text[last.end.min(p.start)..p.start];
            let joins = match (*last_label, label) {
                (Label::Person, Label::Person) => person_gap(gap),
                (Label::Address, Label::Address | Label::Location) => {
                    crate::resolve::address_gap(gap)
                }
                _ => false,
            };
            if joins {
                last.absorb(p);
                continue;
            }
        }
        out.push((p, label));
    }
    out.into_iter()
        .map(|(p, label)| {
            let score = f64::from(p.score / p.tokens.max(1) as f32);
            Candidate {
                start: p.start,
                end: p.end,
                label,
                score,
                recognizer: "rampart",
                reason: Reason {
                    tier: Tier::Model,
                    pattern: "rampart token classifier",
                    validator: None,
                    context: Vec::new(),
                    base_score: score,
                },
            }
        })
        .collect()
}

/// Extends an entity that begins a capitalised word to the word's end:
/// the network often tags the first pieces of a rare name ("Kón" of
/// "Kónya") and not the rest.
fn complete_word(text: &str, c: &mut Candidate) {
    let begins_word = !text[..c.start]
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric);
    let capital = text[c.start..]
        .chars()
        .next()
        .is_some_and(char::is_uppercase);
    if begins_word && capital {
        c.end += text[c.end..]
            .find(|ch: char| !ch.is_alphabetic())
            .unwrap_or(text.len() - c.end);
    }
}

/// How much more a name of two or more words is worth than the network's
/// reading of one of them.
const NAME_SHAPE_BOOST: f64 = 0.15;
/// The most words a person's name extends to.
const MAX_NAME_WORDS: usize = 4;

/// Extends a person over the capitalised words and initials beside it
/// ("Frank" before "Strauser", "A Maslow" after "Makar"): the network
/// often reads one word of a rare name with confidence and hesitates
/// over the rest. A name of two words or more is stronger evidence than
/// either word, so the score rises when the span grows to one.
fn extend_person(text: &str, c: &mut Candidate) {
    if c.label != Label::Person {
        return;
    }
    let part = |ch: char| ch.is_alphabetic() || ch == '-' || ch == '\'';
    let mut words = text[c.start..c.end].split_whitespace().count();
    let before = words;
    while words < MAX_NAME_WORDS {
        let Some(head) = text[..c.start].strip_suffix(' ') else {
            break;
        };
        let from = head.trim_end_matches('.');
        let start = from
            .char_indices()
            .rev()
            .take_while(|&(_, ch)| part(ch))
            .last()
            .map_or(from.len(), |(i, _)| i);
        if !name_word(&head[start..]) {
            break;
        }
        c.start = start;
        words += 1;
    }
    while words < MAX_NAME_WORDS {
        let Some(tail) = text[c.end..].strip_prefix(' ') else {
            break;
        };
        let mut len = tail.find(|ch: char| !part(ch)).unwrap_or(tail.len());
        if len == 1 && tail[len..].starts_with('.') {
            len += 1;
        }
        if !name_word(&tail[..len]) {
            break;
        }
        c.end += 1 + len;
        words += 1;
    }
    if words >= 2 && words > before {
        c.score = (c.score + NAME_SHAPE_BOOST).min(1.0);
        c.reason.base_score = c.score;
    }
}

/// A word that can be part of a name: capitalised ("Maslow")
/// but not a word that begins sentences, or an initial ("A", "A.") but not
/// the pronoun "I".
fn name_word(word: &str) -> bool {
    use crate::coref::{capitalised, initial};
    (initial(word) && word != "I")
        || (capitalised(word) && !crate::recognizers::SENTENCE_WORDS.contains(&word))
}

/// Whether an entity the network proposed can be one. A 4-bit network
/// tags word pieces inside ordinary words ("ion" of "function"), and
/// lower-case words in text that capitalises its names ("by helicopter"
/// after "Schipluiden"); a name is a whole word, and is written in lower
/// case only where the words around it are too (chat often is).
fn plausible(text: &str, c: &Candidate) -> bool {
    let glued = |ch: Option<char>| ch.is_some_and(char::is_alphanumeric);
    let after = text[c.end..].chars().next();
    // A word directly followed by a parenthesis is a function's name.
    if glued(text[..c.start].chars().next_back()) || glued(after) || after == Some('(') {
        return false;
    }
    if !matches!(c.label, Label::Person | Label::Location)
        || text[c.start..c.end].chars().any(char::is_uppercase)
    {
        return true;
    }
    let line_start = text[..c.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[c.end..].find('\n').map_or(text.len(), |i| c.end + i);
    let before = text[line_start..c.start]
        .split_whitespace()
        .rev()
        .take(NEIGHBOURS);
    let after = text[c.end..line_end].split_whitespace().take(NEIGHBOURS);
    // "I" is capitalised even by writers who capitalise nothing else.
    let cased = |w: &&str| w.chars().any(char::is_uppercase) && *w != "I" && !w.starts_with("I'");
    !before.chain(after).any(|w| cased(&w))
}

/// Words on each side of a lower-case name that show how the text
/// around it is written.
const NEIGHBOURS: usize = 3;

/// Between two parts of one name: spaces and dots, or a middle initial.
fn person_gap(gap: &str) -> bool {
    let rest = gap.trim_start_matches([' ', '.']);
    if rest.is_empty() {
        return true;
    }
    let mut chars = rest.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic())
        && chars.as_str().trim_start_matches('.').starts_with(' ')
        && chars
            .as_str()
            .trim_start_matches('.')
            .trim_start_matches(' ')
            .is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_text_and_overlap() {
        let text: String = "é".repeat(1000);
        let w = char_windows(&text);
        assert_eq!(w[0].0, 0);
        assert_eq!(w[0].1.chars().count(), WINDOW_CHARS);
        let second = w[1].0 / 2; // 2 bytes per character
        assert_eq!(second, WINDOW_CHARS - WINDOW_OVERLAP);
        let last = w.last().unwrap();
        assert_eq!(last.0 + last.1.len(), text.len());
        assert_eq!(char_windows("").len(), 1);
    }

    #[test]
    fn fragments_and_lower_case_words_in_cased_sentences_are_not_names() {
        let at = |text: &str, s: &str, label: Label| {
            let i = text.find(s).unwrap();
            let c = crate::recognizers::candidate(
                "t",
                i..i + s.len(),
                label,
                0.9,
                Tier::Model,
                "p",
                None,
            );
            plausible(text, &c)
        };
        assert!(!at("The function returns", "ion", Label::Person));
        assert!(!at("Call len() on it.", "len", Label::Person));
        assert!(!at("see \"Len(s)\" there", "Len", Label::Person));
        assert!(!at(
            "We returned to Schipluiden by helicopter.",
            "helicopter",
            Label::Person
        ));
        assert!(at("Call len on it.", "len", Label::Address));
        assert!(at(
            "Hi. follow up with miles davidson soon",
            "miles davidson",
            Label::Person
        ));
        assert!(at(
            "From GB70 to other bank accounts german kauzar\n",
            "german kauzar",
            Label::Person
        ));
        assert!(at("Ask Miles Davidson", "Miles Davidson", Label::Person));
    }

    #[test]
    fn a_person_extends_over_the_capitalised_words_beside_it() {
        let extended = |text: &str, s: &str| {
            let i = text.find(s).unwrap();
            let mut c = crate::recognizers::candidate(
                "t",
                i..i + s.len(),
                Label::Person,
                0.4,
                Tier::Model,
                "p",
                None,
            );
            extend_person(text, &mut c);
            (text[c.start..c.end].to_string(), c.score)
        };
        let (span, score) = extended("Have you been to a Frank Strauser concert?", "Strauser");
        assert_eq!(span, "Frank Strauser");
        assert!((score - 0.55).abs() < 1e-9);
        assert_eq!(
            extended("Billing address: Makar A Maslow\n 19454", "Makar").0,
            "Makar A Maslow"
        );
        assert_eq!(
            extended("Billing address: Makar A. Maslow.", "Makar").0,
            "Makar A. Maslow"
        );
        let (span, score) = extended("Thanks. The Smith family", "Smith");
        assert_eq!(span, "Smith");
        assert!((score - 0.4).abs() < 1e-9);
        assert_eq!(extended("call BOB JONES now", "JONES").0, "JONES");
    }

    #[test]
    fn name_gaps() {
        assert!(person_gap(" "));
        assert!(person_gap(" J. "));
        assert!(person_gap(". "));
        assert!(!person_gap(" and "));
        assert!(!person_gap(", "));
    }
}
