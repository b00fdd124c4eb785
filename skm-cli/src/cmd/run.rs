//! `run`: load the declared secrets once, then run a command with them in its environment.
//!
//! Values go to the child only through its environment (and `--mount` files): never on its argv or skm's,
//! never in skm's output. The child's exit code becomes skm's (a death by signal N becomes 128 + N, as in a
//! shell); SIGINT, SIGTERM and SIGHUP sent to skm are passed on to the child.
//!
//! `--restart-on-change` reloads the secrets every `--watch-ttl` seconds (the same load, through the same
//! loader and backend client); when a value changed, it stops the child gracefully (SIGTERM, then SIGKILL after
//! `--kill-after` seconds), rewrites the `--mount` files atomically, and starts the command again with the new
//! environment. A child that exits on its own still ends skm with its exit code. Only field names are reported,
//! never values. `SIGUSR1` sent to skm reloads at once instead of at the next TTL (it is not passed on to the
//! child); `--restart-jitter SECS` delays a restart by a random 0 to SECS seconds.
//!
//! Environment variables whose value is a reference, `ref+BACKEND://PATH[?version=V][#KEY]` (as `op run` reads `op://`),
//! reach the command resolved: all of them once, before it first starts, through the runtime's
//! [`Loader::resolve_refs`] (one fetch call per backend, every failure reported together, no value printed).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use skm_runtime::{Layer, Loader, RawField, RawValues, Reference, ResolvedField};

use super::github;
use crate::decl::{missing_fields, Declarations};
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
    /// Restart the command when a secret changes (a rotation, a `put`): SIGTERM, SIGKILL after --kill-after,
    /// then the command again with the new values (and `--mount` files rewritten).
    #[arg(long)]
    pub restart_on_change: bool,
    /// With --restart-on-change: seconds between reloads that look for a change (as hot reload's TTL).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        requires = "restart_on_change"
    )]
    pub watch_ttl: u64,
    /// With --restart-on-change: seconds the old command has to exit after SIGTERM before it gets SIGKILL.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(0..=3600),
        requires = "restart_on_change"
    )]
    pub kill_after: u64,
    /// With --restart-on-change: wait a random 0 to SECS seconds after a change before restarting, so that a
    /// fleet of instances watching the same secret does not restart in the same second.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u64).range(0..=3600),
        requires = "restart_on_change"
    )]
    pub restart_jitter: u64,
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
        if !fields
            .iter()
            .any(|f| &f.id == name || f.env.as_deref() == Some(name.as_str()))
        {
            let known: Vec<&str> = fields.iter().map(|f| f.id.as_str()).collect();
            return Err(Fail::Usage(format!(
                "--only `{name}`: no such field; declared: {}",
                known.join(", ")
            )));
        }
    }
    Ok(fields
        .into_iter()
        .filter(|f| only.iter().any(|n| n == &f.id || f.env.as_deref() == Some(n.as_str())))
        .collect())
}

/// Loads `fields` (of `decls`) the way the application would (backend, secret files, env, `.env`, defaults;
/// SKM_DOTENV, SKM_STRICT, SKM_SECRETS_DIR), all at once, or fails with the usual per-field report.
pub(crate) async fn load(ctx: &Ctx<'_, '_>, decls: &Declarations, fields: &[ResolvedField]) -> Result<RawValues, Fail> {
    let loader = loader(ctx, fields).await?;
    loader
        .load_raw(decls.struct_name.clone(), fields)
        .await
        .map_err(|e| load_failure(decls, e))
}

/// A failed load as the user reads it: the runtime's per-field report, then, for a missing field whose
/// default the declarations do not carry (a manifest's secret-typed default), why the tool cannot supply it.
pub(crate) fn load_failure(decls: &Declarations, e: skm_runtime::Error) -> Fail {
    let notes = decls.unsupplied_notes(missing_fields(&e));
    let mut fail = Fail::from(e);
    if !notes.is_empty() {
        let (Fail::Usage(m) | Fail::Failed(m)) = &mut fail;
        for note in notes {
            m.push_str("\n  ");
            m.push_str(&note);
        }
    }
    fail
}

