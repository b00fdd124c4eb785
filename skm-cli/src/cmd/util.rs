//! Small helpers shared by the commands: reading one secret, JSON objects, times, files.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

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
pub(crate) async fn with_key(
    backend: &dyn AdminBackend,
    path: &str,
    key: &str,
    value: String,
) -> Result<SecretValue, Fail> {
    let mut object = match fetch_one(backend, path, VersionPin::Current).await? {
        None => serde_json::Map::new(),
        Some(current) => as_object(&current.value).ok_or_else(|| {
            Fail::Failed(format!(
                "`{path}` does not hold a JSON object, so key `{key}` cannot be set: write the whole value \
                 without --key"
            ))
        })?,
    };
    object.insert(key.to_string(), serde_json::Value::String(value));
    Ok(object_value(&object))
}

/// `2024-05-01T12:34:56Z` for a time, without a date library.
pub(crate) fn format_time(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Standard base64 with padding, for binary values shown with `--reveal --json`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, fsynced, then renamed
/// over the target, so that a crash leaves the old file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.skm-tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode.unwrap_or(0o600));
        }
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(&dir) {
            // Persist the rename itself.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
