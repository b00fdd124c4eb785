//! The KV secrets engine: reads for both versions and how values are stored (writes, listings, deletes:
//! `kv_admin.rs`).
//!
//! A Vault secret is always a map. skm hands the loader that map as JSON text, so `key` selects one entry
//! and a field without `key` receives the whole map (into a struct-typed field). A plain text or binary
//! value written through skm is stored as `{"value": ..., "_skm_encoding": "text" | "base64"}`: other
//! programs read it as the usual `value` entry, and skm reads it back as the value it wrote.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};
use vaultrs::api::kv2::requests::ReadSecretRequest;
use vaultrs::client::VaultClient;

use super::config::KvVersion;
use super::errors::VaultFailure;
use super::Inner;
use crate::backend::{FailureKind, FetchError, FetchRequest, SecretPayload, SecretValue, VersionPin};

/// The entry that marks a value skm stored on behalf of a non-map secret.
pub(crate) const ENCODING_KEY: &str = "_skm_encoding";
/// The entry holding that value: the name other tools use for single-value secrets.
pub(crate) const VALUE_KEY: &str = "value";

/// The map to store for `value`.
pub(crate) fn encode(value: &SecretValue) -> Map<String, Value> {
    let wrapped = |encoding: &str, text: String| {
        let mut map = Map::new();
        map.insert(VALUE_KEY.into(), Value::String(text));
        map.insert(ENCODING_KEY.into(), Value::String(encoding.into()));
        map
    };
    match value {
        SecretValue::Text(t) => match serde_json::from_str::<Value>(t.expose_secret()) {
            Ok(Value::Object(map)) => map,
            _ => wrapped("text", t.expose_secret().to_string()),
        },
        SecretValue::Binary(b) => wrapped(
            "base64",
            base64::engine::general_purpose::STANDARD.encode(b.expose_secret()),
        ),
    }
}

/// The value for a stored map: the original text or bytes if skm wrapped them, else the map as JSON text.
pub(crate) fn decode(data: Value) -> Result<SecretValue, String> {
    let Value::Object(map) = data else {
        return Err("the secret's data is not a map".into());
    };
    if map.len() == 2 {
        if let (Some(Value::String(encoding)), Some(Value::String(value))) = (map.get(ENCODING_KEY), map.get(VALUE_KEY))
        {
            match encoding.as_str() {
                "text" => return Ok(SecretValue::text(value.clone())),
                "base64" => {
                    return base64::engine::general_purpose::STANDARD
                        .decode(value)
                        .map(SecretValue::binary)
                        .map_err(|_| format!("`{VALUE_KEY}` is marked base64 but is not valid base64"))
                }
                _ => {}
            }
        }
    }
    Ok(SecretValue::Text(Value::Object(map).to_string().into()))
}

/// A path under the mount, without surrounding slashes; `.` and `..` segments are refused so that a path
/// cannot reach outside the mount.
pub(crate) fn clean_path(path: &str) -> Result<&str, String> {
    let p = path.trim_matches('/');
    if p.is_empty() {
        return Err("an empty path names no secret".into());
    }
    if p.split('/').any(|s| s == "." || s == ".." || s.is_empty()) {
        return Err(format!("path `{path}` has an empty, `.` or `..` segment"));
    }
    Ok(p)
}

/// The KV v2 write body `{"data": ..., "options": {"cas": N}}`, with a JSON-object text value copied as
/// written: parsing and re-serializing it (as vaultrs does) would round big integers through `f64`.
pub(crate) fn raw_body(value: &SecretValue, cas: Option<u32>) -> zeroize::Zeroizing<Vec<u8>> {
    let mut body = zeroize::Zeroizing::new(Vec::new());
    body.extend_from_slice(b"{\"data\":");
    let object_text = match value {
        SecretValue::Text(t)
            if serde_json::from_str::<serde::de::IgnoredAny>(t.expose_secret()).is_ok()
                && t.expose_secret().trim_start().starts_with('{') =>
        {
            Some(t.expose_secret().as_bytes())
        }
        _ => None,
    };
    match object_text {
        Some(text) => body.extend_from_slice(text),
        None => {
            let map = zeroize::Zeroizing::new(Value::Object(encode(value)).to_string());
            body.extend_from_slice(map.as_bytes());
        }
    }
    if let Some(cas) = cas {
        body.extend_from_slice(format!(",\"options\":{{\"cas\":{cas}}}").as_bytes());
    }
    body.push(b'}');
    body
}

/// `POST <mount>/data/<path>` with a body built by [`raw_body`].
pub(crate) struct RawWrite {
    pub mount: String,
    pub path: String,
    pub body: zeroize::Zeroizing<Vec<u8>>,
}

