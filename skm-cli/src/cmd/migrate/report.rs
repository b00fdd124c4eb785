//! The report of a migration: a value-free table for people, or JSON for machines.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use super::plan::{Row, Status};
use crate::decl::location;
use crate::output::Tone;
use crate::safe::display;
use crate::Ctx;

/// What a run did, and what it found: rendered once, at the end.
#[derive(Default)]
pub(super) struct Report {
    pub(super) dry_run: bool,
    pub(super) force: bool,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) undeclared: Vec<String>,
    pub(super) backup: Option<PathBuf>,
    pub(super) puts: usize,
    pub(super) written: usize,
    pub(super) verified: usize,
    pub(super) versions: Vec<(String, String)>,
    pub(super) failures: Vec<String>,
    pub(super) source_rewritten: bool,
    pub(super) removed: Vec<String>,
    pub(super) notes: Vec<String>,
}

impl Report {
    pub(super) fn render(&self, ctx: &mut Ctx<'_, '_>, rows: &[Row]) {
        let mut counts: BTreeMap<Status, usize> = BTreeMap::new();
        for r in rows {
            *counts.entry(r.status).or_default() += 1;
        }
        let count = |s: Status| counts.get(&s).copied().unwrap_or(0);
        let conflicts_left = if self.force { 0 } else { count(Status::Conflict) };
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
        ctx.ui
            .line(format!("{title}: {} → {}", display(&self.from), display(&self.to)));
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
                    (r.field.env.as_deref().unwrap_or("-").to_string(), Tone::Plain),
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
            if conflicts_left > 0 {
                ctx.ui.warn(format!(
                    "{conflicts_left} conflict(s): the destination holds a different value; a real run leaves them \
                     alone (exit 1) unless --force"
                ));
            }
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
            ctx.ui.line(format!("{label} {}", display(f)));
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
