//! `check`: resolve every declared secret where the command runs, show where each comes from, never a value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use skm_runtime::backend::registry;
use skm_runtime::{Error, FieldError, FieldProblem};

use super::doctor::{git_ignored, git_ignored_store, Level};
use crate::decl::{location, routed_backends};
use crate::output::Tone;
use crate::safe::display_lines;
use crate::select::{env_var, ReadOnly};
use crate::{exit, Ctx, Fail};

pub(crate) async fn run(
    ctx: &mut Ctx<'_, '_>,
    dotenv: Option<PathBuf>,
    no_dotenv: bool,
    strict: bool,
) -> Result<u8, Fail> {
    let decls = ctx.declarations("check")?;
    // Said before anything waits on the network, so that a slow or silent backend is never a silent hang.
    let target = ctx
        .choice()
        .map(|c| c.name().to_string())
        .unwrap_or_else(|_| "?".into());
    ctx.ui.note(format!(
        "checking {} declared secrets against {target} ({})...",
        decls.fields.len(),
        ctx.deadline_words()
    ));
    let started = std::time::Instant::now();
    let (backend, choice) = ctx.within("setting the backend up", ctx.backend_opt()).await??;

    let mut loader = ctx.loader();
    if let Some(b) = &backend {
        loader = loader.backend_arc(Arc::new(ReadOnly(b.clone())));
    }
    // Fields routed to another backend (`backend = "vault"`) are checked on it, as a load would read them.
    let routed = ctx
        .within(
            "setting the routed backends up",
            routed_backends(&decls.fields, &choice),
        )
        .await?;
    let mut route_warnings = Vec::new();
    for r in &routed {
        match &r.backend {
            Ok(b) => loader = loader.with_backend_arc(r.descriptor.name, Arc::new(ReadOnly(b.clone()))),
            Err(why) => route_warnings.push(format!(
                "backend `{}` (for {}): {why}",
                r.descriptor.name,
                r.fields.join(", ")
            )),
        }
    }
    // The same `.env` and strictness the application would use (SKM_DOTENV, SKM_STRICT), unless overridden.
    loader = match (no_dotenv, dotenv.clone(), env_var("SKM_DOTENV")) {
        (true, _, _) => loader.no_dotenv(),
        (false, Some(path), _) => loader.dotenv(path),
        (false, None, Some(p)) if p.is_empty() => loader.no_dotenv(),
        (false, None, Some(p)) => loader.dotenv(p),
        (false, None, None) => loader,
    };
    // Which files hold secrets here, for the git check below (the load itself never runs git).
    let dotenv_file: Option<PathBuf> = match (no_dotenv, &dotenv, env_var("SKM_DOTENV")) {
        (true, _, _) => None,
        (false, Some(path), _) => Some(path.clone()),
        (false, None, Some(p)) if p.is_empty() => None,
        (false, None, Some(p)) => Some(PathBuf::from(p)),
        (false, None, None) => Some(PathBuf::from(".env")),
    };
    // Where the chosen backend keeps its secrets in files here (the local store), for the same check.
    let store_dir = choice
        .backend
        .and_then(|d| d.store_path)
        .map(|store_path| store_path(&|name| env_var(name)));
    let strict = strict
        || env_var("SKM_STRICT")
            .is_some_and(|s| matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
    loader = loader.strict(strict);
    if let Some(p) = &decls.profile {
        loader = loader.profile(p.clone());
    }

    let check = ctx
        .within_backstop("checking the secrets", loader.check_fields(&decls.fields))
        .await?
        .map_err(Fail::from)?;

    // The typed load sees what `check_fields` cannot: a value that does not parse as the field's type.
    let mut typed_errors: BTreeMap<String, FieldError> = BTreeMap::new();
    // Skipped when a backend already failed: it would only wait for that backend a second time, and only
    // values that were read can be of the wrong type.
    let backend_failed = check
        .fields
        .iter()
        .any(|(_, r)| matches!(r, Err(e) if matches!(e.reason, FieldProblem::Backend(_))));
    if let (Some(typed), false) = (decls.typed, backend_failed) {
        // What is left of the deadline: the check and the typed load share one budget.
        if let Some(d) = ctx.deadline() {
            let left = d.saturating_sub(started.elapsed());
            loader = loader.deadline(left.max(std::time::Duration::from_millis(1)));
        }
        match ctx.within_backstop("the typed load", typed(&loader)).await? {
            Ok(_) => {}
            Err(Error::Load(e)) => {
                for f in e.fields {
                    typed_errors.insert(f.field.clone(), f);
                }
            }
            Err(other) => return Err(Fail::from(other)),
        }
    }

    struct Line {
        id: String,
        env: Option<String>,
        path: Option<String>,
        key: Option<String>,
        location: String,
        status: &'static str,
        layer: Option<String>,
        source: String,
        at: String,
        error: Option<FieldError>,
        /// The backend's own name for the path where it differs (GCP secret id, Key Vault name).
        mapped: Option<String>,
        /// Why the path cannot be a name in the backend (Key Vault's rules, collisions).
        name_error: Option<String>,
        /// Why the tool could not supply a declared default (a manifest's secret-typed field).
        hint: Option<String>,
    }
    // Each path's name in the backend that serves it.
    let default_kind = choice.name();
    let kind_of = |f: &skm_runtime::ResolvedField| f.route().unwrap_or(default_kind);
    let mut names: BTreeMap<(&str, String), Result<String, String>> = BTreeMap::new();
    let kinds: std::collections::BTreeSet<&str> = decls.fields.iter().map(kind_of).collect();
    for kind in kinds {
        let paths = decls
            .fields
            .iter()
            .filter(|f| kind_of(f) == kind)
            .filter_map(|f| f.path.as_deref());
        names.extend(mapped_names(kind, paths).into_iter().map(|(p, n)| ((kind, p), n)));
    }
    let mut lines = Vec::new();
    for (field, (id, result)) in decls.fields.iter().zip(&check.fields) {
        let mut line = Line {
            id: id.clone(),
            env: field.env.as_deref().map(str::to_string),
            path: field.path.clone(),
            key: field.key.as_deref().map(str::to_string),
            location: location(field),
            status: "ok",
            layer: None,
            source: String::new(),
            at: String::new(),
            error: None,
            mapped: None,
            name_error: None,
            hint: None,
        };
        match field.path.clone().and_then(|p| names.get(&(kind_of(field), p))) {
            Some(Ok(name)) if Some(name.as_str()) != field.path.as_deref() => line.mapped = Some(name.clone()),
            Some(Err(e)) => line.name_error = Some(e.clone()),
            _ => {}
        }
        match result {
            Ok(Some(origin)) => {
                line.layer = origin.layer.map(|l| l.to_string());
                line.source = origin.source.clone();
                line.at = origin.location.clone();
                if let Some(e) = typed_errors.remove(id) {
                    line.status = "wrong type";
                    line.error = Some(e);
                }
            }
            Ok(None) => {
                line.status = "absent";
                line.source = "optional: None".into();
            }
            Err(e) => {
                line.status = match e.reason {
                    FieldProblem::Missing => {
                        line.hint = decls.unsupplied_notes([id.as_str()]).pop();
                        "missing"
                    }
                    FieldProblem::WrongType { .. } => "wrong type",
                    FieldProblem::Backend(_) => "backend failed",
                    FieldProblem::Invalid(_) => "invalid",
                    _ => "failed",
                };
                line.error = Some(e.clone());
            }
        }
        lines.push(line);
    }
    let mut warnings = route_warnings;
    warnings.extend(check.provenance.warnings.iter().cloned());
    for path in dotenv_file.iter().filter(|p| p.exists()) {
        if let (Level::Fail, why) = git_ignored(path) {
            warnings.push(why);
        }
    }
    for path in store_dir.iter().filter(|p| p.exists()) {
        if let (Level::Fail, why) = git_ignored_store(path) {
            warnings.push(why);
        }
    }
    for l in &mut lines {
        if l.name_error.is_some() && l.status == "ok" {
            l.status = "invalid name";
        }
    }
    let failed = lines
        .iter()
        .filter(|l| l.error.is_some() || l.name_error.is_some())
        .count();
    let backend_name = backend.as_ref().map(|b| b.name());

    if ctx.ui.json {
        let fields: Vec<_> = lines
            .iter()
            .map(|l| {
                json!({
                    "field": l.id,
                    "env": l.env,
                    "path": l.path,
                    "backend_name": l.mapped,
                    "name_error": l.name_error,
                    "key": l.key,
                    "ok": l.error.is_none(),
                    "status": l.status,
                    "layer": l.layer,
                    "source": l.source,
                    "location": l.at,
                    "error": l.error.as_ref().map(ToString::to_string),
                    "hint": l.hint,
                })
            })
            .collect();
        ctx.ui.json(&json!({
            "ok": failed == 0,
            "struct": decls.struct_name,
            "profile": decls.profile,
            "backend": backend_name,
            "backend_reason": choice.reason,
            "routed_backends": routed
                .iter()
                .map(|r| json!({
                    "backend": r.descriptor.name,
                    "name": r.backend.as_ref().ok().map(|b| b.name()),
                    "error": r.backend.as_ref().err(),
                    "fields": r.fields,
                }))
                .collect::<Vec<_>>(),
            "strict": strict,
            "typed": decls.typed.is_some(),
            "declared": lines.len(),
            "failed": failed,
            "fields": fields,
            "warnings": warnings,
        }));
    } else {
        ctx.ui.line(display_lines(&format!(
            "{}: backend {} ({})",
            decls.struct_name,
            backend_name.as_deref().unwrap_or("none"),
            choice.reason
        )));
        for r in &routed {
            if let Ok(b) = &r.backend {
                ctx.ui.line(display_lines(&format!(
                    "  routed to {}: {} ({})",
                    b.name(),
                    r.fields.join(", "),
                    r.descriptor.name
                )));
            }
        }
        let rows: Vec<_> = lines
            .iter()
            .map(|l| {
                let tone = match l.status {
                    "ok" => Tone::Good,
                    "absent" => Tone::Dim,
                    _ => Tone::Bad,
                };
                let source = if l.at.is_empty() {
                    l.source.clone()
                } else {
                    format!("{}: {}", l.source, l.at)
                };
                vec![
                    (l.id.clone(), Tone::Plain),
                    (l.env.as_deref().unwrap_or("-").to_string(), Tone::Plain),
                    (
                        match (&l.mapped, l.location.is_empty()) {
                            (_, true) => "-".into(),
                            (Some(m), false) => format!("{} → {m}", l.location),
                            (None, false) => l.location.clone(),
                        },
                        Tone::Plain,
                    ),
                    (l.status.to_string(), tone),
                    (source, Tone::Dim),
                ]
            })
            .collect();
        ctx.ui.table(&["field", "env", "path", "status", "source"], &rows);
        for w in &warnings {
            ctx.ui.warn(w);
        }
        for l in &lines {
            if let Some(e) = &l.name_error {
                let label = ctx.ui.paint("✗", Tone::Bad);
                ctx.ui.line(format!("{label} {}", display_lines(e)));
            }
            if let Some(e) = &l.error {
                let label = ctx.ui.paint("✗", Tone::Bad);
                ctx.ui.line(format!("{label} {}", display_lines(&e.to_string())));
            }
            if let Some(hint) = &l.hint {
                ctx.ui.line(format!("  {}", display_lines(hint)));
            }
        }
        let summary = if failed == 0 {
            ctx.ui
                .paint(&format!("all {} declared secrets resolve", lines.len()), Tone::Good)
        } else {
            ctx.ui.paint(
                &format!("{failed} of {} declared secrets do not resolve", lines.len()),
                Tone::Bad,
            )
        };
        ctx.ui.line(summary);
        if decls.typed.is_none() {
            ctx.ui.note("note: types were not checked (a manifest has no code); the application's own `secrets` binary checks them");
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILED })
}

/// Each declared path's name in the backend `backend`, where the backend maps names (its registry
/// descriptor's [`name_map`](skm_runtime::backend::registry::Descriptor::name_map): the GCP secret id, the Key
/// Vault name with Key Vault's character rules and collisions checked across all paths).
fn mapped_names<'a>(backend: &str, paths: impl Iterator<Item = &'a str>) -> BTreeMap<String, Result<String, String>> {
    let paths: Vec<&str> = paths.collect();
    registry::find(backend)
        .and_then(|d| d.name_map)
        .map(|name_map| name_map(&paths))
        .unwrap_or_default()
}