/// The loader `load` uses: the backends (built once, so that `--restart-on-change` reuses their clients; a
/// field routed to another backend gets that one too) and the environment's options.
async fn loader(ctx: &Ctx<'_, '_>, fields: &[ResolvedField]) -> Result<Loader, Fail> {
    // Setting a backend up can wait on the network (credentials, a login): under the deadline too.
    let (backend, choice) = ctx.within("setting the backend up", ctx.backend_opt()).await??;
    let mut loader = ctx.loader();
    if let Some(b) = &backend {
        loader = loader.backend_arc(Arc::new(ReadOnly(b.clone())));
    }
    let mut loader = ctx
        .within(
            "setting the routed backends up",
            crate::decl::with_routed(loader, fields, &choice),
        )
        .await?;
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
    Ok(loader)
}

pub(crate) async fn run(ctx: &mut Ctx<'_, '_>, args: RunArgs) -> Result<u8, Fail> {
    let decls = ctx.declarations("run")?;
    let fields = select(decls.fields.clone(), &args.only)?;
    let name = decls.struct_name.clone();
    let loader = loader(ctx, &fields).await?;
    let (mut raw, mut tracker) = loader
        .load_raw_tracked(name.clone(), &fields)
        .await
        .map_err(|e| load_failure(&decls, e))?;
    let refs = loader
        .resolve_refs(ENV_REFERENCES, &env_references(&raw))
        .await
        .map_err(Fail::from)?;

    // In GitHub Actions every value is registered for masking before anything else is printed.
    if github::in_actions() {
        github::add_masks(ctx.ui.io.stdout, &raw.fields, &fields)
            .and_then(|()| github::add_masks(ctx.ui.io.stdout, &refs.fields, &[]))
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
        mounts.write(mounted(&raw.fields, name)?, path)?;
    }

    let forwarding = signals::Forwarding::install();
    // SIGUSR1 asks for a reload now; only listened to (and so only taken from its default action, which ends
    // the process) with --restart-on-change.
    let mut refresh = signals::RefreshRequests::install(args.restart_on_change)?;
    loop {
        let command = command(&args.command, &raw, &refs)?;
        let _ = ctx.ui.io.stdout.flush();
        let _ = ctx.ui.io.stderr.flush();
        let mut child = match spawn(command, &args.command[0]) {
            Ok(child) => child,
            Err(code) => return Ok(code),
        };
        forwarding.child(child.id());
        if !args.restart_on_change {
            let status = wait(&mut child).await;
            forwarding.reaped();
            return status.map(exit_code);
        }

        // Watch until the child exits on its own (its code is skm's) or a value changes.
        let ttl = Duration::from_secs(args.watch_ttl);
        let mut last_failure: Option<String> = None;
        let (new, changed) = loop {
            tokio::select! {
                status = wait(&mut child) => {
                    forwarding.reaped();
                    return status.map(exit_code);
                }
                () = tokio::time::sleep(ttl) => {}
                () = refresh.requested() => {
                    ctx.ui.note("skm run: SIGUSR1: reloading the secrets now");
                }
            }
            // Versions first where the backend can tell them: values are fetched only for what moved.
            match loader
                .reload_raw(name.clone(), &fields, &mut tracker)
                .await
                .map_err(Fail::from)
            {
                Ok(None) => last_failure = None,
                Ok(Some(new)) => {
                    last_failure = None;
                    let changed = changes(&raw, &new);
                    if !changed.is_empty() {
                        break (new, changed);
                    }
                }
                // The command keeps running on the values it has; each new failure is reported once.
                Err(fail) => {
                    let why = match fail {
                        Fail::Usage(m) | Fail::Failed(m) => m,
                    };
                    if last_failure.as_ref() != Some(&why) {
                        ctx.ui.warn(format!(
                            "skm run: reloading the secrets failed; the command keeps running: {why}"
                        ));
                        last_failure = Some(why);
                    }
                }
            }
        };
        if signals::requested() {
            // skm was asked to stop and passed that on: no restart, the child's exit is the end.
            let status = wait(&mut child).await;
            forwarding.reaped();
            return status.map(exit_code);
        }

        let delay = jitter(args.restart_jitter);
        let after = if delay.is_zero() {
            String::new()
        } else {
            format!(" in {:.1} s (--restart-jitter)", delay.as_secs_f64())
        };
        ctx.ui.note(format!(
            "skm run: {} changed; restarting the command{after} (SIGTERM, SIGKILL after {} s)",
            changed.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
            args.kill_after
        ));
        if !delay.is_zero() {
            tokio::select! {
                status = wait(&mut child) => {
                    forwarding.reaped();
                    return status.map(exit_code);
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
        let status = stop(&mut child, Duration::from_secs(args.kill_after)).await;
        forwarding.reaped();
        let status = status?;
        if signals::requested() {
            return Ok(exit_code(status));
        }
        // Only the new command can print the new values: their masks come before it starts.
        if github::in_actions() {
            github::add_masks(ctx.ui.io.stdout, &new.fields, &fields)
                .map_err(|e| Fail::Failed(format!("cannot write masks: {e}")))?;
        }
        for (name, path) in &args.mounts {
            mounts.rewrite(mounted(&new.fields, name)?, path)?;
        }
        raw = new;
    }
}

/// A random delay of 0 to `secs` seconds (millisecond steps), from the system's random source.
fn jitter(secs: u64) -> Duration {
    if secs == 0 {
        return Duration::ZERO;
    }
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No random source: the whole delay, which still spreads nothing but never restarts early.
        return Duration::from_secs(secs);
    }
    let span = secs * 1000 + 1;
    Duration::from_millis(u64::from_le_bytes(bytes) % span)
}

/// The loaded field `--mount NAME=...` names.
fn mounted<'a>(fields: &'a [RawField], name: &str) -> Result<&'a RawField, Fail> {
    find(fields, name).ok_or_else(|| {
        Fail::Usage(format!(
            "--mount {name}=...: no loaded secret named `{name}` (use its env name or field)"
        ))
    })
}

