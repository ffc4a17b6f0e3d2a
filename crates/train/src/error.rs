use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },

    #[error("{path}, line {line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{file}: {message}")]
    Config { file: PathBuf, message: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    #[error(transparent)]
    Accountant(#[from] pft_accountant::AccountantError),

    #[error(transparent)]
    Ledger(#[from] pft_ledger::LedgerError),

    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        TrainError::Model {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;
