//! The plan: what each declared secret's source holds, and what the destination must become.

use std::collections::{BTreeMap, BTreeSet};

use skm_runtime::backend::{AdminBackend, FailureKind, FetchRequest, FetchResult, SecretValue};
use skm_runtime::ResolvedField;

use super::super::util::{as_object, constant_eq, key_text, object_value};
use crate::dotenv::EnvFile;
use crate::output::Tone;

/// What the plan says about one declared secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Status {
    /// The destination has no secret at this path: it will be created.
    Create,
    /// The destination's secret exists but lacks this key: it will be added.
    Update,
    /// The destination already holds this value.
    Unchanged,
    /// The destination holds a different value: left alone unless `--force`.
    Conflict,
    /// Nothing to migrate (no path, no env var, not in the source).
    Skipped,
    /// The destination or the source could not be read.
    Error,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Create => "create",
            Status::Update => "update",
            Status::Unchanged => "unchanged",
            Status::Conflict => "conflict",
            Status::Skipped => "skipped",
            Status::Error => "error",
        }
    }

    pub(super) fn tone(self) -> Tone {
        match self {
            Status::Create | Status::Update => Tone::Good,
            Status::Unchanged | Status::Skipped => Tone::Dim,
            Status::Conflict => Tone::Warn,
            Status::Error => Tone::Bad,
        }
    }
}

/// A value from the source: a key's text, or a whole secret.
pub(super) enum Local {
    Key(String),
    Whole(SecretValue),
}

pub(super) struct Row {
    pub(super) field: ResolvedField,
    pub(super) local: Option<Local>,
    pub(super) status: Status,
    pub(super) note: String,
}

impl Row {
    /// Whether the apply step writes this row's value.
    pub(super) fn writes(&self, force: bool) -> bool {
        matches!(self.status, Status::Create | Status::Update) || (force && self.status == Status::Conflict)
    }

    /// Whether, after applying, the destination should hold this row's value.
    pub(super) fn lands(&self, force: bool) -> bool {
        self.writes(force) || self.status == Status::Unchanged
    }
}

pub(super) fn rows_from_dotenv(fields: &[ResolvedField], file: &EnvFile) -> Vec<Row> {
    fields
        .iter()
        .map(|f| {
            let row = |local, status, note: String| Row {
                field: f.clone(),
                local,
                status,
                note,
            };
            match (&f.path, f.env.as_deref()) {
                (None, _) => row(None, Status::Skipped, "no path declared".into()),
                (_, None) => row(None, Status::Skipped, "no env var declared".into()),
                (Some(_), Some(env)) => match file.get(env) {
                    None => row(None, Status::Skipped, format!("{env} not in {}", file.path.display())),
                    Some(v) => {
                        let local = match f.key {
                            Some(_) => Local::Key(v.to_string()),
                            None => Local::Whole(SecretValue::text(v)),
                        };
                        row(Some(local), Status::Create, String::new())
                    }
                },
            }
        })
        .collect()
}

pub(super) async fn rows_from_backend(fields: &[ResolvedField], src: &dyn AdminBackend) -> Vec<Row> {
    let paths: BTreeSet<String> = fields.iter().filter_map(|f| f.path.clone()).collect();
    let fetched = fetch_map(src, &paths).await;
    fields
        .iter()
        .map(|f| {
            let (local, status, note) = match f.path.as_ref().map(|p| (p, fetched.get(p))) {
                None => (None, Status::Skipped, "no path declared".to_string()),
                Some((_, None)) => (None, Status::Error, "not fetched".into()),
                Some((_, Some(Err(e)))) if e.kind == FailureKind::NotFound => {
                    (None, Status::Skipped, "not in the source".into())
                }
                Some((_, Some(Err(e)))) => (None, Status::Error, format!("cannot read the source: {e}")),
                Some((p, Some(Ok(payload)))) => match f.key.as_deref() {
                    None => (Some(Local::Whole(payload.value.clone())), Status::Create, String::new()),
                    Some(k) => match as_object(&payload.value).map(|o| key_text(&o, k)) {
                        Some(Some(v)) => (Some(Local::Key(v)), Status::Create, String::new()),
                        Some(None) => (None, Status::Skipped, format!("`{p}` has no key `{k}` in the source")),
                        None => (None, Status::Error, format!("`{p}` is not a JSON object in the source")),
                    },
                },
            };
            Row {
                field: f.clone(),
                local,
                status,
                note,
            }
        })
        .collect()
}

/// A path is written either whole or as keys; two fields writing the same key collide. Skip the odd ones.
pub(super) fn skip_ambiguous(rows: &mut [Row]) {
    let mut whole: BTreeMap<String, String> = BTreeMap::new();
    let mut keys: BTreeMap<(String, String), String> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.local.is_some()) {
        if let (Some(p), None) = (&row.field.path, row.field.key.as_deref()) {
            whole.entry(p.clone()).or_insert_with(|| row.field.id.clone());
        }
    }
    for row in rows.iter_mut().filter(|r| r.local.is_some()) {
        let Some(path) = row.field.path.clone() else { continue };
        match row.field.key.as_deref() {
            Some(k) => {
                if let Some(other) = whole.get(&path) {
                    row.status = Status::Skipped;
                    row.note = format!("field `{other}` holds the whole secret at this path");
                    row.local = None;
                } else if let Some(other) = keys.get(&(path.clone(), k.to_string())) {
                    row.status = Status::Skipped;
                    row.note = format!("same path and key as field `{other}`");
                    row.local = None;
                } else {
                    keys.insert((path, k.to_string()), row.field.id.clone());
                }
            }
            None => {
                if whole.get(&path) != Some(&row.field.id) {
                    row.status = Status::Skipped;
                    row.note = format!("field `{}` also writes this path", whole[&path]);
                    row.local = None;
                }
            }
        }
    }
}