/// The ids of the fields whose value differs between two loads (changed, appeared or gone).
fn changes(old: &RawValues, new: &RawValues) -> Vec<String> {
    let mut out = Vec::new();
    for f in &new.fields {
        match old.fields.iter().find(|o| o.field == f.field) {
            Some(o) if o.expose_bytes() == f.expose_bytes() => {}
            _ => out.push(f.field.clone()),
        }
    }
    for o in &old.fields {
        if !new.fields.iter().any(|f| f.field == o.field) {
            out.push(o.field.clone());
        }
    }
    out
}

/// The command with the values in its environment (and nowhere else): the loaded fields, then the resolved
/// references in place of the variables that held them.
fn command(argv: &[OsString], raw: &RawValues, refs: &RawValues) -> Result<tokio::process::Command, Fail> {
    let mut command = tokio::process::Command::new(&argv[0]);
    command.args(&argv[1..]);
    for field in &raw.fields {
        let Some(env) = field.env.as_deref() else { continue };
        command.env(env, env_value(field)?);
    }
    for field in &refs.fields {
        command.env(&field.field, env_value(field)?);
    }
    Ok(command)
}

/// What a failed resolution of the environment's references is called in its report.
const ENV_REFERENCES: &str = "environment references";

/// The process's variables whose value is a reference, by name, for the command: all but those a loaded field
/// replaces with a value from another layer than the environment (a backend, a file wins over the variable).
fn env_references(raw: &RawValues) -> Vec<(String, String)> {
    let replaced = |name: &str| {
        raw.fields
            .iter()
            .any(|f| f.env.as_deref() == Some(name) && f.origin.layer != Some(Layer::Env))
    };
    let mut refs: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, v)| Reference::is_reference(v) && !replaced(k))
        .collect();
    refs.sort();
    refs
}

fn find<'a>(fields: &'a [RawField], name: &str) -> Option<&'a RawField> {
    fields
        .iter()
        .find(|f| f.env.as_deref() == Some(name))
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

