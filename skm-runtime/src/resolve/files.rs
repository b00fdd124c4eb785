//! Secret files, read by the resolve stage: the [`Layer::Files`](crate::Layer::Files) directory (a
//! Kubernetes secret volume, Docker's `/run/secrets`) and Docker's `NAME_FILE` convention.
//!
//! A file is always read through its name in the directory (`/run/secrets/DB_PASSWORD`), never through a
//! path resolved once: Kubernetes updates a secret volume by writing a new timestamped directory and
//! swapping the `..data` symlink, so the names keep pointing at the current version. Hot reload compares a
//! [`Stamp`] of the files (device, inode, size, times; never their content) to notice a swap.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::layer::EnvSource;
use crate::capped::{read_capped, FileError};

/// Where the files layer reads from, as configured on the [`Loader`](crate::Loader).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum SecretsDir {
    /// `SKM_SECRETS_DIR` (empty disables the layer), else `/run/secrets` when it exists.
    #[default]
    Auto,
    /// A directory chosen with [`Loader::secrets_dir`](crate::Loader::secrets_dir).
    Path(PathBuf),
    /// No files layer.
    Disabled,
}

/// The directory used when neither the loader nor `SKM_SECRETS_DIR` names one.
pub(crate) const DEFAULT_DIR: &str = "/run/secrets";

impl SecretsDir {
    /// The directory to read for one load, or `None` when the layer is off.
    pub(crate) fn resolve(&self, env: &EnvSource) -> Option<PathBuf> {
        match self {
            SecretsDir::Disabled => None,
            SecretsDir::Path(p) => Some(p.clone()),
            SecretsDir::Auto => match env.get("SKM_SECRETS_DIR") {
                Some(dir) if dir.is_empty() => None,
                Some(dir) => Some(PathBuf::from(dir)),
                None => Path::new(DEFAULT_DIR).is_dir().then(|| PathBuf::from(DEFAULT_DIR)),
            },
        }
    }
}

/// Reads a secret file: its bytes with one trailing `\n` or `\r\n` removed (editors and `echo` add one;
/// Kubernetes does not). `Ok(None)` when the file does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, FileError> {
    let Some(mut bytes) = read_capped(path)? else {
        return Ok(None);
    };
    if bytes.ends_with(b"\r\n") {
        let n = bytes.len() - 2;
        bytes.truncate(n);
    } else if bytes.ends_with(b"\n") {
        let n = bytes.len() - 1;
        bytes.truncate(n);
    }
    Ok(Some(bytes))
}

/// What identifies the current version of a set of files without reading them: per file (through the
/// symlinks), its device, inode, size and modification/change times, or that it is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stamp(Vec<Option<Fingerprint>>);

/// Device, inode, size, modification time (s, ns), change time (s, ns).
type Fingerprint = (u64, u64, u64, i64, i64, i64, i64);

impl Stamp {
    /// The stamp of `paths`, in order.
    pub(crate) fn of(paths: impl IntoIterator<Item = PathBuf>) -> Stamp {
        Stamp(
            paths
                .into_iter()
                .map(|p| std::fs::metadata(p).ok().map(fingerprint))
                .collect(),
        )
    }
}

#[cfg(unix)]
fn fingerprint(m: std::fs::Metadata) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    (
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

#[cfg(not(unix))]
fn fingerprint(m: std::fs::Metadata) -> Fingerprint {
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    (
        0,
        0,
        m.len(),
        modified.as_secs() as i64,
        i64::from(modified.subsec_nanos()),
        0,
        0,
    )
}