impl rustify::endpoint::Endpoint for RawWrite {
    type Response = vaultrs::api::kv2::responses::SecretVersionMetadata;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        format!("{}/data/{}", url_path(&self.mount), self.path)
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(Some(self.body.to_vec()))
    }
}

/// Every byte but RFC 3986's unreserved characters and the segment separator `/`.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes each segment, so that any character Vault accepts in a path survives the URL.
pub(crate) fn url_path(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, PATH_SEGMENT).to_string()
}

/// The answer of `GET sys/internal/ui/mounts/<mount>`.
#[derive(Deserialize)]
pub(crate) struct MountInfo {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub options: Option<HashMap<String, Value>>,
}

/// `GET sys/internal/ui/mounts/<mount>`: any token with some access to the mount may call it (unlike
/// `sys/mounts`), which is why the Vault CLI uses it to detect KV versions.
pub(crate) struct MountInfoRequest {
    pub mount: String,
}

impl rustify::endpoint::Endpoint for MountInfoRequest {
    type Response = MountInfo;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        format!("sys/internal/ui/mounts/{}", url_path(&self.mount))
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::GET
    }
}

impl MountInfo {
    /// The KV version of a `kv` (or old `generic`) mount; `None` for another engine.
    pub(crate) fn kv_version(&self) -> Option<KvVersion> {
        match self.kind.as_str() {
            "kv" => {
                let version = self.options.as_ref().and_then(|o| o.get("version")).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                Some(if version.as_deref() == Some("2") {
                    KvVersion::V2
                } else {
                    KvVersion::V1
                })
            }
            "generic" => Some(KvVersion::V1),
            _ => None,
        }
    }
}

/// Parses Vault's RFC 3339 timestamps (`2024-05-01T12:00:00.123456Z`) with the `time` crate; `None` for
/// anything malformed or out of range (a bad server date must never panic, issue 17).
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_nanos(u64::try_from(-nanos).ok()?))
    }
}

/// A failed attempt: the error, and whether the connection was refused (then trying again within the same
/// call only delays the answer: nothing listens there).
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub(crate) error: FetchError,
    pub(crate) refused: bool,
}

impl From<FetchError> for Failed {
    fn from(error: FetchError) -> Self {
        Failed { error, refused: false }
    }
}

impl Inner {
    /// The fan-out for reads: `concurrency` in flight, a transient failure retried `retries` times after
    /// about 100, 200, 400, 800 ms with jitter.
    pub(crate) fn fan_out(&self) -> crate::backend::fanout::FanOut {
        crate::backend::fanout::FanOut::new(self.concurrency).max_attempts(self.retries.saturating_add(1))
    }

    /// The mount's KV version: fixed by configuration, or detected once and remembered; 2 when Vault cannot
    /// be reached (not remembered).
    pub(crate) async fn kv_version(&self, client: &VaultClient) -> KvVersion {
        self.detect_kv_version(client).await.unwrap_or(KvVersion::V2)
    }

    /// The mount's KV version for one call of the loader: detected with the call's retries and bound, and an
    /// error when Vault could not be reached, so that the call's reads are not sent to a server that just
    /// did not answer (each would wait its own timeouts).
    pub(crate) async fn kv_version_within(
        &self,
        client: &VaultClient,
        until: Instant,
    ) -> Result<KvVersion, FetchError> {
        self.attempts(until, || self.detect_kv_version(client)).await
    }

    /// The KV version, or why Vault could not be asked (only when no answer arrived: an answer that is not
    /// a KV mount's is remembered as version 2).
    async fn detect_kv_version(&self, client: &VaultClient) -> Result<KvVersion, Failed> {
        if let Some(v) = *self.kv.read().unwrap_or_else(|p| p.into_inner()) {
            return Ok(v);
        }
        let detected = vaultrs::api::exec_with_result(
            client,
            MountInfoRequest {
                mount: self.mount.clone(),
            },
        )
        .await;
        let version = match detected {
            Ok(info) => match info.kv_version() {
                Some(v) => v,
                None => {
                    tracing::warn!(target: "skm", mount = %self.mount, engine = %info.kind,
                        "the Vault mount is not a KV secrets engine; reads will fail");
                    KvVersion::V2
                }
            },
            Err(e) => {
                let f = VaultFailure::from_client(&e);
                if f.status.is_none() || f.kind() == FailureKind::Unavailable {
                    // The server is unreachable: do not remember a guess.
                    return Err(Failed {
                        error: FetchError::new(
                            f.kind(),
                            format!("mount `{}`{}: {}", self.mount, self.namespace_note(), f.describe()),
                        ),
                        refused: f.refused,
                    });
                }
                tracing::debug!(target: "skm", mount = %self.mount, error = %f.describe(),
                    "cannot detect the KV version; assuming 2 (set SKM_VAULT_KV_VERSION to choose)");
                KvVersion::V2
            }
        };
        *self.kv.write().unwrap_or_else(|p| p.into_inner()) = Some(version);
        Ok(version)
    }

