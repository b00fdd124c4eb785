//! `prepare`: a value-free snapshot of the stores, which `#[derive(Secrets)]` checks declarations against at
//! compile time (issue 29); `prepare --check` tells CI when it is stale.
//!
//! For each profile, every declared secret with a path is read from its backend, and the snapshot records,
//! per field: whether the path exists, the secret's top-level key names (a JSON object's), its versions and
//! stages (where the backend lists them), whether the value a load would take from the store parses as the
//! field's type and whether it passes the field's validators. Never a value, a hash of one or a length: the
//! value is read to answer those questions and dropped.
//!
//! The snapshots go to `--dir`, else `SKM_PREPARED` (a directory), else `$CARGO_MANIFEST_DIR/.skm/prepared`
//! (set by `cargo run`, so an application's `secrets` binary writes beside its `Cargo.toml` wherever it is
//! started from), else `./.skm/prepared`; one file per struct and profile, `S.<profile>.json` (`S.json`
//! without a profile). The format is documented in skm-derive's `prepared` module, which reads it.
//!
//! The standalone tool (a manifest, no types) records `parses: null`: it cannot parse a value as a type it
//! only knows by name, and the derive then checks existence, keys and validators only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skm_runtime::backend::{AdminBackend, AdminErrorKind, FailureKind, FetchRequest, SecretValue};
use skm_runtime::{Error, FieldProblem, Layer, ResolvedField};

use crate::decl::{routed_backends, DeclSource, Declarations};
use crate::output::Tone;
use crate::safe::display;
use crate::select::ReadOnly;
use crate::{check_profile, describe_admin, exit, Ctx, Fail};

/// The snapshot format written (and read by the derive).
pub(crate) const FORMAT: u32 = 1;

/// `skm prepare`.
#[derive(Debug, Args)]
pub(crate) struct PrepareArgs {
    /// Write nothing: compare the snapshots with the stores and the declarations now, and exit 1 when they
    /// differ (for CI). Versions that moved (a rotation) are reported, not a failure.
    #[arg(long)]
    pub check: bool,
    /// Where the snapshots are (default: SKM_PREPARED, else `.skm/prepared` beside the crate's Cargo.toml when
    /// started by `cargo run`, else `./.skm/prepared`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// One snapshot: a struct's declared secrets in one profile, as the stores held them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Snapshot {
    /// The format, [`FORMAT`].
    pub skm_prepared: u32,
    #[serde(rename = "struct")]
    pub struct_name: String,
    pub profile: Option<String>,
    /// When it was written, RFC 3339 UTC to the second: compile errors name it.
    pub prepared_at: String,
    /// Whether values were parsed as the fields' types (the embedded tool) or not (a manifest).
    pub typed: bool,
    pub fields: Vec<FieldEntry>,
}

/// One declared secret with a path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldEntry {
    /// The dotted field id (`db.url` for a flattened field).
    pub field: String,
    /// The path, prefixes applied.
    pub path: String,
    /// The declared key.
    pub key: Option<String>,
    /// The declared type, as written.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The declared validators: `parses`/`valid` judge these.
    pub validators: ValidatorsEntry,
    /// The version read (`current`, `version 3`, `stage AWSPREVIOUS`, ...).
    pub version: String,
    /// The backend it was read from (a registry name).
    pub backend: String,
    /// Whether the path (at that version) exists.
    pub exists: bool,
    /// The top-level key names of a JSON-object value, sorted; `None` for any other value.
    pub keys: Option<Vec<String>>,
    /// The versions, newest first; `None` when the backend does not list them.
    pub versions: Option<Vec<VersionEntry>>,
    /// Whether the store's value parses as the field's type; `None` when not checked.
    pub parses: Option<bool>,
    /// Whether the store's value passes the field's validators; `None` when no value was checked.
    pub valid: Option<bool>,
}

/// The validators as declared (`not` holds the declared placeholders, never a stored value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidatorsEntry {
    pub min_len: Option<usize>,
    pub not: Vec<String>,
    pub pattern: Option<String>,
}

/// One version: its id and labels (no date: a value-free snapshot should change only when the store does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionEntry {
    pub id: String,
    pub stages: Vec<String>,
}

