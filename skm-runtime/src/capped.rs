//! The bounded read of a regular file, shared by secret files ([`crate::resolve`]'s files layer) and `.env`
//! files ([`crate::dotenv`]): at most [`MAX_FILE_BYTES`], opened without blocking. A leaf: it imports
//! nothing of this crate.

use std::io;
use std::path::Path;

use zeroize::Zeroizing;

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