    /// Runs `op` until it succeeds or fails for good, within one call's bound: a failure is tried again
    /// (after [`FanOut::backoff`](crate::backend::fanout::FanOut::backoff)) only when it is retryable
    /// (unavailable, throttled), not a refused connection, attempts remain, and another attempt of a full
    /// timeout can end before `until`.
    pub(crate) async fn attempts<T, F, Fut>(&self, until: Instant, mut op: F) -> Result<T, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failed>>,
    {
        let fan = self.fan_out();
        let mut retry = 0;
        loop {
            let failed = match op().await {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let delay = fan.backoff(retry);
            let again = crate::backend::fanout::retryable(failed.error.kind)
                && !failed.refused
                && retry.saturating_add(1) < self.retries.saturating_add(1)
                && Instant::now() + delay + self.timeout <= until;
            if !again {
                return Err(failed.error);
            }
            tracing::debug!(target: "skm", retry, failure = %failed.error, "retrying a Vault request");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// `(namespace `x`)` or nothing.
    pub(crate) fn namespace_note(&self) -> String {
        self.namespace
            .as_ref()
            .map(|n| format!(" (namespace `{n}`)"))
            .unwrap_or_default()
    }

    /// A fetch failure that names the mount, path and namespace.
    pub(super) fn fetch_failure(
        &self,
        e: &vaultrs::error::ClientError,
        kv: KvVersion,
        path: &str,
        pin: &VersionPin,
    ) -> Failed {
        let f = VaultFailure::from_client(e);
        let version = match pin {
            VersionPin::Number(n) => format!(" version {n}"),
            _ => String::new(),
        };
        let api_path = match kv {
            KvVersion::V2 => format!("{}/data/{path}", self.mount),
            KvVersion::V1 => format!("{}/{path}", self.mount),
        };
        let hint = match f.kind() {
            FailureKind::Forbidden => format!("; the token's policy needs `read` on `{api_path}`"),
            FailureKind::NotFound if kv == KvVersion::V2 => {
                " (never written, or that version was deleted or destroyed)".to_string()
            }
            _ => String::new(),
        };
        Failed {
            error: FetchError::new(
                f.kind(),
                format!(
                    "{kv} mount `{}`{}: `{path}`{version}: {}{hint}",
                    self.mount,
                    self.namespace_note(),
                    f.describe()
                ),
            ),
            refused: f.refused,
        }
    }

    pub(super) fn invalid(&self, path: &str, why: impl std::fmt::Display) -> FetchError {
        FetchError::new(
            FailureKind::Invalid,
            format!("Vault mount `{}`{}: `{path}`: {why}", self.mount, self.namespace_note()),
        )
    }

    /// Reads one secret.
    pub(crate) async fn read(
        &self,
        client: &VaultClient,
        kv: KvVersion,
        request: &FetchRequest,
    ) -> Result<SecretPayload, Failed> {
        let path = clean_path(&request.path).map_err(|e| self.invalid(&request.path, e))?;
        let version = match &request.version {
            VersionPin::Current => None,
            &VersionPin::Number(n) if kv == KvVersion::V2 => Some(n),
            // The id `put` and `versions` return (a number as text) pins that version, as on every backend.
            VersionPin::Id(id) if kv == KvVersion::V2 && id.parse::<u64>().is_ok() => id.parse().ok(),
            VersionPin::Number(_) | VersionPin::Previous if kv == KvVersion::V1 => return Err(self
                .invalid(
                    path,
                    "a KV v1 mount keeps no versions: remove `version` (or use a plain type instead of `Rotating`), \
                     or move the secret to a KV v2 mount",
                )
                .into()),
            VersionPin::Previous => {
                // Latest − 1, found from the current read so that the token needs no `metadata/` access.
                let current = Box::pin(self.read(client, kv, &FetchRequest::current(path))).await?;
                let n: u64 = current.version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
                if n <= 1 {
                    return Err(FetchError::not_found(format!(
                        "{kv} mount `{}`{}: `{path}` has no previous version",
                        self.mount,
                        self.namespace_note()
                    ))
                    .into());
                }
                let previous = FetchRequest {
                    path: path.to_string(),
                    version: VersionPin::Number(n - 1),
                };
                return Box::pin(self.read(client, kv, &previous)).await;
            }
            pin => {
                return Err(self
                    .invalid(
                        path,
                        format!(
                            "Vault cannot read {pin}: Vault KV versions are numbers, e.g. \
                         #[secret(path = \"{path}\", version = 3)]; stages and version ids are AWS Secrets Manager's"
                        ),
                    )
                    .into())
            }
        };
        let encoded = url_path(path);
        let answer = match kv {
            KvVersion::V2 => {
                let endpoint = ReadSecretRequest::builder()
                    .mount(self.mount.as_str())
                    .path(encoded.as_str())
                    .version(version)
                    .build()
                    .map_err(|e| self.invalid(path, e))?;
                vaultrs::api::exec_with_result(client, endpoint)
                    .await
                    .map(|r| (r.data, Some(r.metadata.version.to_string())))
            }
            KvVersion::V1 => vaultrs::kv1::get_raw(client, &self.mount, &encoded)
                .await
                .map(|r| (r.data, None)),
        };
        // Transient failures come back as unavailable or throttled, which the fan-out retries.
        let (data, version) = answer.map_err(|e| self.fetch_failure(&e, kv, path, &request.version))?;
        if data.is_null() {
            return Err(FetchError::not_found(format!(
                "{kv} mount `{}`{}: `{path}` has no data",
                self.mount,
                self.namespace_note()
            ))
            .into());
        }
        let value = decode(data).map_err(|e| self.invalid(path, e))?;
        let payload = SecretPayload::new(value);
        Ok(match version {
            Some(v) => payload.with_version(v),
            None => payload,
        })
    }

    /// The version `request` would read now, from KV v2 metadata: the hot-reload probe.
    pub(crate) async fn current_version(
        &self,
        client: &VaultClient,
        kv: KvVersion,
        request: &FetchRequest,
    ) -> Result<String, Failed> {
        let path = clean_path(&request.path).map_err(|e| self.invalid(&request.path, e))?;
        if let VersionPin::Number(n) = &request.version {
            return Ok(n.to_string());
        }
        let meta = vaultrs::kv2::read_metadata(client, &self.mount, &url_path(path))
            .await
            .map_err(|e| self.fetch_failure(&e, kv, path, &request.version))?;
        let current = meta.current_version;
        match &request.version {
            VersionPin::Previous if current <= 1 => Err(FetchError::not_found(format!(
                "{kv} mount `{}`{}: `{path}` has no previous version",
                self.mount,
                self.namespace_note()
            ))
            .into()),
            VersionPin::Previous => Ok((current - 1).to_string()),
            _ => Ok(current.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &SecretValue) -> String {
        match v {
            SecretValue::Text(t) => t.expose_secret().to_string(),
            SecretValue::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn plain_text_round_trips_through_a_marked_map() {
        let map = encode(&SecretValue::text("v1 with spaces"));
        assert_eq!(map.get(VALUE_KEY), Some(&Value::String("v1 with spaces".into())));
        assert_eq!(text(&decode(Value::Object(map)).unwrap()), "v1 with spaces");
    }

    #[test]
    fn maps_stay_maps_and_read_back_as_json() {
        let map = encode(&SecretValue::map([("user", "app")]));
        assert_eq!(map.len(), 1);
        assert_eq!(text(&decode(Value::Object(map)).unwrap()), r#"{"user":"app"}"#);
        // A lone `value` written by another tool stays a map, so `key = "value"` reads it.
        let other = serde_json::json!({"value": "x"});
        assert_eq!(text(&decode(other).unwrap()), r#"{"value":"x"}"#);
    }

    #[test]
    fn binary_round_trips() {
        let map = encode(&SecretValue::binary(vec![0, 159, 146, 150]));
        match decode(Value::Object(map)).unwrap() {
            SecretValue::Binary(b) => assert_eq!(b.expose_secret(), &vec![0, 159, 146, 150]),
            SecretValue::Text(_) => panic!("text"),
        }
    }

    #[test]
    fn paths_are_checked_and_encoded() {
        assert_eq!(clean_path("/a/b/").unwrap(), "a/b");
        assert!(clean_path("a/../b").is_err());
        assert!(clean_path("").is_err());
        assert_eq!(url_path("a b/c@d"), "a%20b/c%40d");
        assert_eq!(url_path("é%~._-Z9/x"), "%C3%A9%25~._-Z9/x");
    }

    #[test]
    fn parses_vault_timestamps() {
        let t = parse_time("2024-03-01T12:30:45.5Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_709_296_245, 500_000_000)
        );
        assert!(parse_time("not a time").is_none());
        // Out-of-range fields overflowed the hand-written calendar arithmetic and panicked (issue 17).
        for bad in [
            "9223372036854775807-01-01T00:00:00Z",
            "2024-13-45T99:99:99Z",
            "2024-01-01T00:00:00.Z",
        ] {
            assert!(parse_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn json_text_is_written_as_is() {
        let big = r#"{"id":123456789012345678901234567890,"f":1.10}"#;
        let body = raw_body(&SecretValue::text(big), Some(3));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            format!(r#"{{"data":{big},"options":{{"cas":3}}}}"#)
        );
        let plain = raw_body(&SecretValue::text("hunter2"), None);
        let v: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v["data"]["value"], "hunter2");
    }
}
