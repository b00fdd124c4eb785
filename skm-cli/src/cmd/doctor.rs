//! `doctor`: the set-up, checked: which backend and why, whether it answers, the Vault token's lifetime,
//! whether `.env` and the local store are kept out of git, and their file permissions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use skm_runtime::backend::registry::{self, ProbeLevel};
use skm_runtime::backend::{Backend, FailureKind, FetchError, FetchRequest};
use skm_runtime::gitcheck::{self, GitStatus};

use super::util::mode_of;
use crate::output::Tone;
use crate::select::env_var;
use crate::{exit, Ctx, Fail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
            Level::Skip => "skip",
        }
    }
}

struct Finding {
    check: &'static str,
    level: Level,
    detail: String,
}

pub(crate) async fn run(ctx: &mut Ctx<'_, '_>, dotenv: Option<PathBuf>) -> Result<u8, Fail> {
    let mut found: Vec<Finding> = Vec::new();
    // Each row once: a backend's own probe that failed exactly as the reachability read did says nothing new.
    let mut push = |check, level, detail: String| {
        if !found.iter().any(|f| f.level == level && f.detail == detail) {
            found.push(Finding { check, level, detail });
        }
    };
    let deadline = ctx.deadline();

    let compiled: Vec<String> = registry::all()
        .iter()
        .filter(|d| d.compiled)
        .map(|d| d.name.to_string())
        .collect();

    // Declarations are optional here: doctor helps most when something is not set up yet.
    let decls = ctx.declarations("doctor").ok();
    match &decls {
        Some(d) => push(
            "declarations",
            Level::Ok,
            format!("`{}`: {} declared secrets", d.struct_name, d.fields.len()),
        ),
        None => push(
            "declarations",
            Level::Skip,
            "none (pass --manifest FILE to check them too)".into(),
        ),
    }

    let choice = ctx.choice();
    let kind = match &choice {
        Ok(c) => {
            let level = if c.backend.is_none() && ctx.backend.is_none() {
                Level::Warn
            } else {
                Level::Ok
            };
            let name = if ctx.backend.is_some() {
                "custom".to_string()
            } else {
                c.name().to_string()
            };
            push(
                "backend",
                level,
                format!("{name}: {} (compiled in: {})", c.reason, compiled.join(", ")),
            );
            c.backend
        }
        Err(Fail::Usage(m) | Fail::Failed(m)) => {
            push("backend", Level::Fail, m.clone());
            None
        }
    };

    // Said before anything waits on the network, so that a silent backend is never a silent hang.
    if let Ok(c) = &choice {
        if kind.is_some() || ctx.backend.is_some() {
            let line = format!("doctor: asking {} ({})...", c.name(), ctx.deadline_words());
            ctx.ui.note(line);
        }
    }

    // Reachability: one fetch of the declared paths (or of a probe path); "not found" proves an answer.
    let mut built = false;
    let mut answered = false;
    if choice.is_ok() && (kind.is_some() || ctx.backend.is_some()) {
        match ctx
            .within("setting the backend up", ctx.backend_opt())
            .await
            .and_then(|r| r)
        {
            Ok((Some(backend), _)) => {
                built = true;
                // The default backend's paths: those not routed to another backend.
                let default_kind = choice.as_ref().ok().and_then(|c| c.backend).map(|d| d.name);
                let mut paths: Vec<String> = decls
                    .as_ref()
                    .map(|d| {
                        d.fields
                            .iter()
                            .filter(|f| f.route().is_none() || f.route() == default_kind)
                            .filter_map(|f| f.path.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                paths.sort();
                paths.dedup();
                let probe = paths.is_empty();
                if probe {
                    paths.push("skm-doctor-probe".into());
                }
                let Reach { ms, present, failure } = reach(&*backend, &paths, deadline).await;
                answered = failure.as_ref().is_none_or(|e| e.kind == FailureKind::Forbidden);
                match failure {
                    None if probe => push(
                        "reachable",
                        Level::Ok,
                        format!("{} answered in {ms} ms", backend.name()),
                    ),
                    None => push(
                        "reachable",
                        Level::Ok,
                        format!(
                            "{} answered in {ms} ms; {present} of {} declared paths exist",
                            backend.name(),
                            paths.len()
                        ),
                    ),
                    Some(e) if e.kind == FailureKind::Forbidden => push(
                        "reachable",
                        Level::Warn,
                        format!(
                            "{} answered in {ms} ms, but denied access: {}",
                            backend.name(),
                            e.detail
                        ),
                    ),
                    Some(e) => push("reachable", Level::Fail, format!("{}: {e}", backend.name())),
                }
            }
            Ok((None, _)) => {}
            Err(Fail::Usage(m) | Fail::Failed(m)) => push("reachable", Level::Fail, m),
        }
    }

    // Only once the backend accepted the configuration and answered: the backend's own checks (the Vault
    // token lookup runs on the backend's client, with its redirect, proxy and TLS rules and a timeout). A
    // backend that did not answer would only fail them the same way, after another wait.
    if let (Some(d), true, false, None) = (kind, built, answered, &ctx.backend) {
        push(
            "backend check",
            Level::Skip,
            format!("{}'s own checks not run: it did not answer (see `reachable`)", d.name),
        );
    }
    if let (Some(d), true, true, None) = (kind, built, answered, &ctx.backend) {
        let probes = match crate::within(deadline, "", (d.doctor)(registry::process_env())).await {
            Ok(probes) => probes,
            Err(_) => vec![registry::Probe::new(
                "backend check",
                ProbeLevel::Fail,
                format!("{}'s own checks did not finish within {}", d.name, words(deadline)),
            )],
        };
        for p in probes {
            let level = match p.level {
                ProbeLevel::Ok => Level::Ok,
                ProbeLevel::Warn => Level::Warn,
                ProbeLevel::Fail => Level::Fail,
                ProbeLevel::Skip => Level::Skip,
            };
            let check = match p.check.as_str() {
                "vault token" => "vault token",
                "aws credentials" => "aws credentials",
                "local key" => "local key",
                "local store" => "local store",
                _ => "backend check",
            };
            push(check, level, p.detail);
        }
    }

    // Every backend fields are routed to (`backend = "vault"`): configured, reachable, its own checks.
    let routed = match (&decls, &choice) {
        (Some(d), Ok(c)) => crate::within(deadline, "", crate::decl::routed_backends(&d.fields, c))
            .await
            .unwrap_or_else(|_| {
                push(
                    "routed backend",
                    Level::Fail,
                    format!(
                        "setting the routed backends up did not finish within {}",
                        words(deadline)
                    ),
                );
                Vec::new()
            }),
        _ => Vec::new(),
    };
    {
        for r in routed {
            let name = r.descriptor.name;
            let fields = r.fields.join(", ");
            let backend = match r.backend {
                Ok(b) => b,
                Err(why) => {
                    push("routed backend", Level::Fail, format!("{name} (for {fields}): {why}"));
                    continue;
                }
            };
            let Reach { ms, present, failure } = reach(&*backend, &r.paths, deadline).await;
            let answered = failure.as_ref().is_none_or(|e| e.kind == FailureKind::Forbidden);
            let (level, detail) = match failure {
                None => (
                    Level::Ok,
                    format!(
                        "{} (for {fields}) answered in {ms} ms; {present} of {} routed paths exist",
                        backend.name(),
                        r.paths.len()
                    ),
                ),
                Some(e) if e.kind == FailureKind::Forbidden => (
                    Level::Warn,
                    format!("{} (for {fields}) denied access: {}", backend.name(), e.detail),
                ),
                Some(e) => (Level::Fail, format!("{} (for {fields}): {e}", backend.name())),
            };
            push("routed backend", level, detail);
            if !answered {
                continue;
            }
            let probes = match crate::within(deadline, "", (r.descriptor.doctor)(registry::process_env())).await {
                Ok(probes) => probes,
                Err(_) => vec![registry::Probe::new(
                    "checks",
                    ProbeLevel::Fail,
                    format!("did not finish within {}", words(deadline)),
                )],
            };
            for p in probes {
                let level = match p.level {
                    ProbeLevel::Ok => Level::Ok,
                    ProbeLevel::Warn => Level::Warn,
                    ProbeLevel::Fail => Level::Fail,
                    ProbeLevel::Skip => Level::Skip,
                };
                push("backend check", level, format!("{name}: {}: {}", p.check, p.detail));
            }
        }
    }

    // Files: .env and the local store must stay out of git and be private.
    let dotenv = dotenv
        .or_else(|| env_var("SKM_DOTENV").filter(|p| !p.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".env"));
    let store = env_var("SKM_LOCAL_PATH")
        .filter(|p| !p.trim().is_empty())
        .map_or_else(|| PathBuf::from(".skm"), PathBuf::from);
    for (label, path) in [("dotenv", &dotenv), ("local store", &store)] {
        if !path.exists() {
            push(label, Level::Skip, format!("{} does not exist", path.display()));
            continue;
        }
        let (level, detail) = if label == "local store" {
            git_ignored_store(path)
        } else {
            git_ignored(path)
        };
        push(label, level, detail);
        let (level, detail) = private(path);
        push(label, level, detail);
    }
    for backup in backups_next_to(&dotenv) {
        let (level, detail) = git_ignored(&backup);
        if level != Level::Ok && level != Level::Skip {
            push("backup", level, detail);
        }
    }
    if let Some(key) = key_file() {
        if key.exists() {
            let (level, detail) = private(&key);
            push("local key", level, detail);
        }
    }

    let failed = found.iter().any(|f| f.level == Level::Fail);
    if ctx.ui.json {
        let checks: Vec<_> = found
            .iter()
            .map(|f| json!({ "check": f.check, "status": f.level.as_str(), "detail": f.detail }))
            .collect();
        ctx.ui.json(&json!({ "ok": !failed, "checks": checks }));
    } else {
        let rows: Vec<_> = found
            .iter()
            .map(|f| {
                let tone = match f.level {
                    Level::Ok => Tone::Good,
                    Level::Warn => Tone::Warn,
                    Level::Fail => Tone::Bad,
                    Level::Skip => Tone::Dim,
                };
                vec![
                    (f.check.to_string(), Tone::Plain),
                    (f.level.as_str().to_string(), tone),
                    (f.detail.clone(), Tone::Plain),
                ]
            })
            .collect();
        ctx.ui.table(&["check", "status", "detail"], &rows);
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

/// Whether git ignores `path` (and does not track it). Outside a work tree, or without git, nothing to say.
///
/// git runs through [`gitcheck`], locked down: a cleared environment, no hooks, no fsmonitor.
pub(crate) fn git_ignored(path: &Path) -> (Level, String) {
    let name = path
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| path.to_path_buf());
    match gitcheck::status(path) {
        GitStatus::NoGit => (Level::Skip, "git is not installed; cannot check ignores".into()),
        GitStatus::Outside => (Level::Skip, format!("{} is not in a git work tree", path.display())),
        GitStatus::Tracked => (
            Level::Fail,
            format!(
                "{} is tracked by git: `git rm --cached {}` and add it to .gitignore (and rotate what it held)",
                path.display(),
                path.display()
            ),
        ),
        GitStatus::Ignored => (Level::Ok, format!("{} is ignored by git", path.display())),
        GitStatus::NotIgnored => (
            Level::Fail,
            format!(
                "{} is NOT ignored by git: add `/{}` to .gitignore",
                path.display(),
                name.display()
            ),
        ),
        _ => (Level::Skip, format!("cannot ask git about {}", path.display())),
    }
}

/// [`git_ignored`] for a local store directory: judged by what holds secrets (`secrets/`, `index`, the
/// offline `cache/`), so that `.skm/prepared/` (`skm prepare`'s value-free snapshots, meant to be committed)
/// beside them raises no alarm. A store with none of them yet is judged as a whole.
pub(crate) fn git_ignored_store(store: &Path) -> (Level, String) {
    let parts: Vec<PathBuf> = ["secrets", "index", "cache"]
        .iter()
        .map(|p| store.join(p))
        .filter(|p| p.exists())
        .collect();
    if parts.is_empty() {
        return git_ignored(store);
    }
    let name = store
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| store.to_path_buf());
    let mut first = None;
    for part in parts {
        let verdict = git_ignored(&part);
        if verdict.0 == Level::Fail && matches!(gitcheck::status(&part), GitStatus::NotIgnored) {
            return (
                Level::Fail,
                format!(
                    "{} is NOT ignored by git: add `/{n}` to .gitignore (or `/{n}/*` and `!/{n}/prepared/` to \
                     commit `skm prepare`'s snapshots)",
                    part.display(),
                    n = name.display()
                ),
            );
        }
        if verdict.0 == Level::Fail {
            return verdict;
        }
        first.get_or_insert(verdict);
    }
    first.expect("at least one part")
}

/// Whether `path` (and, for a directory, what is inside) is private to its owner.
fn private(path: &Path) -> (Level, String) {
    let Some(mode) = mode_of(path) else {
        return (Level::Skip, "permissions are not checked on this platform".into());
    };
    let mut loose = Vec::new();
    if mode & 0o077 != 0 {
        loose.push((path.to_path_buf(), mode));
    }
    if path.is_dir() {
        // Symbolic links are neither followed nor judged: a link's own mode means nothing, and following
        // one could leave the directory or loop forever (`a -> .`, `b -> .`).
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_symlink() {
                    continue;
                }
                let p = entry.path();
                if let Some(m) = mode_of(&p) {
                    if m & 0o077 != 0 {
                        loose.push((p.clone(), m));
                    }
                }
                if kind.is_dir() {
                    stack.push(p);
                }
            }
        }
    }
    match loose.first() {
        None => (
            Level::Ok,
            format!("{} is private to its owner ({:o})", path.display(), mode & 0o777),
        ),
        Some((p, m)) => {
            let fix = if path.is_dir() {
                format!("chmod -R go-rwx {}", path.display())
            } else {
                format!("chmod 600 {}", path.display())
            };
            (
                Level::Warn,
                format!(
                    "{} is readable by others (mode {:o}{}): {fix}",
                    p.display(),
                    m & 0o777,
                    if loose.len() > 1 {
                        format!(", and {} more", loose.len() - 1)
                    } else {
                        String::new()
                    }
                ),
            )
        }
    }
}

/// `.env.skm-backup-*` files left by `migrate`.
fn backups_next_to(dotenv: &Path) -> Vec<PathBuf> {
    let dir = dotenv
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(
        "{}.skm-backup-",
        dotenv
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The local store's key file: `SKM_LOCAL_KEY_FILE`, else the default under the user's config directory;
/// none when the key is given or is in the keyring.
fn key_file() -> Option<PathBuf> {
    if env_var("SKM_LOCAL_KEY").is_some_and(|k| !k.trim().is_empty())
        || env_var("SKM_LOCAL_KEY_SOURCE").is_some_and(|s| s.trim() == "keyring")
    {
        return None;
    }
    if let Some(f) = env_var("SKM_LOCAL_KEY_FILE").filter(|f| !f.trim().is_empty()) {
        return Some(PathBuf::from(f));
    }
    let home = env_var("HOME").filter(|h| !h.is_empty())?;
    let base = if cfg!(target_os = "macos") {
        PathBuf::from(&home).join("Library/Application Support")
    } else {
        env_var("XDG_CONFIG_HOME")
            .filter(|x| !x.is_empty())
            .map_or_else(|| PathBuf::from(&home).join(".config"), PathBuf::from)
    };
    Some(base.join("skm").join("local.key"))
}

/// What one read of a backend's paths told `doctor`.
struct Reach {
    /// How long the read took.
    ms: u128,
    /// How many of the paths exist.
    present: usize,
    /// The first failure other than a missing path.
    failure: Option<FetchError>,
}

/// One read of `paths`, bounded by `deadline`: past it, the backend counts as not answering.
async fn reach<B: Backend + ?Sized>(backend: &B, paths: &[String], deadline: Option<Duration>) -> Reach {
    let requests: Vec<FetchRequest> = paths.iter().map(FetchRequest::current).collect();
    let started = Instant::now();
    let Ok(results) = crate::within(deadline, "", backend.fetch(&requests)).await else {
        return Reach {
            ms: started.elapsed().as_millis(),
            present: 0,
            failure: Some(FetchError::new(
                FailureKind::Unavailable,
                format!(
                    "no answer within {} (reading {} path{})",
                    words(deadline),
                    paths.len(),
                    if paths.len() == 1 { "" } else { "s" }
                ),
            )),
        };
    };
    let ms = started.elapsed().as_millis();
    Reach {
        ms,
        present: results.iter().filter(|r| r.is_ok()).count(),
        failure: results
            .into_iter()
            .filter_map(Result::err)
            .find(|e| e.kind != FailureKind::NotFound),
    }
}

/// A deadline in words: `30s`, or `no deadline`.
fn words(deadline: Option<Duration>) -> String {
    deadline.map_or_else(|| "no deadline".into(), |d| format!("{}s", d.as_secs_f64()))
}
