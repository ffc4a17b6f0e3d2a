//! `pft guard kanon`: k-anonymize the quasi-identifier columns of records
//! (JSONL objects or CSV rows with a header). Other columns pass through.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use pft_guard::kanon::{anonymize, Anonymized, Column, Kind};
use serde_json::{Map, Value};

use crate::guard::{read_input, read_json_lines, write_output};
use crate::{Failure, Outcome};

#[derive(Args)]
pub struct KanonArgs {
    /// Every combination of released quasi-identifier values occurs in at
    /// least this many records.
    #[arg(long)]
    k: usize,
    /// Quasi-identifier columns, comma-separated; a column's kind (number,
    /// date, postcode, category) may follow a colon, e.g.
    /// `age,zip:postcode,dob:date` [default kind: inferred].
    #[arg(long, value_delimiter = ',', required = true)]
    quasi: Vec<String>,
    /// Records to anonymize [default: standard input].
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write them [default: standard output].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Record format [default: csv for a .csv input, else jsonl].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Also write the information-loss report (JSON) here.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// The records in either format, with a way to put released values back.
enum Records {
    Jsonl(Vec<Map<String, Value>>),
    Csv {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

pub fn run(args: KanonArgs) -> Outcome {
    let format = args.format.unwrap_or_else(|| {
        let csv = args
            .input
            .as_deref()
            .and_then(Path::extension)
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if csv {
            Format::Csv
        } else {
            Format::Jsonl
        }
    });
    let wanted = args
        .quasi
        .iter()
        .map(|q| parse_quasi(q))
        .collect::<Result<Vec<_>, _>>()?;
    let (bytes, name) = read_input(args.input.as_deref())?;
    let mut records = match format {
        Format::Jsonl => read_jsonl(&bytes, &name)?,
        Format::Csv => read_csv(&bytes, &name)?,
    };
    let columns = wanted
        .iter()
        .map(|(column, kind)| records.column(column, *kind, &name))
        .collect::<Result<Vec<_>, _>>()?;
    let anonymized =
        anonymize(&columns, args.k).map_err(|e| Failure::Usage(format!("{name}: {e}")))?;
    records.release(&columns, &anonymized);
    let body = match &records {
        Records::Jsonl(rows) => rows
            .iter()
            .map(|r| Value::Object(r.clone()).to_string() + "\n")
            .collect::<String>()
            .into_bytes(),
        Records::Csv { header, rows } => write_csv(header, rows)?,
    };
    let report = &anonymized.report;
    let kinds: Map<String, Value> = columns
        .iter()
        .map(|c| (c.name.clone(), Value::from(c.kind.name())))
        .collect();
    let mut report_json = serde_json::to_value(report).map_err(anyhow::Error::from)?;
    report_json["kinds"] = Value::Object(kinds);
    if let Some(path) = &args.report {
        write_output(Some(path), (report_json.to_string() + "\n").as_bytes())?;
    }
    write_output(args.output.as_deref(), &body)?;
    eprintln!(
        "k = {}: {} records in {} classes (smallest {}, largest {}); information loss: NCP {:.3}, C_avg {:.2}, discernibility {}; {} cells suppressed",
        report.k,
        report.records,
        report.classes,
        report.smallest_class,
        report.largest_class,
        report.ncp,
        report.c_avg,
        report.discernibility,
        report.suppressed_cells
    );
    Ok(())
}

/// `name` or `name:kind`.
fn parse_quasi(q: &str) -> Result<(String, Option<Kind>), Failure> {
    match q.rsplit_once(':') {
        Some((column, kind)) => {
            let kind = Kind::parse(kind).ok_or_else(|| {
                Failure::Usage(format!(
                    "--quasi {q}: {kind:?} is not a kind (number, date, postcode, category)"
                ))
            })?;
            Ok((column.to_owned(), Some(kind)))
        }
        None => Ok((q.to_owned(), None)),
    }
}

fn read_jsonl(bytes: &[u8], name: &str) -> Result<Records, Failure> {
    let rows = read_json_lines(bytes, name, "not a JSON object")?
        .into_iter()
        .map(|(_, row)| row)
        .collect();
    Ok(Records::Jsonl(rows))
}

fn read_csv(bytes: &[u8], name: &str) -> Result<Records, Failure> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let bad = |e: csv::Error| Failure::Usage(format!("{name}: {e}"));
    let header = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()
        .map_err(bad)?;
    Ok(Records::Csv { header, rows })
}

fn write_csv(header: &[String], rows: &[Vec<String>]) -> Result<Vec<u8>, Failure> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header).map_err(anyhow::Error::from)?;
    for row in rows {
        writer.write_record(row).map_err(anyhow::Error::from)?;
    }
    Ok(writer.into_inner().map_err(anyhow::Error::from)?)
}

impl Records {
    /// The values of one column (`None` where a record lacks it), of the
    /// kind asked for or inferred.
    fn column(&self, column: &str, kind: Option<Kind>, name: &str) -> Result<Column, Failure> {
        let values: Vec<Option<String>> = match self {
            Records::Jsonl(rows) => {
                let mut values = Vec::with_capacity(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    values.push(match row.get(column) {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
                        Some(_) => {
                            return Err(Failure::Usage(format!(
                                "{name}, record {}: \"{column}\" is an array or object; quasi-identifiers must be single values",
                                i + 1
                            )))
                        }
                    });
                }
                if values.iter().all(Option::is_none) {
                    return Err(no_such_column(column, name));
                }
                values
            }
            Records::Csv { header, rows } => {
                let at = header
                    .iter()
                    .position(|h| h == column)
                    .ok_or_else(|| no_such_column(column, name))?;
                rows.iter()
                    .map(|row| row.get(at).filter(|v| !v.is_empty()).cloned())
                    .collect()
            }
        };
        let kind = kind.unwrap_or_else(|| Kind::infer(column, &values));
        Ok(Column {
            name: column.to_owned(),
            kind,
            values,
        })
    }

    /// Put the released values in place of the originals. A JSON value
    /// released unchanged keeps its type (a number stays a number).
    fn release(&mut self, columns: &[Column], anonymized: &Anonymized) {
        for (c, column) in columns.iter().enumerate() {
            let released = &anonymized.columns[c];
            match self {
                Records::Jsonl(rows) => {
                    for (r, row) in rows.iter_mut().enumerate() {
                        if let Some(v) = &released[r] {
                            if column.values[r].as_ref() != Some(v) {
                                row.insert(column.name.clone(), Value::String(v.clone()));
                            }
                        }
                    }
                }
                Records::Csv { header, rows } => {
                    let at = header.iter().position(|h| *h == column.name);
                    for (r, row) in rows.iter_mut().enumerate() {
                        if let Some(cell) = at.and_then(|at| row.get_mut(at)) {
                            *cell = released[r].clone().unwrap_or_default();
                        }
                    }
                }
            }
        }
    }
}

fn no_such_column(column: &str, name: &str) -> Failure {
    Failure::Usage(format!(
        "{name}: no record has a column \"{column}\"; check --quasi against the input's column names"
    ))
}
