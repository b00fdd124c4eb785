//! Small helpers shared by the commands: reading one secret, JSON objects, times, files.

use std::path::Path;
use std::time::SystemTime;

use secrecy::ExposeSecret;
use skm_runtime::backend::{AdminBackend, FailureKind, FetchRequest, SecretPayload, SecretValue, VersionPin};

use crate::Fail;

/// Reads one secret: `Ok(None)` when it does not exist.
pub(crate) async fn fetch_one(
    backend: &dyn AdminBackend,
    path: &str,
    version: VersionPin,
) -> Result<Option<SecretPayload>, Fail> {
    let request = FetchRequest {
        path: path.to_string(),
        version,
    };
    let mut results = backend.fetch(std::slice::from_ref(&request)).await;
    match results.pop() {
        Some(Ok(payload)) => Ok(Some(payload)),
        Some(Err(e)) if e.kind == FailureKind::NotFound => Ok(None),
        Some(Err(e)) => Err(Fail::Failed(format!(
            "cannot read `{path}` from {}: {e}",
            backend.name()
        ))),
        None => Err(Fail::Failed(format!(
            "{} returned no result for `{path}`",
            backend.name()
        ))),
    }
}

/// Parses a version given on the command line: a number, `previous`, an AWS stage label, or a version id.
///
pub(crate) fn parse_version(s: &str) -> VersionPin {
    if let Ok(n) = s.parse::<u64>() {
        return VersionPin::Number(n);
    }
    if s.eq_ignore_ascii_case("previous") {
        return VersionPin::Previous;
    }
    if s.eq_ignore_ascii_case("current") {
        return VersionPin::Current;
    }
    if s.starts_with("AWS") && s.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        VersionPin::stage(s.to_string())
    } else {
        VersionPin::id(s.to_string())
    }
}

/// The JSON object a text secret holds, if it holds one.
pub(crate) fn as_object(value: &SecretValue) -> Option<serde_json::Map<String, serde_json::Value>> {
    match value {
        SecretValue::Text(t) => serde_json::from_str(t.expose_secret()).ok(),
        SecretValue::Binary(_) => None,
    }
}

