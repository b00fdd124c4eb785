//! `migrate`: move the declared secrets from a `.env` file (or another backend) into a backend.
//!
//! Four steps, each value-free in its output: plan (per declared secret: create, update, unchanged,
//! conflict, skipped), apply (one write per backend path, a progress bar on a terminal), verify (read every
//! migrated value back), and, with `--delete-source`, rewrite the `.env` without the verified entries.
//! A second run finds everything unchanged and writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use skm_runtime::backend::registry::{self, Descriptor};
use skm_runtime::backend::{AdminBackend, FailureKind, FetchRequest, FetchResult, PutRequest, SecretValue};
use skm_runtime::ResolvedField;

use super::util::{as_object, key_text, object_value};
use crate::args::MigrateArgs;
use crate::decl::location;
use crate::dotenv::{backup, EnvFile};
use crate::output::Tone;
use crate::{exit, no_backend, select, Ctx, Fail};

/// What the plan says about one declared secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
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
    fn as_str(self) -> &'static str {
        match self {
            Status::Create => "create",
            Status::Update => "update",
            Status::Unchanged => "unchanged",
            Status::Conflict => "conflict",
            Status::Skipped => "skipped",
            Status::Error => "error",
        }
    }

    fn tone(self) -> Tone {
        match self {
            Status::Create | Status::Update => Tone::Good,
            Status::Unchanged | Status::Skipped => Tone::Dim,
            Status::Conflict => Tone::Warn,
            Status::Error => Tone::Bad,
        }
    }
}

/// A value from the source: a key's text, or a whole secret.
enum Local {
    Key(String),
    Whole(SecretValue),
}

struct Row {
    field: ResolvedField,
    local: Option<Local>,
    status: Status,
    note: String,
}

impl Row {
    /// Whether the apply step writes this row's value.
    fn writes(&self, force: bool) -> bool {
        matches!(self.status, Status::Create | Status::Update) || (force && self.status == Status::Conflict)
    }

    /// Whether, after applying, the destination should hold this row's value.
    fn lands(&self, force: bool) -> bool {
        self.writes(force) || self.status == Status::Unchanged
    }
}

enum Source {
    Dotenv(PathBuf),
    Backend(&'static Descriptor),
}

fn parse_source(from: &str) -> Source {
    match registry::find(from) {
        Some(d) => Source::Backend(d),
        None => Source::Dotenv(PathBuf::from(from)),
    }
}

pub(crate) async fn run(ctx: &mut Ctx<'_, '_>, args: MigrateArgs) -> Result<u8, Fail> {
    let decls = ctx.declarations("migrate")?;
    let source = parse_source(&args.from);
    if matches!(source, Source::Backend(_)) && (args.backup || args.delete_source) {
        return Err(Fail::Usage(
            "--backup and --delete-source apply to a .env source; a backend source is never modified".into(),
        ));
    }

    // The destination.
    let (dest, dest_kind): (Arc<dyn AdminBackend>, Option<&'static Descriptor>) = match (&ctx.backend, &args.to) {
        (Some(b), _) => (b.clone(), None),
        (None, Some(to)) => {
            let Some(kind) = select::parse_kind(to)? else {
                return Err(Fail::Usage(
                    "--to none: name a backend to migrate into (aws, vault, local)".into(),
                ));
            };
            let backend = select::build(Some(kind))
                .await?
                .ok_or_else(|| Fail::Usage(format!("cannot build the `{}` backend", kind.name)))?;
            (backend, Some(kind))
        }
        (None, None) => match ctx.backend_opt().await? {
            (Some(b), choice) => (b, choice.backend),
            (None, choice) => return Err(no_backend(&choice)),
        },
    };
    if let (Source::Backend(kind), Some(to)) = (&source, dest_kind) {
        if kind.name == to.name {
            return Err(Fail::Usage(format!(
                "--from {} and the destination {} are the same backend: skm builds each from the environment, \
                 so it cannot move secrets within one",
                kind.name, to.name
            )));
        }
    }

    // Step 1: read the source.
    let (source_name, mut rows, env_file) = match &source {
        Source::Dotenv(path) => {
            let file = EnvFile::read(path)?.ok_or_else(|| {
                Fail::Usage(format!(
                    "{} does not exist: pass --from FILE or --from BACKEND",
                    path.display()
                ))
            })?;
            let rows = rows_from_dotenv(&decls.fields, &file);
            (path.display().to_string(), rows, Some(file))
        }
        Source::Backend(kind) => {
            let src = select::build(Some(*kind))
                .await?
                .ok_or_else(|| Fail::Usage(format!("cannot build the `{}` backend", kind.name)))?;
            let rows = rows_from_backend(&decls.fields, src.as_ref()).await;
            (src.name(), rows, None)
        }
    };
    let dest_name = dest.name();

    // Step 2: compare with the destination.
    skip_ambiguous(&mut rows);
    let paths: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.local.is_some() && r.status != Status::Skipped)
        .filter_map(|r| r.field.path.clone())
        .collect();
    let remote = fetch_map(dest.as_ref(), &paths).await;
    for row in rows
        .iter_mut()
        .filter(|r| r.local.is_some() && r.status != Status::Skipped)
    {
        let path = row.field.path.as_deref().unwrap_or_default();
        (row.status, row.note) = compare(row, remote.get(path));
    }

