//! The last-known-good cache ([`Loader::offline_cache`]): after a load succeeds, the backends' answers for its
//! struct and profile are kept encrypted beside the local store; when a backend is unreachable at the next
//! load, its answers may come from there if they are younger than the maximum age.
//!
//! Only [`FailureKind::Unavailable`] answers are replaced: a denied credential, a missing secret or a
//! decryption failure is the backend's real answer and is never hidden by an old value. Strict mode never
//! uses the cache, and leased fields are never cached (they are not backend reads). What is kept is what the
//! backends answered (value, version), so the layers above the backend (env, files) keep their precedence.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::backend::local::LocalStore;
use crate::backend::{FailureKind, SecretPayload, SecretValue};
use crate::error::Error;
use crate::fetch::{Bound, Fetched};

/// Which cache file one load reads and writes, and how old an answer may be.
pub(crate) struct CacheKey {
    store: LocalStore,
    /// `struct@profile`: the file's name and its authenticated label.
    name: String,
    max_age: Duration,
}

/// One kept answer.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The registry route (`None`: the default backend).
    route: Option<String>,
    /// The backend's name when the answer was kept, for provenance.
    backend: String,
    path: String,
    /// The request's version pin, as its `Debug` text (the cache only matches identical requests).
    pin: String,
    binary: bool,
    /// The value: text, or base64 of the bytes.
    value: String,
    version: Option<String>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    /// Seconds since the Unix epoch.
    written_at: u64,
    entries: Vec<Entry>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `3 h`, `12 min`, `40 s`: an age for messages.
pub(crate) fn age(seconds: u64) -> String {
    match seconds {
        s if s >= 2 * 3600 => format!("{} h", s / 3600),
        s if s >= 120 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `SKM_OFFLINE_CACHE`: `24h`, `90m`, `3600s`, `2d` or a number of seconds; `0` or `off` for none.
pub(crate) fn parse_max_age(text: &str) -> Result<Option<Duration>, Error> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() || t == "0" || t == "off" || t == "false" || t == "no" {
        return Ok(None);
    }
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t.as_str(), "s"),
    };
    let scale = match unit.trim() {
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if scale > 0 && n > 0 => Ok(Some(Duration::from_secs(n.saturating_mul(scale)))),
        _ => Err(Error::config(format!(
            "SKM_OFFLINE_CACHE=`{}`: use an age such as `24h`, `90m`, `3600s` or `2d` (`0` or `off` for no cache)",
            text.escape_debug()
        ))),
    }
}

