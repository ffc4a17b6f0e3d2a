//! The privacy-budget ledger: a durable record of every DP-SGD step, keyed
//! by dataset identity (the SHA-256 of its content) and run.
//!
//! Invariant: a step is recorded, and the record is on stable storage,
//! *before* anything computed from that step may be released. The API
//! enforces the order with [`StepReceipt`]: only a committed write produces
//! one, and a trainer applies a step's update only when it holds the
//! step's receipt. A crash between the write and the release leaves the
//! ledger counting one step that was never released, which over-reports;
//! no crash can make it under-report.
//!
//! Durability: SQLite in WAL mode with `synchronous=FULL`, so a commit
//! returns only after the WAL is synced. Steps are numbered from 1 per run
//! and must arrive in order: a gap is an error (a step would go missing),
//! and re-recording an already recorded step with the same parameters is a
//! no-op (a resumed run replays its last step), so nothing is counted twice.
//!
//! The ledger stores segments (runs of steps with the same noise multiplier
//! and sample rate), which is exactly the history the accountants analyse.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pft_accountant::{pld, AccountantError, Method, Segment};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("ledger database {path}: {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("cannot read dataset {path}: {source}")]
    Dataset {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("dataset id '{0}' is not a SHA-256 digest; expected 64 hexadecimal characters")]
    BadDatasetId(String),

    #[error(
        "run '{name}' on dataset {dataset} already exists with accountant {existing_accountant} \
         and delta {existing_delta}; reuse those settings to resume it, or choose a new run name"
    )]
    RunMismatch {
        name: String,
        dataset: DatasetId,
        existing_accountant: String,
        existing_delta: f64,
    },

    #[error("no run with id {0} in this ledger")]
    UnknownRun(i64),

    #[error(
        "step {step} of run {run} would leave a gap: the last recorded step is {last}; \
         record steps in order"
    )]
    StepGap { run: i64, step: u64, last: u64 },

    #[error(
        "steps {first}..={last} of run {run} overlap steps already recorded with other \
         parameters; a resumed run must replay its steps with the same noise multiplier and \
         sample rate"
    )]
    ConflictingReplay { run: i64, first: u64, last: u64 },

    #[error(
        "ledger {path} has schema version {found}, newer than this build understands ({expected})"
    )]
    SchemaVersion {
        path: PathBuf,
        found: i64,
        expected: i64,
    },

    #[error(transparent)]
    Accountant(#[from] AccountantError),
}

pub type Result<T> = std::result::Result<T, LedgerError>;

/// A dataset's identity: the SHA-256 of its bytes, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct DatasetId(String);

