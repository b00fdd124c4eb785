//! GitHub Actions: value masking (`::add-mask::`) and `$GITHUB_ENV` (`skm export --github-env`).

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use skm_runtime::{RawField, ResolvedField};

use crate::select::env_var;
use crate::{exit, Ctx, Fail};

/// Whether this runs in a GitHub Actions job (`GITHUB_ACTIONS=true`).
pub(crate) fn in_actions() -> bool {
    env_var("GITHUB_ACTIONS").is_some_and(|v| v == "true")
}

/// Registers every secret value with the runner's log masking: one `::add-mask::` command per segment of the
/// value. A `plain` field (declared not secret, such as a port) is not masked: an `8080` registered as a mask
/// would become `***` in every later line of the job's log.
///
/// The runner reads a step's output line by line, ending a line at `\n`, `\r\n` *or a bare `\r`*, then
/// unescapes the command's data (`%0D`, `%0A`, `%25`) and masks each of the value's lines within log lines.
/// So the value is split on `\r` and `\n` here, and each segment is escaped as GitHub's toolkit
/// (`@actions/core` `escapeData`) does: written raw, a `\r` would end the command and print the rest of the
/// value in clear, and a `%25` in the value would register a different string.
pub(crate) fn add_masks(out: &mut dyn Write, fields: &[RawField], declared: &[ResolvedField]) -> io::Result<()> {
    let plain = |f: &RawField| declared.iter().any(|d| d.id == f.field && d.spec.plain);
    for field in fields.iter().filter(|f| !plain(f)) {
        let text = String::from_utf8_lossy(field.expose_bytes());
        for segment in text.split(['\r', '\n']) {
            // The runner refuses blank data with a warning; a blank segment is never printed as a secret.
            if !segment.trim().is_empty() {
                writeln!(out, "::add-mask::{}", escape_data(segment))?;
            }
        }
    }
    out.flush()
}

/// A workflow command's data escaped as `@actions/core` `escapeData` does: `%` first, then `\r` and `\n`.
pub(crate) fn escape_data(data: &str) -> String {
    data.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// `skm export [--only FIELD]... --github-env`
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Export only this field (its id or its env name); repeatable. Default: every declared secret.
    #[arg(long = "only", value_name = "FIELD")]
    pub only: Vec<String>,
    /// Append each variable to the file named by $GITHUB_ENV (the default inside GitHub Actions).
    #[arg(long)]
    pub github_env: bool,
}

pub(crate) async fn export(ctx: &mut Ctx<'_, '_>, args: ExportArgs) -> Result<u8, Fail> {
    let actions = in_actions();
    if !args.github_env && !actions {
        return Err(Fail::Usage(
            "export needs an explicit target outside GitHub Actions: --github-env (the file named by $GITHUB_ENV)"
                .into(),
        ));
    }
    let target = env_var("GITHUB_ENV")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| Fail::Usage("--github-env: GITHUB_ENV is not set".into()))?;
    let decls = ctx.declarations("export")?;
    let fields = super::run::select(decls.fields.clone(), &args.only)?;
    let raw = super::run::load(ctx, &decls, &fields).await?;
    if actions {
        add_masks(ctx.ui.io.stdout, &raw.fields, &fields)
            .map_err(|e| Fail::Failed(format!("cannot write masks: {e}")))?;
    }
    let mut body = Vec::new();
    let mut names = Vec::new();
    for field in &raw.fields {
        let Some(env) = field.env.as_deref() else {
            ctx.ui
                .note(format!("skm export: `{}` has no `env`; not exported", field.field));
            continue;
        };
        let value = field.expose_bytes();
        let delimiter = delimiter(value)?;
        body.extend_from_slice(format!("{env}<<{delimiter}\n").as_bytes());
        body.extend_from_slice(value);
        body.extend_from_slice(format!("\n{delimiter}\n").as_bytes());
        names.push(env);
    }
    let mut file =
        open_append_private(&target).map_err(|e| Fail::Failed(format!("cannot open {}: {e}", target.display())))?;
    // One write: a reader never sees half of a variable.
    file.write_all(&body)
        .and_then(|()| file.flush())
        .map_err(|e| Fail::Failed(format!("cannot write {}: {}", target.display(), e.kind())))?;
    ctx.ui
        .note(format!("exported {} to $GITHUB_ENV: {}", names.len(), names.join(", ")));
    Ok(exit::OK)
}

/// Opens `path` for appending, creating it readable by its owner only (0600): the values are written in clear,
/// and a file created under the usual umask would be world-readable. The mode applies only at creation, so
/// the runner's own file keeps the mode the runner gave it.
fn open_append_private(path: &std::path::Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A random delimiter (`ghadelimiter_` + 32 hex digits, as GitHub's own toolkit writes) that occurs in no
/// line of `value`; GitHub ends the value at the first line equal to the delimiter.
fn delimiter(value: &[u8]) -> Result<String, Fail> {
    loop {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| Fail::Failed(format!("no randomness for a delimiter: {e}")))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let delimiter = format!("ghadelimiter_{hex}");
        if !contains(value, delimiter.as_bytes()) {
            return Ok(delimiter);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
