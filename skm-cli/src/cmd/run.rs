//! `run`: load the declared secrets once, then run a command with them in its environment.
//!
//! Values go to the child only through its environment (and `--mount` files): never on its argv or skm's,
//! never in skm's output. The child's exit code becomes skm's (a death by signal N becomes 128 + N, as in a
//! shell); SIGINT, SIGTERM and SIGHUP sent to skm are passed on to the child.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use skm_runtime::{Loader, RawField, RawValues, ResolvedField};

use super::github;
use crate::select::{env_var, ReadOnly};
use crate::{Ctx, Fail};

/// `skm run [--only FIELD]... [--mount NAME=PATH]... -- CMD [ARGS]...`
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Pass only this field (its id or its env name); repeatable. Default: every declared secret.
    #[arg(long = "only", value_name = "FIELD")]
    pub only: Vec<String>,
    /// Also write the secret NAME (env name or field) to PATH, mode 0600, removed when the command exits.
    #[arg(long = "mount", value_name = "NAME=PATH", value_parser = parse_mount)]
    pub mounts: Vec<(String, PathBuf)>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

fn parse_mount(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err("expected NAME=PATH, e.g. --mount TLS_KEY=/tmp/tls.key".into()),
    }
}

/// The declared fields `only` selects (all when empty); an unknown name is a usage error.
pub(crate) fn select(fields: Vec<ResolvedField>, only: &[String]) -> Result<Vec<ResolvedField>, Fail> {
    if only.is_empty() {
        return Ok(fields);
    }
    for name in only {
        if !fields.iter().any(|f| &f.id == name || f.env == Some(name.as_str())) {
            let known: Vec<&str> = fields.iter().map(|f| f.id.as_str()).collect();
            return Err(Fail::Usage(format!(
                "--only `{name}`: no such field; declared: {}",
                known.join(", ")
            )));
        }
    }
    Ok(fields
        .into_iter()
        .filter(|f| only.iter().any(|n| n == &f.id || f.env == Some(n.as_str())))
        .collect())
}

/// Loads `fields` the way the application would (backend, secret files, env, `.env`, defaults; SKM_DOTENV,
/// SKM_STRICT, SKM_SECRETS_DIR), all at once, or fails with the usual per-field report.
pub(crate) async fn load(ctx: &Ctx<'_, '_>, struct_name: &str, fields: &[ResolvedField]) -> Result<RawValues, Fail> {
    let (backend, choice) = ctx.backend_opt().await?;
    let mut loader = Loader::new();
    if let Some(b) = &backend {
        loader = loader.backend_arc(Arc::new(ReadOnly(b.clone())));
    }
    let mut loader = crate::decl::with_routed(loader, fields, &choice).await;
    match env_var("SKM_DOTENV") {
        Some(p) if p.is_empty() => loader = loader.no_dotenv(),
        Some(p) => loader = loader.dotenv(p),
        None => {}
    }
    let strict =
        env_var("SKM_STRICT").is_some_and(|s| matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
    loader = loader.strict(strict);
    if let Some(p) = ctx.profile()? {
        loader = loader.profile(p);
    }
    // `LoadError` names its struct with a `&'static str`; one short name per process is a fine price.
    let name: &'static str = Box::leak(struct_name.to_string().into_boxed_str());
    loader.load_raw(name, fields).await.map_err(Fail::from)
}

pub(crate) async fn run(ctx: &mut Ctx<'_, '_>, args: RunArgs) -> Result<u8, Fail> {
    let decls = ctx.declarations("run")?;
    let fields = select(decls.fields, &args.only)?;
    let raw = load(ctx, &decls.struct_name, &fields).await?;

    // In GitHub Actions every value is registered for masking before anything else is printed.
    if github::in_actions() {
        github::add_masks(ctx.ui.io.stdout, &raw.fields)
            .map_err(|e| Fail::Failed(format!("cannot write masks: {e}")))?;
    }
    for field in fields.iter().filter(|f| f.env.is_none()) {
        ctx.ui.note(format!(
            "skm run: `{}` has no `env`; not passed to the command",
            field.id
        ));
    }

    let mut mounts = Mounts::default();
    for (name, path) in &args.mounts {
        let field = find(&raw.fields, name).ok_or_else(|| {
            Fail::Usage(format!(
                "--mount {name}=...: no loaded secret named `{name}` (use its env name or field)"
            ))
        })?;
        mounts.write(field, path)?;
    }

    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    for field in &raw.fields {
        let Some(env) = field.env else { continue };
        command.env(env, env_value(field)?);
    }
    let _ = ctx.ui.io.stdout.flush();
    let _ = ctx.ui.io.stderr.flush();
    let code = spawn_and_wait(command, &args.command[0]).await;
    drop(mounts);
    code
}

fn find<'a>(fields: &'a [RawField], name: &str) -> Option<&'a RawField> {
    fields
        .iter()
        .find(|f| f.env == Some(name))
        .or_else(|| fields.iter().find(|f| f.field == name))
}

