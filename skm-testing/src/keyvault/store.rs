//! The vault's data: secrets with versions, soft-deleted secrets, and the Key Vault JSON they are shown as.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// Days a soft-deleted secret stays recoverable (Key Vault's default retention).
pub(crate) const RECOVERABLE_DAYS: i64 = 90;

/// One version of a secret. In Key Vault, content type, tags and attributes belong to each version.
#[derive(Clone, Debug)]
pub(crate) struct Version {
    pub(crate) id: String,
    pub(crate) value: String,
    pub(crate) content_type: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) nbf: Option<i64>,
    pub(crate) exp: Option<i64>,
    pub(crate) created: i64,
    pub(crate) updated: i64,
    pub(crate) tags: Option<Map<String, Value>>,
}

/// A secret: its name as first written (names are case-insensitive) and its versions, oldest first.
#[derive(Clone, Debug)]
pub(crate) struct Secret {
    pub(crate) name: String,
    pub(crate) versions: Vec<Version>,
}

impl Secret {
    pub(crate) fn latest(&self) -> &Version {
        self.versions.last().expect("a secret has at least one version")
    }

    pub(crate) fn version(&self, id: &str) -> Option<&Version> {
        if id.is_empty() {
            return Some(self.latest());
        }
        self.versions.iter().find(|v| v.id.eq_ignore_ascii_case(id))
    }

    pub(crate) fn version_mut(&mut self, id: &str) -> Option<&mut Version> {
        if id.is_empty() {
            return self.versions.last_mut();
        }
        self.versions.iter_mut().find(|v| v.id.eq_ignore_ascii_case(id))
    }
}

/// A soft-deleted secret, recoverable until purged.
#[derive(Clone, Debug)]
pub(crate) struct Deleted {
    pub(crate) secret: Secret,
    pub(crate) deleted: i64,
}

/// All secrets, keyed by lower-case name.
#[derive(Default, Debug)]
pub(crate) struct Store {
    pub(crate) secrets: BTreeMap<String, Secret>,
    pub(crate) deleted: BTreeMap<String, Deleted>,
}

/// `[0-9A-Za-z-]`, 1 to 127 characters: Key Vault's rule for object names.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn attributes(v: &Version) -> Value {
    let mut a = json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
    });
    if let Some(nbf) = v.nbf {
        a["nbf"] = json!(nbf);
    }
    if let Some(exp) = v.exp {
        a["exp"] = json!(exp);
    }
    a
}

/// A `SecretBundle` (get, set, update, recover); `with_value` only for get and set.
pub(crate) fn bundle(base: &str, s: &Secret, v: &Version, with_value: bool) -> Value {
    let mut b = json!({
        "id": format!("{base}/secrets/{}/{}", s.name, v.id),
        "attributes": attributes(v),
    });
    if with_value {
        b["value"] = json!(v.value);
    }
    if let Some(ct) = &v.content_type {
        b["contentType"] = json!(ct);
    }
    if let Some(tags) = &v.tags {
        b["tags"] = Value::Object(tags.clone());
    }
    b
}

/// A `SecretItem` of a list: `id` without a version for the secrets list, with one for the versions list.
pub(crate) fn item(base: &str, s: &Secret, v: &Version, with_version: bool) -> Value {
    let id = if with_version {
        format!("{base}/secrets/{}/{}", s.name, v.id)
    } else {
        format!("{base}/secrets/{}", s.name)
    };
    let mut b = json!({ "id": id, "attributes": attributes(v) });
    if let Some(ct) = &v.content_type {
        b["contentType"] = json!(ct);
    }
    if let Some(tags) = &v.tags {
        b["tags"] = Value::Object(tags.clone());
    }
    b
}

/// A `DeletedSecretBundle` (or, without the value, a `DeletedSecretItem`).
pub(crate) fn deleted(base: &str, d: &Deleted, as_item: bool) -> Value {
    let s = &d.secret;
    let mut b = if as_item {
        item(base, s, s.latest(), false)
    } else {
        bundle(base, s, s.latest(), false)
    };
    b["recoveryId"] = json!(format!("{base}/deletedsecrets/{}", s.name));
    b["deletedDate"] = json!(d.deleted);
    b["scheduledPurgeDate"] = json!(d.deleted + RECOVERABLE_DAYS * 86_400);
    b
}