pub(crate) async fn run(ctx: &mut Ctx<'_, '_>, args: PrepareArgs) -> Result<u8, Fail> {
    let profiles: Vec<Option<String>> = if ctx.profiles.is_empty() {
        vec![ctx.profile()?]
    } else {
        let mut seen = Vec::new();
        for p in &ctx.profiles {
            check_profile(p).map_err(Fail::Usage)?;
            if !seen.contains(p) {
                seen.push(p.clone());
            }
        }
        seen.into_iter().map(Some).collect()
    };
    if matches!(ctx.source, DeclSource::Manifest) && profiles.len() > 1 {
        return Err(Fail::Usage(
            "a manifest holds the declarations of one profile: run `skm prepare` once per manifest (export one \
             per profile with `skm manifest --profile NAME`), or run it through the application's `secrets` \
             binary, which takes several --profile"
                .into(),
        ));
    }
    let dir = directory(args.dir.as_deref())?;
    let (backend, choice) = ctx.within("setting the backend up", ctx.backend_opt()).await??;
    let Some(backend) = backend else {
        return Err(crate::no_backend(&choice));
    };

    let mut reports = Vec::new();
    let mut failed = false;
    for profile in profiles {
        let decls = declarations(ctx, profile.as_deref())?;
        ctx.ui.note(format!(
            "reading {} declared secrets of {}{} from {} ({})...",
            decls.fields.iter().filter(|f| f.path.is_some()).count(),
            decls.struct_name,
            profile.as_deref().map(|p| format!(", profile {p}")).unwrap_or_default(),
            backend.name(),
            ctx.deadline_words()
        ));
        let snapshot = snapshot(ctx, &decls, &backend, &choice).await?;
        let file = dir.join(file_name(&snapshot.struct_name, snapshot.profile.as_deref()));
        if args.check {
            let (stale, notes) = compare(&file, &snapshot);
            failed |= !stale.is_empty();
            reports.push((snapshot, file, stale, notes));
        } else {
            let text = serde_json::to_string_pretty(&snapshot)
                .map_err(|e| Fail::Failed(format!("cannot encode the snapshot: {e}")))?
                + "\n";
            std::fs::create_dir_all(&dir).map_err(|e| Fail::Failed(format!("cannot create {}: {e}", dir.display())))?;
            // Meant to be committed, as `.sqlx/` is: it holds no value.
            crate::cmd::util::write_atomic(&file, text.as_bytes(), Some(0o644))
                .map_err(|e| Fail::Failed(format!("cannot write {}: {e}", file.display())))?;
            reports.push((snapshot, file, Vec::new(), Vec::new()));
        }
    }

    if ctx.ui.json {
        let out: Vec<_> = reports
            .iter()
            .map(|(s, file, stale, notes)| {
                json!({
                    "struct": s.struct_name,
                    "profile": s.profile,
                    "file": file.display().to_string(),
                    "ok": stale.is_empty(),
                    "differences": stale,
                    "notes": notes,
                    "snapshot": s,
                })
            })
            .collect();
        ctx.ui
            .json(&json!({ "ok": !failed, "check": args.check, "snapshots": out }));
    } else {
        for (s, file, stale, notes) in &reports {
            show(ctx, s);
            match (args.check, stale.is_empty()) {
                (false, _) => ctx.ui.line(format!("wrote {} (no values)", file.display())),
                (true, true) => {
                    let ok = ctx.ui.paint(&format!("{} is up to date", file.display()), Tone::Good);
                    ctx.ui.line(ok);
                }
                (true, false) => {
                    let bad = ctx.ui.paint(
                        &format!("{} no longer matches the stores or the declarations:", file.display()),
                        Tone::Bad,
                    );
                    ctx.ui.line(bad);
                    for d in stale {
                        ctx.ui.line(format!("  - {}", display(d)));
                    }
                    ctx.ui.line("  run `skm prepare` and commit the snapshot");
                }
            }
            for n in notes {
                ctx.ui.note(format!("note: {n}"));
            }
        }
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

/// The snapshots' directory: `--dir`, `SKM_PREPARED`, `$CARGO_MANIFEST_DIR/.skm/prepared`, `./.skm/prepared`.
fn directory(flag: Option<&Path>) -> Result<PathBuf, Fail> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    let manifest_dir = crate::select::env_var("CARGO_MANIFEST_DIR").filter(|d| !d.trim().is_empty());
    match crate::select::env_var("SKM_PREPARED").map(|v| v.trim().to_string()) {
        Some(v) if matches!(v.to_ascii_lowercase().as_str(), "off" | "0" | "false" | "no") => Err(Fail::Usage(
            "SKM_PREPARED=off turns the build-time check off, so it names no directory: pass --dir DIR, or unset \
             it to use .skm/prepared"
                .into(),
        )),
        // Relative to the crate, as the derive reads it, when `cargo run` says where the crate is.
        Some(v) if !v.is_empty() => Ok(match manifest_dir {
            Some(base) if Path::new(&v).is_relative() => Path::new(&base).join(v),
            _ => PathBuf::from(v),
        }),
        _ => Ok(manifest_dir
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".skm")
            .join("prepared")),
    }
}