impl CacheKey {
    /// The cache of struct `name` under `profile`, beside the local store the environment names
    /// (`SKM_LOCAL_PATH`, `SKM_LOCAL_KEY`, `SKM_LOCAL_KEY_FILE`).
    pub(crate) fn new(
        name: &str,
        profile: Option<&str>,
        max_age: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CacheKey, Error> {
        Ok(CacheKey {
            store: LocalStore::from_lookup(env)?,
            name: format!("{name}@{}", profile.unwrap_or("default")),
            max_age,
        })
    }

    fn label(&self) -> String {
        format!("offline cache of {}", self.name)
    }

    fn read(&self) -> Result<Option<File>, String> {
        let Some(plain) = self.store.read_own(&self.name, &self.label())? else {
            return Ok(None);
        };
        serde_json::from_slice::<File>(&plain).map(Some).map_err(|e| {
            format!(
                "the offline cache file does not parse (line {}, column {})",
                e.line(),
                e.column()
            )
        })
    }

    /// Replaces each unavailable answer of `fetched` by a kept one younger than the maximum age; returns one
    /// warning per replaced path (and one if the cache could not be used), never a value.
    pub(crate) fn apply(&self, bound: &[Bound<'_>], fetched: &mut Fetched) -> Vec<String> {
        let unavailable = bound.iter().any(|g| {
            fetched.get(&g.route).is_some_and(|group| {
                group
                    .values()
                    .any(|r| matches!(r, Err(e) if e.kind == FailureKind::Unavailable))
            })
        });
        if !unavailable {
            return Vec::new();
        }
        let file = match self.read() {
            Ok(Some(file)) => file,
            Ok(None) => return Vec::new(),
            Err(why) => return vec![format!("the offline cache was not used: {why}")],
        };
        let written = file.written_at;
        let old = now().saturating_sub(written);
        if Duration::from_secs(old) > self.max_age {
            return vec![format!(
                "the offline cache was not used: it was written {} ago, more than its maximum age of {}",
                age(old),
                age(self.max_age.as_secs())
            )];
        }
        let kept: HashMap<(Option<&str>, &str, &str), &Entry> = file
            .entries
            .iter()
            .map(|e| ((e.route.as_deref(), e.path.as_str(), e.pin.as_str()), e))
            .collect();
        let mut warnings = Vec::new();
        for g in bound {
            let Some(group) = fetched.get_mut(&g.route) else {
                continue;
            };
            for request in g.requests {
                let Some(Err(e)) = group.get(request) else { continue };
                if e.kind != FailureKind::Unavailable {
                    continue;
                }
                let pin = format!("{:?}", request.version);
                let Some(entry) = kept.get(&(g.route, request.path.as_str(), pin.as_str())) else {
                    continue;
                };
                let value = if entry.binary {
                    match base64::engine::general_purpose::STANDARD.decode(&entry.value) {
                        Ok(bytes) => SecretValue::Binary(SecretBox::new(Box::new(bytes))),
                        Err(_) => continue,
                    }
                } else {
                    SecretValue::Text(SecretString::from(entry.value.clone()))
                };
                let detail = e.detail.clone();
                let mut payload = SecretPayload::new(value);
                payload.version = entry.version.clone();
                payload.location = Some(format!(
                    "offline cache (written {} ago, from {}) secret {}",
                    age(old),
                    entry.backend,
                    request.path
                ));
                group.insert(request.clone(), Ok(payload));
                warnings.push(format!(
                    "{} is unavailable ({detail}); `{}` comes from the offline cache written {} ago",
                    g.backend.name(),
                    request.path,
                    age(old)
                ));
            }
        }
        warnings
    }

    /// Keeps every answer of a load that succeeded. A failure to write is a warning, never a failed load.
    pub(crate) fn store(&self, bound: &[Bound<'_>], fetched: &Fetched) -> Result<(), String> {
        let mut entries = Vec::new();
        for g in bound {
            let Some(group) = fetched.get(&g.route) else { continue };
            for request in g.requests {
                let Some(Ok(payload)) = group.get(request) else {
                    continue;
                };
                // An answer that itself came from the cache is not written back as new.
                if payload
                    .location
                    .as_deref()
                    .is_some_and(|l| l.starts_with("offline cache"))
                {
                    return Ok(());
                }
                let (binary, value) = match &payload.value {
                    SecretValue::Text(t) => (false, t.expose_secret().to_string()),
                    SecretValue::Binary(b) => (
                        true,
                        base64::engine::general_purpose::STANDARD.encode(b.expose_secret()),
                    ),
                };
                entries.push(Entry {
                    route: g.route.map(str::to_string),
                    backend: g.backend.name(),
                    path: request.path.clone(),
                    pin: format!("{:?}", request.version),
                    binary,
                    value,
                    version: payload.version.clone(),
                });
            }
        }
        let file = File {
            format: 1,
            written_at: now(),
            entries,
        };
        let plain = Zeroizing::new(serde_json::to_vec(&file).map_err(|e| format!("cannot encode the cache: {e}"))?);
        self.store.write_own(&self.name, &self.label(), &plain)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_and_print() {
        assert_eq!(parse_max_age("24h").unwrap(), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_max_age("90m").unwrap(), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_max_age("2d").unwrap(), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_max_age("3600").unwrap(), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_max_age(" 30s ").unwrap(), Some(Duration::from_secs(30)));
        for off in ["0", "off", ""] {
            assert_eq!(parse_max_age(off).unwrap(), None, "{off}");
        }
        for bad in ["24x", "h", "-1h", "1.5h"] {
            assert!(parse_max_age(bad).is_err(), "{bad}");
        }
        assert_eq!(age(40), "40 s");
        assert_eq!(age(720), "12 min");
        assert_eq!(age(3 * 3600 + 5), "3 h");
    }
}