    let undeclared: Vec<String> = env_file
        .as_ref()
        .map(|f| {
            let declared: BTreeSet<&str> = decls.fields.iter().filter_map(|f| f.env).collect();
            f.names()
                .filter(|n| !declared.contains(n))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();

    let mut report = Report {
        dry_run: args.dry_run,
        force: args.force,
        from: source_name,
        to: dest_name.clone(),
        undeclared,
        ..Report::default()
    };

    if args.dry_run {
        if args.delete_source {
            report.removed = removable(&rows, args.force);
        }
        report.render(ctx, &rows);
        let failed = rows.iter().any(|r| r.status == Status::Error);
        return Ok(if failed { exit::FAILED } else { exit::OK });
    }

    // Step 3: apply, one write per path.
    if let (Some(file), true) = (&env_file, args.backup || args.delete_source) {
        report.backup = Some(backup(&file.path)?);
    }
    let writes = plan_writes(&rows, &remote, args.force);
    let bar = progress(ctx, writes.len() as u64);
    for (path, (value, create_only, count)) in writes {
        bar.set_message(path.clone());
        let request = PutRequest {
            path: path.clone(),
            value,
            tags: Vec::new(),
            description: None,
            create_only,
            expected_version: None,
        };
        match dest.put(request).await {
            Ok(version) => {
                report.puts += 1;
                report.written += count;
                report.versions.push((path, version));
            }
            Err(e) => report.failures.push(format!("write {}", crate::describe_admin(&e))),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Step 4: read every migrated value back.
    let landed: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.lands(args.force))
        .filter_map(|r| r.field.path.clone())
        .collect();
    let after = fetch_map(dest.as_ref(), &landed).await;
    let mut verified_envs = BTreeSet::new();
    for row in rows.iter().filter(|r| r.lands(args.force)) {
        let path = row.field.path.as_deref().unwrap_or_default();
        let ok = match (after.get(path), &row.local) {
            (Some(Ok(p)), Some(Local::Whole(v))) => same_value(&p.value, v),
            (Some(Ok(p)), Some(Local::Key(v))) => as_object(&p.value)
                .and_then(|o| key_text(&o, row.field.key.unwrap_or_default()))
                .is_some_and(|t| constant_eq(t.as_bytes(), v.as_bytes())),
            _ => false,
        };
        if ok {
            report.verified += 1;
            if let Some(env) = row.field.env {
                verified_envs.insert(env.to_string());
            }
        } else {
            report.failures.push(format!(
                "verify `{}`: the value read back differs or cannot be read",
                location(&row.field)
            ));
        }
    }

    // Step 5: only when everything was written and verified, rewrite the .env without those entries.
    if let (Some(file), true) = (&env_file, args.delete_source) {
        if report.failures.is_empty() && !verified_envs.is_empty() {
            let locs: BTreeMap<&str, String> = rows
                .iter()
                .filter_map(|r| r.field.env.map(|e| (e, location(&r.field))))
                .collect();
            let note = |name: &str| {
                format!(
                    "# {name}: migrated by `skm migrate` to {dest_name} ({})",
                    locs.get(name).map_or("", String::as_str)
                )
            };
            let text = file.without(&verified_envs, &note)?;
            let mode = crate::cmd::util::mode_of(&file.path).map(|m| m & 0o777);
            crate::cmd::util::write_atomic(&file.path, text.as_bytes(), mode)
                .map_err(|e| Fail::Failed(format!("cannot rewrite {}: {e}", file.path.display())))?;
            report.source_rewritten = true;
            report.removed = verified_envs.into_iter().collect();
        } else if !report.failures.is_empty() {
            report.notes.push(format!(
                "{} left unchanged because of the failures above",
                file.path.display()
            ));
        }
    }

    report.render(ctx, &rows);
    let conflicts_left = !args.force && rows.iter().any(|r| r.status == Status::Conflict);
    let errors = rows.iter().any(|r| r.status == Status::Error);
    Ok(if report.failures.is_empty() && !conflicts_left && !errors {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn rows_from_dotenv(fields: &[ResolvedField], file: &EnvFile) -> Vec<Row> {
    fields
        .iter()
        .map(|f| {
            let row = |local, status, note: String| Row {
                field: f.clone(),
                local,
                status,
                note,
            };
            match (&f.path, f.env) {
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

async fn rows_from_backend(fields: &[ResolvedField], src: &dyn AdminBackend) -> Vec<Row> {
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
                Some((p, Some(Ok(payload)))) => match f.key {
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
fn skip_ambiguous(rows: &mut [Row]) {
    let mut whole: BTreeMap<String, String> = BTreeMap::new();
    let mut keys: BTreeMap<(String, String), String> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.local.is_some()) {
        if let (Some(p), None) = (&row.field.path, row.field.key) {
            whole.entry(p.clone()).or_insert_with(|| row.field.id.clone());
        }
    }
    for row in rows.iter_mut().filter(|r| r.local.is_some()) {
        let Some(path) = row.field.path.clone() else { continue };
        match row.field.key {
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
async fn fetch_map(backend: &dyn AdminBackend, paths: &BTreeSet<String>) -> BTreeMap<String, FetchResult> {
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

fn compare(row: &Row, remote: Option<&FetchResult>) -> (Status, String) {
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
            let key = row.field.key.unwrap_or_default();
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

/// Per path: the value to write, whether it must not exist yet, and how many declared values it carries.
fn plan_writes(
    rows: &[Row],
    remote: &BTreeMap<String, FetchResult>,
    force: bool,
) -> BTreeMap<String, (SecretValue, bool, usize)> {
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
        let value = match rows[0].local.as_ref() {
            Some(Local::Whole(v)) => v.clone(),
            _ => {
                // Keep the keys the destination already has (other services' keys, undeclared ones).
                let mut object = existing.and_then(as_object).unwrap_or_default();
                for row in &rows {
                    if let (Some(Local::Key(v)), Some(k)) = (&row.local, row.field.key) {
                        object.insert(k.to_string(), serde_json::Value::String(v.clone()));
                    }
                }
                object_value(&object)
            }
        };
        writes.insert(path, (value, create_only, rows.len()));
    }
    writes
}

fn removable(rows: &[Row], force: bool) -> Vec<String> {
    rows.iter()
        .filter(|r| r.lands(force))
        .filter_map(|r| r.field.env.map(str::to_string))
        .collect()
}

/// Equal values; a JSON object counts as equal to the same object written differently, because Vault
/// stores objects as maps and hands them back re-serialized.
fn same_value(a: &SecretValue, b: &SecretValue) -> bool {
    a.same_as(b) || matches!((as_object(a), as_object(b)), (Some(x), Some(y)) if x == y)
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn progress(ctx: &Ctx<'_, '_>, len: u64) -> indicatif::ProgressBar {
    if ctx.ui.json || !ctx.ui.io.stderr_tty || len == 0 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} writing {wide_msg}") {
        bar.set_style(style);
    }
    bar
}

#[derive(Default)]
struct Report {
    dry_run: bool,
    force: bool,
    from: String,
    to: String,
    undeclared: Vec<String>,
    backup: Option<PathBuf>,
    puts: usize,
    written: usize,
    verified: usize,
    versions: Vec<(String, String)>,
    failures: Vec<String>,
    source_rewritten: bool,
    removed: Vec<String>,
    notes: Vec<String>,
}

impl Report {
    fn render(&self, ctx: &mut Ctx<'_, '_>, rows: &[Row]) {
        let mut counts: BTreeMap<Status, usize> = BTreeMap::new();
        for r in rows {
            *counts.entry(r.status).or_default() += 1;
        }
        let count = |s: Status| counts.get(&s).copied().unwrap_or(0);
        let conflicts_left = if self.force || self.dry_run {
            0
        } else {
            count(Status::Conflict)
        };
        if ctx.ui.json {
            let plan: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "field": r.field.id,
                        "env": r.field.env,
                        "path": r.field.path,
                        "key": r.field.key,
                        "status": r.status.as_str(),
                        "forced": self.force && r.status == Status::Conflict,
                        "note": r.note,
                    })
                })
                .collect();
            let versions: serde_json::Map<String, serde_json::Value> =
                self.versions.iter().map(|(p, v)| (p.clone(), json!(v))).collect();
            let ok = self.failures.is_empty() && conflicts_left == 0 && count(Status::Error) == 0;
            ctx.ui.json(&json!({
                "ok": ok,
                "dry_run": self.dry_run,
                "from": self.from,
                "to": self.to,
                "plan": plan,
                "summary": {
                    "create": count(Status::Create),
                    "update": count(Status::Update),
                    "unchanged": count(Status::Unchanged),
                    "conflict": count(Status::Conflict),
                    "skipped": count(Status::Skipped),
                    "error": count(Status::Error),
                },
                "written": self.written,
                "puts": self.puts,
                "verified": self.verified,
                "versions": versions,
                "failures": self.failures,
                "backup": self.backup.as_ref().map(|p| p.display().to_string()),
                "source_rewritten": self.source_rewritten,
                "removed_from_source": self.removed,
                "undeclared": self.undeclared,
            }));
            return;
        }

        let title = if self.dry_run {
            "plan (dry run: nothing written)"
        } else {
            "plan"
        };
        ctx.ui.line(format!("{title}: {} → {}", self.from, self.to));
        let table: Vec<_> = rows
            .iter()
            .map(|r| {
                let status = if self.force && r.status == Status::Conflict {
                    ("conflict → overwrite".to_string(), Tone::Warn)
                } else {
                    (r.status.as_str().to_string(), r.status.tone())
                };
                vec![
                    (r.field.id.clone(), Tone::Plain),
                    (r.field.env.unwrap_or("-").to_string(), Tone::Plain),
                    (location(&r.field), Tone::Plain),
                    status,
                    (r.note.clone(), Tone::Dim),
                ]
            })
            .collect();
        ctx.ui.table(&["field", "env", "destination", "status", "note"], &table);
        ctx.ui.line(format!(
            "{} create, {} update, {} unchanged, {} conflict, {} skipped{}",
            count(Status::Create),
            count(Status::Update),
            count(Status::Unchanged),
            count(Status::Conflict),
            count(Status::Skipped),
            if count(Status::Error) > 0 {
                format!(", {} error", count(Status::Error))
            } else {
                String::new()
            }
        ));
        if !self.undeclared.is_empty() {
            ctx.ui.note(format!(
                "{} variable(s) in {} are not declared and stay there: {}",
                self.undeclared.len(),
                self.from,
                self.undeclared.join(", ")
            ));
        }
        if self.dry_run {
            if !self.removed.is_empty() {
                ctx.ui.line(format!(
                    "--delete-source would then remove from {}: {}",
                    self.from,
                    self.removed.join(", ")
                ));
            }
            ctx.ui.line("dry run: 0 written");
            return;
        }
        if let Some(b) = &self.backup {
            ctx.ui
                .line(format!("backup: {} (mode 0600; keep it out of git)", b.display()));
        }
        ctx.ui.line(format!(
            "wrote {} value(s) in {} secret(s); verified {} by reading them back",
            self.written, self.puts, self.verified
        ));
        for f in &self.failures {
            let label = ctx.ui.paint("failed:", Tone::Bad);
            ctx.ui.line(format!("{label} {f}"));
        }
        if conflicts_left > 0 {
            ctx.ui.warn(format!(
                "{conflicts_left} conflict(s) left alone: the destination holds a different value; rerun with --force \
                 to overwrite (the old value stays as the previous version)"
            ));
        }
        if self.source_rewritten {
            ctx.ui.line(format!(
                "removed {} migrated entr{} from {}",
                self.removed.len(),
                if self.removed.len() == 1 { "y" } else { "ies" },
                self.from
            ));
        }
        for n in &self.notes {
            ctx.ui.note(n);
        }
    }
}