impl Mounts {
    /// Replaces a mounted file's content for a restart: a temporary file (0600) beside it, renamed over it, so a
    /// reader sees the old value or the new one, never a mix.
    fn rewrite(&mut self, field: &RawField, path: &std::path::Path) -> Result<(), Fail> {
        crate::cmd::util::write_atomic(path, field.expose_bytes(), Some(0o600))
            .map_err(|e| Fail::Failed(format!("--mount: cannot rewrite {}: {}", path.display(), e.kind())))
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Starts `command`; when it cannot start, the exit code to end with (as env(1) and shells do: 127 for a
/// command not found, 126 for one that cannot run).
fn spawn(mut command: tokio::process::Command, program: &OsString) -> Result<tokio::process::Child, u8> {
    command.spawn().map_err(|e| {
        eprintln!("error: cannot start `{}`: {}", program.to_string_lossy(), e.kind());
        if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        }
    })
}

/// Waits for the child. Cancel-safe: the child is not reaped until this returns, so its pid stays its own
/// (a zombie) while skm signals it.
async fn wait(child: &mut tokio::process::Child) -> Result<std::process::ExitStatus, Fail> {
    child
        .wait()
        .await
        .map_err(|e| Fail::Failed(format!("waiting for the command failed: {e}")))
}

/// Stops the child for a restart: SIGTERM, then SIGKILL if it has not exited after `grace`.
async fn stop(child: &mut tokio::process::Child, grace: Duration) -> Result<std::process::ExitStatus, Fail> {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child, not yet reaped (`id()` is `None` once it is).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if let Ok(status) = tokio::time::timeout(grace, wait(child)).await {
            return status;
        }
    }
    #[cfg(not(unix))]
    let _ = grace;
    // Not gone after the grace period (or no SIGTERM here): SIGKILL (TerminateProcess on Windows).
    let _ = child.start_kill();
    wait(child).await
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
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

    const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    static CHILD: AtomicI32 = AtomicI32::new(0);
    static PENDING: AtomicI32 = AtomicI32::new(0);
    static RECEIVED: AtomicBool = AtomicBool::new(false);

    /// Whether skm received a signal to pass on since [`Forwarding::install`]: `--restart-on-change` does not
    /// restart a command that skm was asked to stop.
    pub(super) fn requested() -> bool {
        RECEIVED.load(Ordering::SeqCst)
    }

    extern "C" fn forward(sig: libc::c_int) {
        RECEIVED.store(true, Ordering::SeqCst);
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
            RECEIVED.store(false, Ordering::SeqCst);
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

        /// The child to pass signals to (`None`: it already exited).
        pub(super) fn child(&self, pid: Option<u32>) {
            let Some(pid) = pid else { return };
            let pid = pid as i32;
            CHILD.store(pid, Ordering::SeqCst);
            let pending = PENDING.swap(0, Ordering::SeqCst);
            if pending != 0 {
                // SAFETY: `pid` is our own child, not yet reaped.
                unsafe { libc::kill(pid, pending) };
            }
        }

        /// The child was reaped: its pid may be reused, so signals are kept for the next child instead.
        pub(super) fn reaped(&self) {
            CHILD.store(0, Ordering::SeqCst);
        }
    }

    /// `SIGUSR1`: a reload now instead of at the next TTL.
    pub(super) struct RefreshRequests(Option<tokio::signal::unix::Signal>);

    impl RefreshRequests {
        pub(super) fn install(listen: bool) -> Result<RefreshRequests, crate::Fail> {
            if !listen {
                return Ok(RefreshRequests(None));
            }
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .map(|s| RefreshRequests(Some(s)))
                .map_err(|e| crate::Fail::Failed(format!("cannot listen for SIGUSR1: {e}")))
        }

        /// Resolves when SIGUSR1 arrives; never without `--restart-on-change`.
        pub(super) async fn requested(&mut self) {
            match &mut self.0 {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
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
        pub(super) fn child(&self, _pid: Option<u32>) {}
        pub(super) fn reaped(&self) {}
    }
    pub(super) fn requested() -> bool {
        false
    }
    /// No SIGUSR1 outside Unix: reloads happen at the TTL.
    pub(super) struct RefreshRequests;
    impl RefreshRequests {
        pub(super) fn install(_listen: bool) -> Result<RefreshRequests, crate::Fail> {
            Ok(RefreshRequests)
        }
        pub(super) async fn requested(&mut self) {
            std::future::pending().await
        }
    }
}