impl DatasetId {
    pub fn parse(text: &str) -> Result<Self> {
        let lower = text.trim().to_ascii_lowercase();
        if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(DatasetId(lower))
        } else {
            Err(LedgerError::BadDatasetId(text.to_string()))
        }
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        DatasetId(hex::encode(Sha256::digest(bytes)))
    }

    pub fn of_reader(mut reader: impl Read) -> io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(DatasetId(hex::encode(hasher.finalize())))
    }

    pub fn of_file(path: &Path) -> Result<Self> {
        File::open(path)
            .and_then(DatasetId::of_reader)
            .map_err(|source| LedgerError::Dataset {
                path: path.to_path_buf(),
                source,
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a run accounts for its privacy.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub name: String,
    pub accountant: Method,
    pub delta: f64,
    pub target_epsilon: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RunId(i64);

impl RunId {
    pub fn get(self) -> i64 {
        self.0
    }
}

/// Proof that steps up to [`StepReceipt::step`] of a run are on stable
/// storage. Only the ledger makes these; release a step's update only
/// while holding its receipt.
#[must_use = "a receipt proves the step is durable; release the step's update only with it"]
#[derive(Debug, PartialEq, Eq)]
pub struct StepReceipt {
    run: RunId,
    step: u64,
    replayed: bool,
}

impl StepReceipt {
    pub fn run(&self) -> RunId {
        self.run
    }

    /// The last step this receipt covers.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// True when every covered step had already been recorded (a resumed
    /// run replaying its last steps): nothing new was spent.
    pub fn replayed(&self) -> bool {
        self.replayed
    }
}

/// Privacy spent by one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSpend {
    pub run: String,
    pub accountant: Method,
    pub delta: f64,
    pub target_epsilon: Option<f64>,
    pub steps: u64,
    /// Epsilon spent at `delta` under the run's accountant; `None` before
    /// its first step.
    pub epsilon: Option<f64>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub history: Vec<Segment>,
}

/// Privacy spent on one dataset, run by run and in total.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetSpend {
    pub dataset: DatasetId,
    pub label: Option<String>,
    pub runs: Vec<RunSpend>,
    /// Every run's steps composed together (PLD), at the smallest delta any
    /// run uses; `None` while no steps are recorded.
    pub total: Option<TotalSpend>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TotalSpend {
    pub epsilon: f64,
    pub delta: f64,
    pub accountant: Method,
    pub steps: u64,
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = |source| LedgerError::Database {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db)?;
        if version > SCHEMA_VERSION {
            return Err(LedgerError::SchemaVersion {
                path: path.to_path_buf(),
                found: version,
                expected: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS datasets (
                 id TEXT PRIMARY KEY,
                 label TEXT,
                 created_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY,
                 dataset_id TEXT NOT NULL REFERENCES datasets(id),
                 name TEXT NOT NULL,
                 accountant TEXT NOT NULL,
                 delta REAL NOT NULL,
                 target_epsilon REAL,
                 created_at INTEGER NOT NULL,
                 UNIQUE (dataset_id, name)
             );
             CREATE TABLE IF NOT EXISTS segments (
                 run_id INTEGER NOT NULL REFERENCES runs(id),
                 first_step INTEGER NOT NULL,
                 last_step INTEGER NOT NULL,
                 noise_multiplier REAL NOT NULL,
                 sample_rate REAL NOT NULL,
                 PRIMARY KEY (run_id, first_step)
             );
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .map_err(db)?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        database_error(&self.path)
    }

    /// Creates the run, or resumes it if a run of that name already exists
    /// on the dataset with the same accountant and delta.
    pub fn open_run(
        &mut self,
        dataset: &DatasetId,
        label: Option<&str>,
        spec: &RunSpec,
        now: SystemTime,
    ) -> Result<RunId> {
        pft_accountant::mechanism::validate_delta(spec.delta)?;
        if let Some(target) = spec.target_epsilon {
            pft_accountant::mechanism::validate_target_epsilon(target)?;
        }
        let created = unix_seconds(now);
        let db = database_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        tx.execute(
            "INSERT INTO datasets (id, label, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET label = COALESCE(excluded.label, datasets.label)",
            params![dataset.as_str(), label, created],
        )
        .map_err(&db)?;
        let existing: Option<(i64, String, f64)> = tx
            .query_row(
                "SELECT id, accountant, delta FROM runs WHERE dataset_id = ?1 AND name = ?2",
                params![dataset.as_str(), spec.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(&db)?;
        let id = match existing {
            Some((id, accountant, delta)) => {
                if accountant != spec.accountant.name() || delta != spec.delta {
                    return Err(LedgerError::RunMismatch {
                        name: spec.name.clone(),
                        dataset: dataset.clone(),
                        existing_accountant: accountant,
                        existing_delta: delta,
                    });
                }
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO runs (dataset_id, name, accountant, delta, target_epsilon, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        dataset.as_str(),
                        spec.name,
                        spec.accountant.name(),
                        spec.delta,
                        spec.target_epsilon,
                        created
                    ],
                )
                .map_err(&db)?;
                tx.last_insert_rowid()
            }
        };
        tx.commit().map_err(&db)?;
        Ok(RunId(id))
    }

    /// Records one step; see [`Ledger::record_steps`].
    pub fn record_step(
        &mut self,
        run: RunId,
        step: u64,
        noise_multiplier: f64,
        sample_rate: f64,
    ) -> Result<StepReceipt> {
        self.record_steps(run, step, 1, noise_multiplier, sample_rate)
    }

    /// Records steps `first..first+count` of `run`, durably, and returns the
    /// receipt that allows releasing them.
    ///
    /// Steps already recorded with the same parameters are accepted again
    /// without being counted twice (a resumed run replays them); with other
    /// parameters they are an error. A `first` past the next unrecorded
    /// step is an error: it would leave steps uncounted.
    pub fn record_steps(
        &mut self,
        run: RunId,
        first: u64,
        count: u64,
        noise_multiplier: f64,
        sample_rate: f64,
    ) -> Result<StepReceipt> {
        Segment::new(noise_multiplier, sample_rate, count)?;
        let end =
            first
                .checked_add(count - 1)
                .filter(|_| first >= 1)
                .ok_or(LedgerError::StepGap {
                    run: run.0,
                    step: first,
                    last: 0,
                })?;
        let db = database_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let known: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
                [run.0],
                |r| r.get(0),
            )
            .map_err(&db)?;
        if !known {
            return Err(LedgerError::UnknownRun(run.0));
        }
        let last_segment: Option<(i64, i64, f64, f64)> = tx
            .query_row(
                "SELECT first_step, last_step, noise_multiplier, sample_rate FROM segments
                 WHERE run_id = ?1 ORDER BY first_step DESC LIMIT 1",
                [run.0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(&db)?;
        let last = last_segment.map_or(0, |s| s.1 as u64);
        if first > last + 1 {
            return Err(LedgerError::StepGap {
                run: run.0,
                step: first,
                last,
            });
        }
        // Steps up to `last` are replays: they must match what was recorded.
        let replay_end = end.min(last);
        if first <= replay_end {
            let conflicts: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM segments
                     WHERE run_id = ?1 AND last_step >= ?2 AND first_step <= ?3
                       AND (noise_multiplier != ?4 OR sample_rate != ?5)",
                    params![
                        run.0,
                        first as i64,
                        replay_end as i64,
                        noise_multiplier,
                        sample_rate
                    ],
                    |r| r.get(0),
                )
                .map_err(&db)?;
            if conflicts > 0 {
                return Err(LedgerError::ConflictingReplay {
                    run: run.0,
                    first,
                    last: replay_end,
                });
            }
        }
        let replayed = end <= last;
        if !replayed {
            let new_first = last + 1;
            match last_segment {
                Some((seg_first, _, sigma, q)) if sigma == noise_multiplier && q == sample_rate => {
                    tx.execute(
                        "UPDATE segments SET last_step = ?1 WHERE run_id = ?2 AND first_step = ?3",
                        params![end as i64, run.0, seg_first],
                    )
                    .map_err(&db)?;
                }
                _ => {
                    tx.execute(
                        "INSERT INTO segments (run_id, first_step, last_step, noise_multiplier, sample_rate)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![run.0, new_first as i64, end as i64, noise_multiplier, sample_rate],
                    )
                    .map_err(&db)?;
                }
            }
        }
        // The commit syncs the WAL (synchronous=FULL): only now may the
        // caller release anything computed from these steps.
        tx.commit().map_err(&db)?;
        Ok(StepReceipt {
            run,
            step: end,
            replayed,
        })
    }

    /// The last recorded step of a run (0 before the first).
    pub fn last_step(&self, run: RunId) -> Result<u64> {
        let last: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(last_step) FROM segments WHERE run_id = ?1",
                [run.0],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        Ok(last.unwrap_or(0) as u64)
    }

    /// A run's history, as the accountants analyse it.
    pub fn run_history(&self, run: RunId) -> Result<Vec<Segment>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT first_step, last_step, noise_multiplier, sample_rate FROM segments
                 WHERE run_id = ?1 ORDER BY first_step",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([run.0], |r| {
                let first: i64 = r.get(0)?;
                let last: i64 = r.get(1)?;
                Ok(Segment {
                    noise_multiplier: r.get(2)?,
                    sample_rate: r.get(3)?,
                    steps: (last - first + 1) as u64,
                })
            })
            .map_err(self.db())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.db())
    }

    /// Spend per dataset (all datasets, or one) and per run.
    pub fn report(&self, dataset: Option<&DatasetId>) -> Result<Vec<DatasetSpend>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, label FROM datasets WHERE ?1 IS NULL OR id = ?1 ORDER BY created_at, id",
            )
            .map_err(self.db())?;
        let datasets: Vec<(String, Option<String>)> = stmt
            .query_map([dataset.map(DatasetId::as_str)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(self.db())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.db())?;
        datasets
            .into_iter()
            .map(|(id, label)| self.dataset_spend(DatasetId(id), label))
            .collect()
    }

    fn dataset_spend(&self, dataset: DatasetId, label: Option<String>) -> Result<DatasetSpend> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, name, accountant, delta, target_epsilon, created_at FROM runs
                 WHERE dataset_id = ?1 ORDER BY created_at, id",
            )
            .map_err(self.db())?;
        let rows: Vec<(i64, String, String, f64, Option<f64>, i64)> = stmt
            .query_map([dataset.as_str()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(self.db())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.db())?;
        let mut runs = Vec::with_capacity(rows.len());
        let mut combined: Vec<Segment> = Vec::new();
        for (id, name, accountant, delta, target_epsilon, created_at) in rows {
            let accountant: Method = accountant.parse()?;
            let history = self.run_history(RunId(id))?;
            let steps = history.iter().map(|s| s.steps).sum();
            let epsilon = if history.is_empty() {
                None
            } else {
                Some(accountant.epsilon(&history, delta)?.epsilon)
            };
            combined.extend_from_slice(&history);
            runs.push(RunSpend {
                run: name,
                accountant,
                delta,
                target_epsilon,
                steps,
                epsilon,
                created_at: created_at.max(0) as u64,
                history,
            });
        }
        let total = if combined.is_empty() {
            None
        } else {
            let delta = runs.iter().map(|r| r.delta).fold(f64::INFINITY, f64::min);
            Some(TotalSpend {
                epsilon: pld::epsilon(&combined, delta)?.epsilon,
                delta,
                accountant: Method::Pld,
                steps: combined.iter().map(|s| s.steps).sum(),
            })
        };
        Ok(DatasetSpend {
            dataset,
            label,
            runs,
            total,
        })
    }
}

/// Wraps a database error with the ledger's path. A free function, so a
/// method can hold it while the connection is mutably borrowed.
fn database_error(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Database {
        path: path.to_path_buf(),
        source,
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