/// `S.<profile>.json`, or `S.json` without a profile.
pub(crate) fn file_name(struct_name: &str, profile: Option<&str>) -> String {
    match profile {
        Some(p) => format!("{struct_name}.{p}.json"),
        None => format!("{struct_name}.json"),
    }
}

/// The declarations for `profile`: the embedded struct's resolved for it, or the manifest's (which must be
/// of that profile).
fn declarations(ctx: &Ctx<'_, '_>, profile: Option<&str>) -> Result<Declarations, Fail> {
    match &ctx.source {
        DeclSource::Embedded { name, resolve, typed } if ctx.manifest.is_none() => {
            let fields = resolve(profile).map_err(Fail::from)?;
            Ok(Declarations {
                struct_name: name.to_string(),
                profile: profile.map(str::to_string),
                fields,
                typed: Some(*typed),
                unsupplied_defaults: Vec::new(),
            })
        }
        _ => {
            let decls = ctx.declarations("prepare")?;
            match (profile, &decls.profile) {
                (Some(wanted), Some(has)) if wanted != has => Err(Fail::Usage(format!(
                    "the manifest was written for profile `{has}`, not `{wanted}`"
                ))),
                _ => Ok(decls),
            }
        }
    }
}

/// What one field's value told: its keys (names only) and whether it exists.
struct Read {
    exists: bool,
    keys: Option<Vec<String>>,
}

