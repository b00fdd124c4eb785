//! The store's files on disk: names of path files, private directories, the lock, atomic replacement.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::Fail;

pub(super) const SECRETS_DIR: &str = "secrets";
pub(super) const LOCK_FILE: &str = "lock";
/// The store's index: its identity and each path's write count (see [`super::index`]).
pub(super) const INDEX_FILE: &str = "index";
pub(super) const SUFFIX: &str = ".skm";
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// The file name of `path`: see the module docs.
///
/// Not the `percent-encoding` crate: [`path_of`] must refuse a malformed escape (such a file is not a store
/// file), which the crate's decoder lets through, and the crate would be one more in the default build.
pub(super) fn file_name(path: &str) -> Result<String, Fail> {
    if path.is_empty() {
        return Err(Fail::Invalid("the path is empty".into()));
    }
    let mut name = String::with_capacity(path.len() + SUFFIX.len());
    for b in path.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(SUFFIX);
    if name.len() > 255 {
        return Err(Fail::Invalid(format!(
            "path `{path}` is too long for the local store (its file name would exceed 255 bytes)"
        )));
    }
    Ok(name)
}

/// The path stored in file `name`, or `None` for files that are not store files.
pub(super) fn path_of(name: &str) -> Option<String> {
    let stem = name.strip_suffix(SUFFIX)?;
    if stem.is_empty() || stem.starts_with('.') {
        return None;
    }
    let mut bytes = Vec::with_capacity(stem.len());
    let mut rest = stem.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Creates `dir` and missing parents with mode 0700.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes a rename or unlink in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Opens (creating it if `create`) the lock file.
pub(super) fn open_lock(path: &Path, create: bool) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(create).create(create).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Temp file in the same directory, write, fsync, rename over `name`, fsync the directory.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Fail> {
    let io = |what: &str, e: std::io::Error| Fail::io(what, &dir.join(name), e);
    // tempfile creates the file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| io("create a temporary file for", e))?;
    tmp.write_all(bytes).map_err(|e| io("write", e))?;
    tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
    tmp.persist(dir.join(name)).map_err(|e| io("replace", e.error))?;
    sync_dir(dir).map_err(|e| io("sync the directory of", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        for path in ["auth/jwt", "DB", "a.b", "ünï/côde", "-_", "%41", ".hidden", "x y"] {
            let name = file_name(path).ok().unwrap();
            assert!(!name.starts_with('.'), "{name}");
            assert_eq!(path_of(&name).as_deref(), Some(path), "{name}");
        }
        assert_eq!(file_name("auth/jwt").ok().unwrap(), "auth%2Fjwt.skm");
        assert_ne!(file_name("DB").ok(), file_name("db").ok());
        assert!(file_name("").is_err());
        assert!(file_name(&"x/".repeat(100)).is_err());
        assert_eq!(path_of(".tmp-abc.skm"), None);
        assert_eq!(path_of("lock"), None);
        assert_eq!(path_of("index"), None);
        assert_eq!(path_of("%4.skm"), None);
    }
}
