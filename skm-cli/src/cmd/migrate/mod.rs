//! `migrate`: move the declared secrets from a `.env` file (or another backend) into a backend.
//!
//! Four steps, each value-free in its output: plan (per declared secret: create, update, unchanged,
//! conflict, skipped), apply (one write per backend path, a progress bar on a terminal), verify (read every
//! migrated value back), and, with `--delete-source`, rewrite the `.env` without the verified entries.
//! A second run finds everything unchanged and writes nothing.

mod plan;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use skm_runtime::backend::registry::{self, Descriptor};
use skm_runtime::backend::{AdminBackend, PutRequest};

use super::util::{as_object, constant_eq, key_text, non_atomic_warning, update_object, KeyWrite};
use crate::args::MigrateArgs;
use crate::decl::location;
use crate::dotenv::{backup, EnvFile};
use crate::{exit, no_backend, select, Ctx, Fail};
use plan::{
    compare, fetch_map, plan_writes, removable, rows_from_backend, rows_from_dotenv, same_value, skip_ambiguous, Local,
    Status,
};
use report::Report;

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
                return Err(Fail::Usage(format!(
                    "--to none: name a backend to migrate into ({})",
                    registry::names().join(", ")
                )));
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
            // Each field is read where it lives: fields routed to another backend (`backend = "vault"`)
            // from that backend, built from the environment as a load would.
            let choice = skm_runtime::detect::Choice {
                backend: Some(*kind),
                reason: format!("--from {}", kind.name),
            };
            let routed = crate::decl::routed_backends(&decls.fields, &choice).await;
            let on_source: Vec<_> = decls
                .fields
                .iter()
                .filter(|f| !routed.iter().any(|r| r.fields.contains(&f.id)))
                .cloned()
                .collect();
            let mut rows = rows_from_backend(&on_source, src.as_ref()).await;
            let mut names = vec![src.name()];
            for r in &routed {
                let backend = r.backend.as_ref().map_err(|why| {
                    Fail::Usage(format!(
                        "{} are read from backend `{}`: {why}",
                        r.fields.join(", "),
                        r.descriptor.name
                    ))
                })?;
                let fields: Vec<_> = decls
                    .fields
                    .iter()
                    .filter(|f| r.fields.contains(&f.id))
                    .cloned()
                    .collect();
                rows.extend(rows_from_backend(&fields, backend.as_ref()).await);
                names.push(backend.name());
            }
            let order = |row: &plan::Row| decls.fields.iter().position(|f| f.id == row.field.id);
            rows.sort_by_key(order);
            (names.join(" + "), rows, None)
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
            let declared: BTreeSet<&str> = decls.fields.iter().filter_map(|f| f.env.as_deref()).collect();
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
        // A dry run answers "would a real run succeed?": a conflict it would leave alone is a failure too.
        let conflicts = !args.force && rows.iter().any(|r| r.status == Status::Conflict);
        let failed = conflicts || rows.iter().any(|r| r.status == Status::Error);
        return Ok(if failed { exit::FAILED } else { exit::OK });
    }

    // Step 3: apply, one write per path.
    if let (Some(file), true) = (&env_file, args.backup || args.delete_source) {
        report.backup = Some(backup(&file.path)?);
    }
    let writes = plan_writes(&rows, &remote, args.force);
    let bar = progress(ctx, writes.len() as u64);
    let mut unchecked = false;
    for (path, write) in writes {
        bar.set_message(path.clone());
        let written = match write.keys {
            // Keys merged into an existing object: read, merge and write again with check-and-set, so a
            // concurrent writer's keys survive.
            Some(keys) => merge_keys(dest.as_ref(), &path, &keys).await.map(|w| {
                unchecked |= !w.atomic;
                w.version
            }),
            None => {
                let request = PutRequest {
                    path: path.clone(),
                    value: write.value,
                    tags: Vec::new(),
                    description: None,
                    create_only: write.create_only,
                    expected_version: None,
                };
                dest.put(request).await.map_err(Fail::from)
            }
        };
        match written {
            Ok(version) => {
                report.puts += 1;
                report.written += write.count;
                report.versions.push((path, version));
            }
            Err(Fail::Failed(m) | Fail::Usage(m)) => report.failures.push(format!("write {m}")),
        }
        bar.inc(1);
    }
    if unchecked {
        ctx.ui.warn(non_atomic_warning(&dest_name));
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
                .and_then(|o| key_text(&o, row.field.key.as_deref().unwrap_or_default()))
                .is_some_and(|t| constant_eq(t.as_bytes(), v.as_bytes())),
            _ => false,
        };
        if ok {
            report.verified += 1;
            if let Some(env) = row.field.env.as_deref() {
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
                .filter_map(|r| r.field.env.as_deref().map(|e| (e, location(&r.field))))
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

/// Sets `keys` (key, new value, what the plan saw) in the object at `path`, re-reading and re-merging on a
/// check-and-set conflict; a key whose value changed since the plan is not overwritten.
async fn merge_keys(
    dest: &dyn AdminBackend,
    path: &str,
    keys: &[(String, String, Option<String>)],
) -> Result<KeyWrite, Fail> {
    update_object(dest, path, |current| {
        let mut object = match current {
            Some(Ok(object)) => object,
            None => {
                return Err(Fail::Failed(format!(
                    "`{path}`: deleted since the plan; nothing written, run migrate again"
                )))
            }
            Some(Err(())) => {
                return Err(Fail::Failed(format!(
                    "`{path}`: no longer a JSON object since the plan; nothing written, run migrate again"
                )))
            }
        };
        for (key, value, planned) in keys {
            let now = key_text(&object, key);
            let unchanged = match (&now, planned) {
                (None, None) => true,
                (Some(a), Some(b)) => constant_eq(a.as_bytes(), b.as_bytes()),
                _ => false,
            };
            // Already the value migrated (another run got there first): fine too.
            let done = now
                .as_deref()
                .is_some_and(|a| constant_eq(a.as_bytes(), value.as_bytes()));
            if !unchanged && !done {
                return Err(Fail::Failed(format!(
                    "`{path}` key `{key}`: changed since the plan; nothing written, run migrate again"
                )));
            }
            object.insert(key.clone(), serde_json::Value::String(value.clone()));
        }
        Ok(object)
    })
    .await
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