/// Reads every declared secret with a path and builds the snapshot.
async fn snapshot(
    ctx: &Ctx<'_, '_>,
    decls: &Declarations,
    backend: &Arc<dyn AdminBackend>,
    choice: &skm_runtime::detect::Choice,
) -> Result<Snapshot, Fail> {
    let routed = ctx
        .within("setting the routed backends up", routed_backends(&decls.fields, choice))
        .await?;
    // A backend set in code has no registry name: `default`.
    let default_name = choice.backend.map_or("default", |d| d.name).to_string();
    // Each field's backend: the default one, or the one it is routed to.
    let mut backends: BTreeMap<String, Arc<dyn AdminBackend>> = BTreeMap::new();
    backends.insert(default_name.clone(), backend.clone());
    for r in &routed {
        match &r.backend {
            Ok(b) => {
                backends.insert(r.descriptor.name.to_string(), b.clone());
            }
            Err(why) => {
                return Err(Fail::Failed(format!(
                    "cannot prepare {} (routed to {}): {why}",
                    r.fields.join(", "),
                    r.descriptor.name
                )))
            }
        }
    }
    let fields: Vec<&ResolvedField> = decls.fields.iter().filter(|f| f.path.is_some()).collect();
    let backend_of = |f: &ResolvedField| -> String {
        match f.route() {
            Some(r) if backends.contains_key(r) => r.to_string(),
            _ => default_name.clone(),
        }
    };

    // The values, read once per field at its declared version: only existence and key names leave here.
    let mut reads: Vec<Read> = Vec::with_capacity(fields.len());
    let mut versions: BTreeMap<(String, String), Option<Vec<VersionEntry>>> = BTreeMap::new();
    for f in &fields {
        let name = backend_of(f);
        let b = &backends[&name];
        let path = f.path.clone().expect("filtered");
        let request = FetchRequest {
            path: path.clone(),
            version: f.spec.version.clone(),
        };
        let mut results = ctx.within(&format!("reading `{path}`"), b.fetch(&[request])).await?;
        let read = match results.pop() {
            Some(Ok(payload)) => Read {
                exists: true,
                keys: key_names(&payload.value),
            },
            Some(Err(e)) if e.kind == FailureKind::NotFound => Read {
                exists: false,
                keys: None,
            },
            Some(Err(e)) => {
                return Err(Fail::Failed(format!(
                    "cannot read `{}` from {}: {} ({})",
                    display(&path),
                    b.name(),
                    e.kind,
                    display(&e.detail)
                )))
            }
            None => return Err(Fail::Failed(format!("{} answered nothing for `{path}`", b.name()))),
        };
        if read.exists && !versions.contains_key(&(name.clone(), path.clone())) {
            let listed = match ctx
                .within(&format!("listing the versions of `{path}`"), b.versions(&path))
                .await?
            {
                Ok(list) => Some(
                    list.into_iter()
                        .map(|v| VersionEntry {
                            id: v.id,
                            stages: v.stages,
                        })
                        .collect(),
                ),
                Err(e) if matches!(e.kind, AdminErrorKind::Unsupported | AdminErrorKind::NotFound) => None,
                Err(e) => return Err(Fail::Failed(describe_admin(&e))),
            };
            versions.insert((name.clone(), path.clone()), listed);
        }
        reads.push(read);
    }

    // Parse and validate as a load would, with the stores as the only layer: env, `.env`, secret files and
    // defaults stay out, so the judgement is the store's.
    let mut loader = ctx
        .loader()
        .no_dotenv()
        .no_secrets_dir()
        .env_vars(Vec::<(String, String)>::new())
        .precedence([Layer::Backend])
        .backend_arc(Arc::new(ReadOnly(backend.clone())));
    for r in &routed {
        if let Ok(b) = &r.backend {
            loader = loader.with_backend_arc(r.descriptor.name, Arc::new(ReadOnly(b.clone())));
        }
    }
    if let Some(p) = &decls.profile {
        loader = loader.profile(p.clone());
    }
    let mut problems: BTreeMap<String, FieldProblem> = BTreeMap::new();
    match decls.typed {
        Some(typed) => match ctx.within_backstop("the typed load", typed(&loader)).await? {
            Ok(_) => {}
            Err(Error::Load(e)) => problems.extend(e.fields.into_iter().map(|f| (f.field, f.reason))),
            Err(other) => return Err(Fail::from(other)),
        },
        None => {
            let check = ctx
                .within_backstop("checking the secrets", loader.check_fields(&decls.fields))
                .await?
                .map_err(Fail::from)?;
            for (id, result) in check.fields {
                if let Err(e) = result {
                    problems.insert(id, e.reason);
                }
            }
        }
    }

    let typed = decls.typed.is_some();
    let mut entries = Vec::new();
    for (f, read) in fields.iter().zip(reads) {
        let path = f.path.clone().expect("filtered");
        let name = backend_of(f);
        let has_key = match (f.key.as_deref(), &read.keys) {
            (None, _) => true,
            (Some(k), Some(keys)) => keys.iter().any(|x| x == k),
            (Some(_), None) => false,
        };
        let judged = read.exists && has_key;
        let problem = problems.get(&f.id);
        let parses = match (judged, typed, problem) {
            (true, true, None) => Some(true),
            (true, true, Some(FieldProblem::WrongType { .. })) => Some(false),
            _ => None,
        };
        let valid = match (judged, problem) {
            (true, None | Some(FieldProblem::WrongType { .. })) => Some(true),
            (true, Some(FieldProblem::Validation(_))) => Some(false),
            _ => None,
        };
        let v = &f.spec.validate;
        entries.push(FieldEntry {
            field: f.id.clone(),
            path: path.clone(),
            key: f.key.as_deref().map(str::to_string),
            type_name: f.spec.type_name.to_string(),
            validators: ValidatorsEntry {
                min_len: v.min_len,
                not: v.not.iter().map(|s| s.to_string()).collect(),
                pattern: v.pattern.as_ref().map(|p| p.source.to_string()),
            },
            version: f.spec.version.to_string(),
            backend: name.clone(),
            exists: read.exists,
            keys: read.keys,
            versions: versions.get(&(name, path)).cloned().flatten(),
            parses,
            valid,
        });
    }
    let now = time::OffsetDateTime::now_utc();
    let prepared_at = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(Snapshot {
        skm_prepared: FORMAT,
        struct_name: decls.struct_name.clone(),
        profile: decls.profile.clone(),
        prepared_at,
        typed,
        fields: entries,
    })
}

