//! The files one load reads before its layers are resolved, gathered on a blocking thread under the load's
//! deadline: a file read is synchronous, and one that hangs (a stuck network file system) must not hold a
//! load past its deadline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zeroize::Zeroizing;

use super::files::read;
use crate::capped::FileError;
use crate::dotenv::{DotenvError, DotenvFile};

/// One secret file as read: its bytes, `None` when it does not exist, or why it could not be read.
type FileRead = Result<Option<Zeroizing<Vec<u8>>>, FileError>;

/// What one load read from disk before the layers were resolved: every secret file it may need and the
/// `.env` file, read together on a blocking thread under the load's deadline, so that no file read can
/// hold a load past it.
#[derive(Default)]
pub(crate) struct Reads {
    files: HashMap<PathBuf, FileRead>,
    /// The parsed `.env` file, when it was asked for (taken by the resolve stage).
    pub(crate) dotenv: Option<Result<Option<DotenvFile>, DotenvError>>,
}

impl Reads {
    /// Reads `paths` and the `.env` file at `dotenv`, giving up at `deadline` (what is unread by then
    /// fails with [`FileError::TimedOut`]).
    pub(crate) async fn gather(paths: Vec<PathBuf>, dotenv: Option<PathBuf>, deadline: Option<Duration>) -> Reads {
        if paths.is_empty() && dotenv.is_none() {
            return Reads::default();
        }
        let done = Arc::new(Mutex::new(Reads::default()));
        let filled = done.clone();
        let (want, want_dotenv) = (paths.clone(), dotenv.clone());
        let task = tokio::task::spawn_blocking(move || {
            for path in want {
                let r = read(&path);
                filled.lock().unwrap_or_else(|p| p.into_inner()).files.insert(path, r);
            }
            if let Some(path) = want_dotenv {
                let r = DotenvFile::read(&path);
                filled.lock().unwrap_or_else(|p| p.into_inner()).dotenv = Some(r);
            }
        });
        let finished = match deadline {
            Some(d) => tokio::time::timeout(d, task).await.is_ok(),
            None => task.await.is_ok(),
        };
        let mut reads = std::mem::take(&mut *done.lock().unwrap_or_else(|p| p.into_inner()));
        if !finished {
            let d = deadline.unwrap_or_default();
            for path in paths {
                reads.files.entry(path).or_insert(Err(FileError::TimedOut(d)));
            }
            if let Some(path) = dotenv {
                reads
                    .dotenv
                    .get_or_insert_with(|| Err(DotenvError::timed_out(&path, d)));
            }
        }
        reads
    }

    /// The read of `path`, or a read now when the load did not gather it.
    pub(crate) fn file(&self, path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, FileError> {
        match self.files.get(path) {
            Some(r) => r.clone(),
            None => read(path),
        }
    }
}
