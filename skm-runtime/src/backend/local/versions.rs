//! An entry's versions as values: which version a pin names, and the value of a version.

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::format::{self, Blob, Entry};
use super::Fail;
use crate::backend::{SecretValue, VersionPin};

pub(super) fn to_value(version: &format::Version) -> Result<SecretValue, Fail> {
    if version.binary {
        return Ok(SecretValue::binary(version.value.0.to_vec()));
    }
    match std::str::from_utf8(&version.value.0) {
        Ok(text) => Ok(SecretValue::text(text)),
        Err(_) => Err(Fail::Decryption("a text value is not UTF-8".into())),
    }
}

pub(super) fn to_blob(value: &SecretValue) -> (bool, Blob) {
    match value {
        SecretValue::Text(s) => (false, Blob(Zeroizing::new(s.expose_secret().as_bytes().to_vec()))),
        SecretValue::Binary(b) => (true, Blob(Zeroizing::new(b.expose_secret().clone()))),
    }
}

/// The version of `entry` that `pin` names.
pub(super) fn select<'e>(entry: &'e Entry, path: &str, pin: &VersionPin) -> Result<&'e format::Version, Fail> {
    let last = entry.versions.len().checked_sub(1);
    let index = match pin {
        VersionPin::Current => last,
        VersionPin::Stage(s) if matches!(&**s, "current" | "AWSCURRENT") => last,
        VersionPin::Previous => last.and_then(|l| l.checked_sub(1)),
        VersionPin::Stage(s) if matches!(&**s, "previous" | "AWSPREVIOUS") => last.and_then(|l| l.checked_sub(1)),
        VersionPin::Number(n) => entry.versions.iter().position(|v| v.n == *n),
        VersionPin::Id(id) => match id.parse::<u64>() {
            Ok(n) => entry.versions.iter().position(|v| v.n == n),
            Err(_) => {
                return Err(Fail::NotFound(format!(
                    "`{path}` has no version id `{id}`: local store versions are numbers"
                )))
            }
        },
        VersionPin::Stage(stage) => {
            return Err(Fail::NotFound(format!(
                "`{path}` has no stage `{stage}`: the local store knows `current` and `previous`"
            )))
        }
    };
    index.map(|i| &entry.versions[i]).ok_or_else(|| {
        let kept = match (entry.versions.first(), entry.versions.last()) {
            (Some(a), Some(b)) => format!("versions {} to {} are kept", a.n, b.n),
            _ => "no versions are kept".into(),
        };
        Fail::NotFound(format!(
            "`{path}` has no {pin} ({kept}; the local store keeps the last {})",
            format::KEEP
        ))
    })
}