/// Reads `paths` (current versions) in one backend call.
pub(super) async fn fetch_map(backend: &dyn AdminBackend, paths: &BTreeSet<String>) -> BTreeMap<String, FetchResult> {
    if paths.is_empty() {
        return BTreeMap::new();
    }
    let requests: Vec<FetchRequest> = paths.iter().map(FetchRequest::current).collect();
    let results = backend.fetch(&requests).await;
    if results.len() != requests.len() {
        let e =
            skm_runtime::backend::FetchError::new(FailureKind::Other, "the backend returned a wrong number of results");
        return paths.iter().map(|p| (p.clone(), Err(e.clone()))).collect();
    }
    paths.iter().cloned().zip(results).collect()
}

pub(super) fn compare(row: &Row, remote: Option<&FetchResult>) -> (Status, String) {
    let remote = match remote {
        None => return (Status::Error, "not fetched".into()),
        Some(Err(e)) if e.kind == FailureKind::NotFound => return (Status::Create, String::new()),
        Some(Err(e)) => return (Status::Error, format!("cannot read the destination: {e}")),
        Some(Ok(p)) => p,
    };
    match &row.local {
        None => (Status::Skipped, String::new()),
        Some(Local::Whole(v)) => {
            if same_value(&remote.value, v) {
                (Status::Unchanged, String::new())
            } else {
                (Status::Conflict, "the destination holds a different value".into())
            }
        }
        Some(Local::Key(v)) => {
            let key = row.field.key.as_deref().unwrap_or_default();
            match as_object(&remote.value) {
                None => (Status::Conflict, "the destination is not a JSON object".into()),
                Some(object) => match key_text(&object, key) {
                    None => (Status::Update, format!("adds key `{key}` to the existing secret")),
                    Some(t) if constant_eq(t.as_bytes(), v.as_bytes()) => (Status::Unchanged, String::new()),
                    Some(_) => (Status::Conflict, "the destination holds a different value".into()),
                },
            }
        }
    }
}

/// One write of the apply step.
pub(super) struct Write {
    /// The value to write (for a key merge: the merge onto the object the plan read).
    pub(super) value: SecretValue,
    /// The path did not exist when planned: the write must create it.
    pub(super) create_only: bool,
    /// How many declared values it carries.
    pub(super) count: usize,
    /// For keys merged into an existing object: each key, its new value, and what the plan saw there
    /// (`None`: absent). The apply step merges again onto what it reads, with check-and-set, and refuses to
    /// overwrite a key that changed since the plan.
    pub(super) keys: Option<Vec<(String, String, Option<String>)>>,
}

/// Per path: the write that makes the destination hold the planned values.
pub(super) fn plan_writes(
    rows: &[Row],
    remote: &BTreeMap<String, FetchResult>,
    force: bool,
) -> BTreeMap<String, Write> {
    let mut by_path: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.writes(force)) {
        if let Some(p) = &row.field.path {
            by_path.entry(p.clone()).or_default().push(row);
        }
    }
    let mut writes = BTreeMap::new();
    for (path, rows) in by_path {
        let existing = match remote.get(&path) {
            Some(Ok(p)) => Some(&p.value),
            _ => None,
        };
        let create_only = existing.is_none();
        let (value, keys) = match rows[0].local.as_ref() {
            Some(Local::Whole(v)) => (v.clone(), None),
            _ => {
                // Keep the keys the destination already has (other services' keys, undeclared ones).
                let mut object = existing.and_then(as_object).unwrap_or_default();
                let mut keys = Vec::new();
                for row in &rows {
                    if let (Some(Local::Key(v)), Some(k)) = (&row.local, row.field.key.as_deref()) {
                        keys.push((k.to_string(), v.clone(), key_text(&object, k)));
                        object.insert(k.to_string(), serde_json::Value::String(v.clone()));
                    }
                }
                (object_value(&object), (!create_only).then_some(keys))
            }
        };
        writes.insert(
            path,
            Write {
                value,
                create_only,
                count: rows.len(),
                keys,
            },
        );
    }
    writes
}

pub(super) fn removable(rows: &[Row], force: bool) -> Vec<String> {
    rows.iter()
        .filter(|r| r.lands(force))
        .filter_map(|r| r.field.env.as_deref().map(str::to_string))
        .collect()
}

/// Equal values; a JSON object counts as equal to the same object written differently, because Vault
/// stores objects as maps and hands them back re-serialized.
pub(super) fn same_value(a: &SecretValue, b: &SecretValue) -> bool {
    a.same_as(b) || matches!((as_object(a), as_object(b)), (Some(x), Some(y)) if x == y)
}