/// A value as an environment variable's value; a NUL byte cannot be carried and is an error.
fn env_value(field: &RawField) -> Result<OsString, Fail> {
    let bytes = field.expose_bytes();
    if bytes.contains(&0) {
        return Err(Fail::Failed(format!(
            "`{}` holds a NUL byte, which an environment variable cannot carry; use --mount",
            field.field
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::ffi::OsStr::from_bytes(bytes).to_os_string())
    }
    #[cfg(not(unix))]
    match field.expose_str() {
        Some(s) => Ok(OsString::from(s)),
        None => Err(Fail::Failed(format!(
            "`{}` is not UTF-8 text, which an environment variable cannot carry here; use --mount",
            field.field
        ))),
    }
}

/// `--mount` files, removed when dropped: after the child exits, however it exits, and on an early error.
#[derive(Default)]
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn write(&mut self, field: &RawField, path: &std::path::Path) -> Result<(), Fail> {
        let mut options = std::fs::OpenOptions::new();
        // A new file only: never overwrite (or follow a symlink planted at) an existing path.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| Fail::Failed(format!("--mount: cannot create {}: {e}", path.display())))?;
        self.0.push(path.to_path_buf());
        file.write_all(field.expose_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Fail::Failed(format!("--mount: cannot write {}: {}", path.display(), e.kind())))
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Starts `command`, forwards SIGINT/SIGTERM/SIGHUP to it while it runs, and returns its exit code.
async fn spawn_and_wait(mut command: std::process::Command, program: &OsString) -> Result<u8, Fail> {
    let forwarding = signals::Forwarding::install();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            drop(forwarding);
            // As env(1) and shells do: 127 for a command not found, 126 for one that cannot run.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            eprintln!("error: cannot start `{}`: {}", program.to_string_lossy(), e.kind());
            return Ok(code);
        }
    };
    forwarding.child(child.id());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| Fail::Failed(format!("waiting for the command failed: {e}")))?
        .map_err(|e| Fail::Failed(format!("waiting for the command failed: {e}")))?;
    drop(forwarding);
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return code as u8;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return (128 + sig) as u8;
        }
    }
    1
}

#[cfg(unix)]
mod signals {
    //! Forwarding with a plain signal handler: `kill(2)` is async-signal-safe, so the handler passes the
    //! signal straight to the child. A signal that arrives before the child exists is kept and sent to it
    //! once it does.
    use std::sync::atomic::{AtomicI32, Ordering};

    const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    static CHILD: AtomicI32 = AtomicI32::new(0);
    static PENDING: AtomicI32 = AtomicI32::new(0);

    extern "C" fn forward(sig: libc::c_int) {
        let pid = CHILD.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe; `pid` is our own child, not yet reaped.
            unsafe { libc::kill(pid, sig) };
        } else {
            PENDING.store(sig, Ordering::SeqCst);
        }
    }

    pub(super) struct Forwarding {
        previous: Vec<(libc::c_int, libc::sigaction)>,
    }

    impl Forwarding {
        pub(super) fn install() -> Forwarding {
            CHILD.store(0, Ordering::SeqCst);
            PENDING.store(0, Ordering::SeqCst);
            let mut previous = Vec::new();
            for sig in FORWARDED {
                // SAFETY: a zeroed sigaction is valid; the handler only touches atomics and calls kill(2).
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = forward as *const () as libc::sighandler_t;
                    action.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut action.sa_mask);
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, &action, &mut old) == 0 {
                        previous.push((sig, old));
                    }
                }
            }
            Forwarding { previous }
        }

        pub(super) fn child(&self, pid: u32) {
            let pid = pid as i32;
            CHILD.store(pid, Ordering::SeqCst);
            let pending = PENDING.swap(0, Ordering::SeqCst);
            if pending != 0 {
                // SAFETY: `pid` is our own child, not yet reaped.
                unsafe { libc::kill(pid, pending) };
            }
        }
    }

    impl Drop for Forwarding {
        fn drop(&mut self) {
            CHILD.store(0, Ordering::SeqCst);
            for (sig, old) in &self.previous {
                // SAFETY: restores the action saved by `install`.
                unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
            }
        }
    }
}

#[cfg(not(unix))]
mod signals {
    //! No signals to forward outside Unix: Ctrl-C reaches the whole console group anyway.
    pub(super) struct Forwarding;
    impl Forwarding {
        pub(super) fn install() -> Forwarding {
            Forwarding
        }
        pub(super) fn child(&self, _pid: u32) {}
    }
}
