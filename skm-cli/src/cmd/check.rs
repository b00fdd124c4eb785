//! `check`: resolve every declared secret where the command runs, show where each comes from, never a value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use skm_runtime::{Error, FieldError, FieldProblem, Loader};


use super::doctor::{git_ignored, Level};
use crate::decl::location;
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
    let (backend, choice) = ctx.backend_opt().await?;

    let mut loader = Loader::new();
    if let Some(b) = &backend {
        loader = loader.backend_arc(Arc::new(ReadOnly(b.clone())));
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
    let store_dir = (choice.name() == "local").then(|| {
        env_var("SKM_LOCAL_PATH")
            .filter(|p| !p.trim().is_empty())
            .map_or_else(|| PathBuf::from(".skm"), PathBuf::from)
    });
    let strict = strict
        || env_var("SKM_STRICT")
            .is_some_and(|s| matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
    loader = loader.strict(strict);
    if let Some(p) = &decls.profile {
        loader = loader.profile(p.clone());
    }

    let check = loader.check_fields(&decls.fields).await.map_err(Fail::from)?;

    // The typed load sees what `check_fields` cannot: a value that does not parse as the field's type.
    let mut typed_errors: BTreeMap<String, FieldError> = BTreeMap::new();
    if let Some(typed) = decls.typed {
        match typed(&loader).await {
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
        env: Option<&'static str>,
        path: Option<String>,
        key: Option<&'static str>,
        location: String,
        status: &'static str,
        layer: Option<String>,
        source: String,
        at: String,
        error: Option<FieldError>,
    }
    let mut lines = Vec::new();
    for (field, (id, result)) in decls.fields.iter().zip(&check.fields) {
        let mut line = Line {
            id: id.clone(),
            env: field.env,
            path: field.path.clone(),
            key: field.key,
            location: location(field),
            status: "ok",
            layer: None,
            source: String::new(),
            at: String::new(),
            error: None,
        };
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
                    FieldProblem::Missing => "missing",
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
    let mut warnings = check.provenance.warnings.clone();
    for path in dotenv_file.iter().chain(&store_dir).filter(|p| p.exists()) {
        if let (Level::Fail, why) = git_ignored(path) {
            warnings.push(why);
        }
    }
    let failed = lines.iter().filter(|l| l.error.is_some()).count();
    let backend_name = backend.as_ref().map(|b| b.name());

    if ctx.ui.json {
        let fields: Vec<_> = lines
            .iter()
            .map(|l| {
                json!({
                    "field": l.id,
                    "env": l.env,
                    "path": l.path,
                    "key": l.key,
                    "ok": l.error.is_none(),
                    "status": l.status,
                    "layer": l.layer,
                    "source": l.source,
                    "location": l.at,
                    "error": l.error.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        ctx.ui.json(&json!({
            "ok": failed == 0,
            "struct": decls.struct_name,
            "profile": decls.profile,
            "backend": backend_name,
            "backend_reason": choice.reason,
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
                    (l.env.unwrap_or("-").to_string(), Tone::Plain),
                    (
                        if l.location.is_empty() {
                            "-".into()
                        } else {
                            l.location.clone()
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
        for l in lines.iter().filter(|l| l.error.is_some()) {
            if let Some(e) = &l.error {
                let label = ctx.ui.paint("✗", Tone::Bad);
                ctx.ui.line(format!("{label} {}", display_lines(&e.to_string())));
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
