//! Secret files, read by the resolve stage: the [`Layer::Files`](crate::Layer::Files) directory (a
//! Kubernetes secret volume, Docker's `/run/secrets`) and Docker's `NAME_FILE` convention.
//!
//! A file is always read through its name in the directory (`/run/secrets/DB_PASSWORD`), never through a
//! path resolved once: Kubernetes updates a secret volume by writing a new timestamped directory and
//! swapping the `..data` symlink, so the names keep pointing at the current version. Hot reload compares a
//! [`Stamp`] of the files (device, inode, size, times; never their content) to notice a swap.

use std::io;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::layer::EnvSource;

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

/// The largest secret file (and `.env` file) a load reads: 1 MiB. A secret is a few KiB at most; the cap
/// keeps `/dev/zero` or a runaway log named by mistake from exhausting memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a secret file could not be read. Names the problem, never a byte of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileError {
    /// Not a regular file: a FIFO, a device, a socket or a directory (a FIFO would block the load forever).
    NotRegular(&'static str),
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// The read did not finish within the load's deadline (a hung network file system).
    TimedOut(std::time::Duration),
    /// The operating system refused (permission denied, ...).
    Io(io::ErrorKind),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::NotRegular(what) => write!(f, "it is {what}, not a regular file"),
            FileError::TooLarge => write!(
                f,
                "it is larger than the {} KiB cap on secret files",
                MAX_FILE_BYTES / 1024
            ),
            FileError::TimedOut(d) => write!(f, "the read did not finish within the load deadline of {d:?}"),
            FileError::Io(kind) => write!(f, "{kind}"),
        }
    }
}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> Self {
        FileError::Io(e.kind())
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

/// Reads a regular file of at most [`MAX_FILE_BYTES`] whole; `Ok(None)` when it does not exist.
///
/// The file is opened without blocking and checked through its open handle, so a FIFO (whose open or read
/// would wait for a writer forever) or a device is refused at once, and nothing can swap the checked file
/// for another between the check and the read.
pub(crate) fn read_capped(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, FileError> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(kind_of(&meta)));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge);
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    // The size may grow after the check: the cap holds for what is read, too.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(FileError::TooLarge);
    }
    Ok(Some(bytes))
}

/// What a file that is not a regular file is, in words.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    "a special file"
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