/// A key's value as the loader reads it: strings as-is, other JSON as its text; `None` for null or absent.
pub(crate) fn key_text(object: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    match object.get(key)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A text value holding `object`.
pub(crate) fn object_value(object: &serde_json::Map<String, serde_json::Value>) -> SecretValue {
    SecretValue::text(serde_json::Value::Object(object.clone()).to_string())
}

/// Sets `key` in the current value of `path` (a JSON object, or nothing yet), keeping the other keys.
///
/// This is a read and a merge only: the caller writes with `create_only` (so nothing can be lost) or uses
/// [`write_key`], which checks-and-sets where the backend can.
pub(crate) async fn with_key(
    backend: &dyn AdminBackend,
    path: &str,
    key: &str,
    value: String,
) -> Result<SecretValue, Fail> {
    let mut object = match fetch_one(backend, path, VersionPin::Current).await? {
        None => serde_json::Map::new(),
        Some(current) => as_object(&current.value).ok_or_else(|| not_an_object(path, key))?,
    };
    object.insert(key.to_string(), serde_json::Value::String(value));
    Ok(object_value(&object))
}

fn not_an_object(path: &str, key: &str) -> Fail {
    Fail::Failed(format!(
        "`{path}` does not hold a JSON object, so key `{key}` cannot be set: write the whole value without --key"
    ))
}

/// How a key write went: its new version, and whether a concurrent write could have been lost.
pub(crate) struct KeyWrite {
    pub version: String,
    /// `false` when the backend offers no way to make the read-merge-write atomic.
    pub atomic: bool,
}

/// A JSON object secret as read: `None` when the path does not exist yet.
pub(crate) type Object = serde_json::Map<String, serde_json::Value>;

/// Sets `key` to `value` in the JSON object at `path`, keeping the other keys, without losing a concurrent
/// writer's update where the backend can guarantee it.
///
/// A backend that merges under a lock of its own ([`AdminBackend::merge_key`], the local store) does it. A
/// backend with check-and-set ([`AdminBackend::supports_cas`]) goes through [`update_object`]. Others read,
/// merge and write; the result says so, and the caller tells the user plainly (once).
pub(crate) async fn write_key(
    backend: &dyn AdminBackend,
    path: &str,
    key: &str,
    value: String,
) -> Result<KeyWrite, Fail> {
    if let Some(written) = backend.merge_key(path, key, &value).await {
        return Ok(KeyWrite {
            version: written?,
            atomic: true,
        });
    }
    update_object(backend, path, |current| {
        let mut object = match current {
            None => serde_json::Map::new(),
            Some(Ok(object)) => object,
            Some(Err(())) => return Err(not_an_object(path, key)),
        };
        object.insert(key.to_string(), serde_json::Value::String(value.clone()));
        Ok(object)
    })
    .await
}

/// Read → merge → write of the JSON object at `path`, with check-and-set where the backend has it: the
/// runtime's [`update`](skm_runtime::backend::update::update), which reads again, merges again and retries on
/// a check-and-set conflict (up to [`CAS_ATTEMPTS`](skm_runtime::backend::update::CAS_ATTEMPTS) times, with
/// the fan-out's jittered backoff), and writes unchecked where the backend has no check-and-set (said in
/// [`KeyWrite::atomic`]).
///
/// `merge` gets the current object (`None`: no secret yet; `Some(Err(()))`: a value that is not a JSON
/// object) and returns the object to write, or why not.
pub(crate) async fn update_object<F>(backend: &dyn AdminBackend, path: &str, mut merge: F) -> Result<KeyWrite, Fail>
where
    F: FnMut(Option<Result<Object, ()>>) -> Result<Object, Fail>,
{
    use skm_runtime::backend::update::{update, UpdateError};
    let written = update(backend, path, |current| {
        let object = merge(current.map(|value| as_object(value).ok_or(())))?;
        Ok(object_value(&object))
    })
    .await;
    match written {
        Ok(w) => Ok(KeyWrite {
            version: w.version,
            atomic: w.atomic,
        }),
        Err(UpdateError::Read(e)) => Err(Fail::Failed(format!(
            "cannot read `{path}` from {}: {e}",
            backend.name()
        ))),
        Err(UpdateError::Merge(fail)) => Err(fail),
        Err(UpdateError::Write(e)) => Err(e.into()),
        Err(UpdateError::KeptChanging { attempts }) => Err(Fail::Failed(format!(
            "`{path}` kept changing under {attempts} check-and-set attempts on {}: nothing written by this run; \
             try again",
            backend.name()
        ))),
    }
}

/// The plain warning for a backend that cannot make a key write atomic; said once per run.
pub(crate) fn non_atomic_warning(backend: &str) -> String {
    format!(
        "{backend} cannot set one key atomically here: the other keys were read and written back, so a \
         concurrent write to the same secret in between would be lost; run key writes one at a time"
    )
}

/// `2024-05-01T12:34:56Z` for a time (RFC 3339, UTC, whole seconds).
pub(crate) fn format_time(t: SystemTime) -> String {
    let utc = time::OffsetDateTime::from(t);
    utc.replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

/// Standard base64 with padding, for binary values shown with `--reveal --json`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Equal bytes, compared in constant time: the comparison of a secret with a guess must not tell how many
/// leading bytes matched.
pub(crate) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// The temporary file [`write_atomic`] writes first: next to `path`, named `<name>.skm-XXXXXX.env`, so that
/// the ignore patterns that keep `path` out of git (`.env`, `.env.*`, `*.env`) keep a left-over copy out too
/// when a crash interrupts the write.
pub(crate) fn temp_beside(path: &Path, mode: u32) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{name}.skm-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".env");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder.tempfile_in(dir)
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory ([`temp_beside`]),
/// fsynced, then renamed over the target, so that a crash leaves the old file or the new one, never half of
/// one. The temporary file is removed on any error.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = temp_beside(path, mode.unwrap_or(0o600))?;
    file.write_all(contents)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Persist the rename itself.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The permission bits of `path`, on Unix.
pub(crate) fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skm_runtime::backend::PutRequest;
    use std::time::UNIX_EPOCH;

    /// A backend whose first put is beaten by another writer: the key write must see the conflict, read
    /// again and keep both keys.
    #[derive(Debug)]
    struct Raced {
        inner: skm_runtime::backend::MemoryBackend,
        puts: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl skm_runtime::backend::Backend for Raced {
        fn name(&self) -> String {
            "raced memory".into()
        }
        async fn fetch(&self, requests: &[FetchRequest]) -> Vec<skm_runtime::backend::FetchResult> {
            self.inner.fetch(requests).await
        }
    }

    #[async_trait::async_trait]
    impl AdminBackend for Raced {
        async fn put(&self, request: PutRequest) -> Result<String, skm_runtime::backend::AdminError> {
            if self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                // Another writer lands between our read and our write.
                let theirs = SecretValue::text(r#"{"a":"1","theirs":"2"}"#);
                self.inner.put(PutRequest::new(&request.path, theirs)).await?;
            }
            self.inner.put(request).await
        }
        async fn list(
            &self,
            prefix: &str,
        ) -> Result<Vec<skm_runtime::backend::ListEntry>, skm_runtime::backend::AdminError> {
            self.inner.list(prefix).await
        }
        async fn delete(
            &self,
            path: &str,
            mode: skm_runtime::backend::DeleteMode,
        ) -> Result<(), skm_runtime::backend::AdminError> {
            self.inner.delete(path, mode).await
        }
        async fn versions(
            &self,
            path: &str,
        ) -> Result<Vec<skm_runtime::backend::VersionInfo>, skm_runtime::backend::AdminError> {
            self.inner.versions(path).await
        }
        fn supports_cas(&self) -> bool {
            self.inner.supports_cas()
        }
    }

    #[tokio::test]
    async fn a_check_and_set_conflict_is_retried_and_loses_nothing() {
        let inner = skm_runtime::backend::MemoryBackend::new();
        inner.insert("app/x", SecretValue::text(r#"{"a":"1"}"#));
        let raced = Raced {
            inner: inner.clone(),
            puts: Default::default(),
        };
        let write = update_object(&raced, "app/x", |current| {
            let mut o = current.unwrap().unwrap();
            o.insert("ours".into(), serde_json::Value::String("3".into()));
            Ok(o)
        })
        .await
        .unwrap();
        assert!(write.atomic);
        // Two of ours: the one check-and-set refused, and the retry after reading again.
        assert_eq!(raced.puts.load(std::sync::atomic::Ordering::SeqCst), 2);
        let now = fetch_one(&raced, "app/x", VersionPin::Current).await.unwrap().unwrap();
        let object = as_object(&now.value).unwrap();
        assert_eq!(
            key_text(&object, "theirs").as_deref(),
            Some("2"),
            "the other writer's key was lost"
        );
        assert_eq!(key_text(&object, "ours").as_deref(), Some("3"));
        assert_eq!(write.version, "3");
    }

    #[tokio::test]
    async fn a_backend_without_check_and_set_writes_unchecked_and_says_so() {
        #[derive(Debug)]
        struct Plain(skm_runtime::backend::MemoryBackend);
        #[async_trait::async_trait]
        impl skm_runtime::backend::Backend for Plain {
            fn name(&self) -> String {
                "plain".into()
            }
            async fn fetch(&self, requests: &[FetchRequest]) -> Vec<skm_runtime::backend::FetchResult> {
                self.0.fetch(requests).await
            }
        }
        #[async_trait::async_trait]
        impl AdminBackend for Plain {
            async fn put(&self, request: PutRequest) -> Result<String, skm_runtime::backend::AdminError> {
                assert!(request.expected_version.is_none() && !request.create_only);
                self.0.put(request).await
            }
            async fn list(
                &self,
                p: &str,
            ) -> Result<Vec<skm_runtime::backend::ListEntry>, skm_runtime::backend::AdminError> {
                self.0.list(p).await
            }
            async fn delete(
                &self,
                p: &str,
                m: skm_runtime::backend::DeleteMode,
            ) -> Result<(), skm_runtime::backend::AdminError> {
                self.0.delete(p, m).await
            }
            async fn versions(
                &self,
                p: &str,
            ) -> Result<Vec<skm_runtime::backend::VersionInfo>, skm_runtime::backend::AdminError> {
                self.0.versions(p).await
            }
        }
        let plain = Plain(skm_runtime::backend::MemoryBackend::new());
        let write = update_object(&plain, "app/y", |_| Ok(Object::new())).await.unwrap();
        assert!(!write.atomic);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn a_left_over_temp_file_is_ignored_like_its_target() {
        // The patterns people write for env files; the temporary copy of each must match one of them.
        fn glob(pattern: &str, name: &str) -> bool {
            match pattern.split_once('*') {
                None => pattern == name,
                Some((head, tail)) => {
                    name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        for (target, pattern) in [
            (".env", ".env.*"),
            (".env", "*.env"),
            ("prod.env", "*.env"),
            (".env.local", ".env.*"),
        ] {
            let temp = temp_beside(&dir.path().join(target), 0o600).unwrap();
            let name = temp.path().file_name().unwrap().to_str().unwrap().to_string();
            assert!(glob(pattern, &name), "`{name}` (for {target}) escapes `{pattern}`");
        }
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_eq(b"abc", b"abc"));
        assert!(!constant_eq(b"abc", b"abd"));
        assert!(!constant_eq(b"abc", b"ab"));
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096);
        assert_eq!(format_time(t), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn versions_parse_by_shape() {
        assert_eq!(parse_version("3"), VersionPin::Number(3));
        assert_eq!(parse_version("previous"), VersionPin::Previous);
        assert_eq!(parse_version("AWSPREVIOUS"), VersionPin::stage("AWSPREVIOUS"));
        assert_eq!(
            parse_version("a1b2c3d4-0000-1111-2222-333344445555"),
            VersionPin::id("a1b2c3d4-0000-1111-2222-333344445555")
        );
    }
}