/// The top-level key names of a JSON object, sorted; `None` for any other value. Only the names are
/// deserialized: the values are skipped without being copied.
fn key_names(value: &SecretValue) -> Option<Vec<String>> {
    let SecretValue::Text(text) = value else {
        return None;
    };
    let text = text.expose_secret();
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let map: BTreeMap<String, serde::de::IgnoredAny> = serde_json::from_str(text).ok()?;
    Some(map.into_keys().collect())
}

/// What differs between the snapshot in `file` and `now` (failures), and what only moved (notes).
fn compare(file: &Path, now: &Snapshot) -> (Vec<String>, Vec<String>) {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return (vec![format!("cannot read {}: {e}", file.display())], Vec::new()),
    };
    let old: Snapshot = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            return (
                vec![format!("{} is not a snapshot of this format: {e}", file.display())],
                Vec::new(),
            )
        }
    };
    let mut stale = Vec::new();
    let mut notes = Vec::new();
    if old.skm_prepared != now.skm_prepared {
        stale.push(format!(
            "format {} (this skm writes {})",
            old.skm_prepared, now.skm_prepared
        ));
    }
    for f in &now.fields {
        let Some(o) = old.fields.iter().find(|o| o.field == f.field) else {
            stale.push(format!("`{}` is declared but not in the snapshot", f.field));
            continue;
        };
        let at = format!("`{}` ({})", f.field, location_of(f));
        if (&o.path, &o.key, &o.type_name, &o.validators, &o.version, &o.backend)
            != (&f.path, &f.key, &f.type_name, &f.validators, &f.version, &f.backend)
        {
            stale.push(format!("{at}: the declaration changed"));
            continue;
        }
        if o.exists != f.exists {
            stale.push(format!(
                "{at}: {} in the store now",
                if f.exists { "exists" } else { "missing" }
            ));
        }
        if o.keys != f.keys {
            stale.push(format!("{at}: its keys changed"));
        }
        // A standalone check (no types) cannot confirm the embedded tool's parse results: not a difference.
        if o.parses.is_some() && f.parses.is_some() && o.parses != f.parses {
            stale.push(format!("{at}: whether its value parses as `{}` changed", f.type_name));
        }
        if o.valid != f.valid {
            stale.push(format!("{at}: whether its value passes the validators changed"));
        }
        if o.versions != f.versions {
            notes.push(format!(
                "{at}: its versions moved (a rotation?); `skm prepare` records them"
            ));
        }
    }
    for o in &old.fields {
        if !now.fields.iter().any(|f| f.field == o.field) {
            stale.push(format!(
                "`{}` is in the snapshot but no longer declared with a path",
                o.field
            ));
        }
    }
    (stale, notes)
}

fn location_of(f: &FieldEntry) -> String {
    match &f.key {
        Some(k) => format!("{}#{k}", f.path),
        None => f.path.clone(),
    }
}

/// The table of one snapshot: a status per field, no value.
fn show(ctx: &mut Ctx<'_, '_>, s: &Snapshot) {
    ctx.ui.line(display(&format!(
        "{}{}:",
        s.struct_name,
        s.profile
            .as_deref()
            .map(|p| format!(", profile {p}"))
            .unwrap_or_default()
    )));
    let rows: Vec<_> = s
        .fields
        .iter()
        .map(|f| {
            let (status, tone) = match (f.exists, &f.key, &f.keys, f.parses, f.valid) {
                (false, ..) => ("missing".to_string(), Tone::Bad),
                (true, Some(k), keys, ..) if !keys.as_ref().is_some_and(|ks| ks.contains(k)) => {
                    (format!("no key `{k}`"), Tone::Bad)
                }
                (true, _, _, Some(false), _) => (format!("not a {}", f.type_name), Tone::Bad),
                (true, _, _, _, Some(false)) => ("fails validators".to_string(), Tone::Bad),
                (true, _, _, None, _) => ("exists (type not checked)".to_string(), Tone::Good),
                _ => ("ok".to_string(), Tone::Good),
            };
            let versions = f.versions.as_ref().map_or("-".to_string(), |v| v.len().to_string());
            vec![
                (f.field.clone(), Tone::Plain),
                (location_of(f), Tone::Plain),
                (f.backend.clone(), Tone::Dim),
                (versions, Tone::Dim),
                (status, tone),
            ]
        })
        .collect();
    ctx.ui.table(&["field", "path", "backend", "versions", "status"], &rows);
}
