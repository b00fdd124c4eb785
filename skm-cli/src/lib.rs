//! The `skm` tool: migrate, check, document and operate the secrets a [skm](https://docs.rs/skm) struct
//! declares, on any backend.
//!
//! # Contents
//! - [`run`]: the commands for your own struct, from a one-line `src/bin/secrets.rs`.
//! - [`run_with_manifest`]: the standalone `skm` binary, which reads the declarations from `--manifest FILE`.
//! - [`Cli`]: the same with a backend of your own, or with explicit arguments and streams (tests, embedding
//!   in an async `main`).
//! - [`Manifest`]: the export of a struct's declarations, without a secret value.
//! - [`exit`]: the exit codes.
//!
//! # Cargo features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `local` | yes | the local encrypted store |
//! | `aws` | no | AWS Secrets Manager |
//! | `vault` | no | HashiCorp Vault / OpenBao KV |
//! | `postgres` | no | `rotate --postgres-role`: a PostgreSQL role's password rotated with its secret |
//!
//! # Commands
//! | command | what it does |
//! |---|---|
//! | `get PATH [--key K] [--reveal]` | shows a secret, masked unless `--reveal` |
//! | `put PATH [--key K] [--tag k=v] [--description D] [--keep-newline]` | writes a value read from stdin (one trailing newline removed unless `--keep-newline`) or a hidden prompt, never argv; with no backend configured, the local store |
//! | `list [PREFIX]`, `versions PATH` | paths, versions |
//! | `delete PATH [--force \| --recovery-days N]` | deletes |
//! | `rollback PATH --to VERSION` | writes an old version's value as the new current version |
//! | `rotate PATH [--key K] --generate N [--charset C] [--allow-weak]` | writes a random value of at least 128 bits of entropy (unless `--allow-weak`); prints the version and the bits, not the value |
//! | `rotate PATH --key K --generate N --postgres-role ROLE` | also sets the role's password: pending, `ALTER ROLE`, test, store |
//! | `migrate [--from .env\|BACKEND] [--to BACKEND] [--dry-run] [--force] [--backup] [--delete-source]` | value-free plan, apply, read back, optionally rewrite `.env` |
//! | `check` | resolves every declared secret here, shows where each comes from, never a value |
//! | `diff --profile A --profile B`, `diff --from BACKEND --to BACKEND` | compares the declared secrets of two profiles or backends, from the stores only: equal, different, type mismatch, missing in A / B, present in both; never a value, hash or length; `--expect-equal F`, `--undeclared` |
//! | `template` | writes `.env.example` |
//! | `policy --aws \| --vault \| --external-secret` | least-privilege policies for exactly the declared secrets |
//! | `run [--only F]... [--mount NAME=PATH]... [--restart-on-change] -- CMD` | runs a command with the secrets in its environment; restarted after a rotation with `--restart-on-change` (`--watch-ttl SECS`, `--kill-after SECS`) |
//! | `export --github-env` | appends the secrets to `$GITHUB_ENV`, masked (GitHub Actions) |
//! | `doctor` | backend and why, reachability, Vault token TTL, git ignores, file permissions |
//! | `manifest` | exports the declarations for `--manifest`; `--schema`: the manifest's JSON Schema |
//! | `prepare [--profile P]... [--check] [--dir DIR]` | writes the value-free snapshot of the stores (`.skm/prepared/`) that `#[derive(Secrets)]` checks declarations against at compile time; `--check` exits 1 when it is stale |
//! | `completions bash\|zsh\|fish\|powershell` | a shell completion script |
//!
//! Every command takes `--json` (machine output on stdout), `--backend aws|vault|local|none` (instead of
//! detection), `--profile NAME`, `--deadline SECONDS` (or `SKM_DEADLINE`: how long a load, `check` or `doctor`
//! may wait on backends and files; default 30, `0` for none, which is dangerous) and, for the standalone
//! binary, `--manifest FILE` (or `SKM_MANIFEST`).
//! Tables go to stdout, progress and warnings to stderr; colour only when stdout is a terminal and
//! `NO_COLOR` is unset.
//!
//! # Example
//! ```ignore
//! // src/bin/secrets.rs of your application (skm with the `cli` feature):
//! fn main() -> std::process::ExitCode {
//!     skm::cli::run::<my_app::AppSecrets>()
//! }
//! ```
//! Then `cargo run --bin secrets -- check`, `... -- migrate --dry-run`, `... -- policy --aws`.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod args;
mod cmd;
mod decl;
mod dotenv;
mod logging;
mod output;
mod safe;
mod select;
mod valid;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use skm_runtime::backend::{AdminBackend, AdminError};
use skm_runtime::detect::Choice;
use skm_runtime::Secrets;

pub use decl::{Manifest, ManifestField, ManifestVersion, MANIFEST_FORMAT, MANIFEST_FORMATS_READ};
pub use output::Io;

use decl::{DeclSource, Declarations};
use output::Ui;

/// The exit codes of every command.
pub mod exit {
    /// Success: everything resolved, was written and verified, or was already in place.
    pub const OK: u8 = 0;
    /// A failure: a secret missing or of the wrong type, a conflict left, a verification or backend error.
    pub const FAILED: u8 = 1;
    /// A usage or configuration error: bad arguments, no declarations, no backend, a malformed file.
    pub const USAGE: u8 = 2;
}

/// Runs the commands for the struct `T`, with the process's arguments and streams; returns the exit code.
///
/// Builds its own tokio runtime, so call it from a plain `fn main`, not from inside an async runtime
/// (there, use [`Cli::execute`]).
///
/// # Example
/// ```ignore
/// fn main() -> std::process::ExitCode {
///     skm::cli::run::<my_app::AppSecrets>()
/// }
/// ```
pub fn run<T: Secrets>() -> ExitCode {
    logging::init();
    Cli::embedded::<T>().run()
}

/// Runs the standalone `skm` binary: declarations come from `--manifest FILE` or `SKM_MANIFEST`.
///
/// Builds its own tokio runtime, as [`run`] does. Both install a log subscriber on stderr (`RUST_LOG`,
/// default WARN) unless the process has one; it keeps the AWS SDK's and the HTTP stacks' targets at DEBUG or
/// below whatever `RUST_LOG` says, because at TRACE they log request bodies, which hold the values written.
pub fn run_with_manifest() -> ExitCode {
    logging::init();
    Cli::standalone().run()
}

/// The commands, configured: where declarations come from and, optionally, a backend of your own.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use skm_cli::{exit, Cli, Io};
/// use skm_runtime::backend::{MemoryBackend, SecretValue};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let backend = MemoryBackend::new();
/// backend.insert("auth/jwt", SecretValue::map([("secret", "s3cr3t")]));
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// let mut io = Io { stdin: &mut std::io::empty(), stdout: &mut out, stderr: &mut err,
///                   stdin_tty: false, stdout_tty: false, stderr_tty: false };
/// let code = Cli::standalone().backend(Arc::new(backend)).execute(["skm", "get", "auth/jwt"], &mut io).await;
/// assert_eq!(code, exit::OK);
/// assert!(!String::from_utf8(out).unwrap().contains("s3cr3t")); // masked
/// # });
/// ```
#[derive(Clone)]
pub struct Cli {
    source: DeclSource,
    backend: Option<Arc<dyn AdminBackend>>,
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            DeclSource::Embedded { name, .. } => *name,
            DeclSource::Manifest => "--manifest",
        };
        f.debug_struct("Cli")
            .field("declarations", &source)
            .field("backend", &self.backend.as_ref().map(|b| b.name()))
            .finish()
    }
}

impl Cli {
    /// The commands for struct `T`, whose declarations are compiled in.
    pub fn embedded<T: Secrets>() -> Self {
        Cli {
            source: DeclSource::embedded::<T>(),
            backend: None,
        }
    }

    /// The standalone tool: declarations come from `--manifest FILE` (or `SKM_MANIFEST`).
    pub fn standalone() -> Self {
        Cli {
            source: DeclSource::Manifest,
            backend: None,
        }
    }

    /// Uses `backend` instead of `--backend` and detection (a backend built in code, or a
    /// [`MemoryBackend`](skm_runtime::backend::MemoryBackend) in tests). `migrate --from BACKEND` still
    /// builds its source from the environment.
    pub fn backend(mut self, backend: Arc<dyn AdminBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Runs with the process's arguments and streams on a new tokio runtime; returns the exit code.
    pub fn run(self) -> ExitCode {
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::from(exit::FAILED);
            }
        };
        let (mut stdin, mut stdout, mut stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
        let mut io = Io {
            stdin_tty: stdin.is_terminal(),
            stdout_tty: stdout.is_terminal(),
            stderr_tty: stderr.is_terminal(),
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        let code = runtime.block_on(self.execute(std::env::args_os(), &mut io));
        ExitCode::from(code)
    }

    /// Runs the command line `args` (the first item is the program name) with the streams of `io`;
    /// returns the exit code ([`exit`]).
    pub async fn execute<I, A>(self, args: I, io: &mut Io<'_>) -> u8
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        // The name this binary was started as (`skm`, or an application's `secrets`): completion scripts
        // complete that name.
        let program = args
            .first()
            .and_then(|a| std::path::Path::new(a).file_name())
            .map(|s| {
                let s = s.to_string_lossy();
                s.strip_suffix(".exe").unwrap_or(&s).to_string()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "skm".to_string());
        let cli = match args::parse(args) {
            Ok(cli) => cli,
            Err(e) => {
                let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
                let text = e.render().to_string();
                let sink: &mut dyn std::io::Write = if e.use_stderr() { io.stderr } else { io.stdout };
                let _ = sink.write_all(text.as_bytes());
                return code;
            }
        };
        let color = output::use_color(io.stdout_tty, cli.no_color);
        let mut ctx = Ctx {
            ui: Ui {
                io,
                json: cli.json,
                color,
            },
            backend_flag: cli.backend.clone(),
            manifest: cli.manifest.clone(),
            profile: cli.profile.last().cloned(),
            profiles: cli.profile.clone(),
            deadline: cli.deadline,
            source: self.source,
            backend: self.backend,
            program,
        };
        let result = cmd::dispatch(&mut ctx, cli.command).await;
        match result {
            Ok(code) => code,
            Err(fail) => {
                let (code, message) = match fail {
                    Fail::Usage(m) => (exit::USAGE, m),
                    Fail::Failed(m) => (exit::FAILED, m),
                };
                if ctx.ui.json {
                    ctx.ui
                        .json(&serde_json::json!({ "ok": false, "error": message, "exit_code": code }));
                }
                ctx.ui.labelled("error:", output::Tone::Bad, &message);
                code
            }
        }
    }
}

/// Why a command stopped: a usage / configuration problem (exit 2) or a failure (exit 1).
#[derive(Debug)]
pub(crate) enum Fail {
    Usage(String),
    Failed(String),
}

impl From<skm_runtime::Error> for Fail {
    fn from(e: skm_runtime::Error) -> Self {
        match e {
            skm_runtime::Error::Config(_) | skm_runtime::Error::Dotenv(_) => Fail::Usage(e.to_string()),
            other => Fail::Failed(other.to_string()),
        }
    }
}

impl From<AdminError> for Fail {
    fn from(e: AdminError) -> Self {
        Fail::Failed(describe_admin(&e))
    }
}

/// An [`AdminError`] for people: the kind in words, the path, the backend's detail.
pub(crate) fn describe_admin(e: &AdminError) -> String {
    use skm_runtime::backend::AdminErrorKind as K;
    let kind = match e.kind {
        K::NotFound => "not found",
        K::AlreadyExists => "already exists",
        K::Forbidden => "access denied",
        K::Unavailable => "backend unavailable",
        K::Unsupported => "not supported by this backend",
        _ => "backend error",
    };
    format!("`{}`: {kind} ({})", safe::display(&e.path), safe::display(&e.detail))
}

/// What every command can reach: output, global flags, declarations and the backend.
pub(crate) struct Ctx<'a, 'b> {
    pub ui: Ui<'a, 'b>,
    pub backend_flag: Option<String>,
    pub manifest: Option<std::path::PathBuf>,
    pub profile: Option<String>,
    /// Every `--profile` given, in order (several only for the commands that take several).
    pub profiles: Vec<String>,
    /// `--deadline` (or `SKM_DEADLINE`), when given; `Duration::ZERO` for none.
    pub deadline: Option<std::time::Duration>,
    pub source: DeclSource,
    pub backend: Option<Arc<dyn AdminBackend>>,
    /// The name the binary was started as (argv\[0\]'s file name), for `completions`.
    pub program: String,
}

/// What the tool waits under when neither `--deadline` nor `SKM_DEADLINE` is given: the runtime's default for a
/// whole load.
pub(crate) const DEFAULT_DEADLINE: std::time::Duration = skm_runtime::Loader::DEFAULT_DEADLINE;

impl Ctx<'_, '_> {
    /// The deadline of every wait on the network or on files: `--deadline`, else [`DEFAULT_DEADLINE`]; `None`
    /// when the user asked for none (`0`).
    pub fn deadline(&self) -> Option<std::time::Duration> {
        match self.deadline {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(DEFAULT_DEADLINE),
        }
    }

    /// The deadline in words, for progress lines: `deadline 30s`, or `no deadline`.
    pub fn deadline_words(&self) -> String {
        match self.deadline() {
            Some(d) => format!("deadline {}s", d.as_secs_f64()),
            None => "no deadline".into(),
        }
    }

    /// A loader with the tool's deadline: `--deadline` passed through when given (0 turns it off), else the
    /// runtime's default.
    pub fn loader(&self) -> skm_runtime::Loader {
        let loader = skm_runtime::Loader::new();
        match self.deadline {
            Some(d) => loader.deadline(d),
            None => loader,
        }
    }

    /// `fut` under the tool's deadline; past it, a failure that says what was waited for and for how long.
    pub async fn within<T>(&self, what: &str, fut: impl std::future::Future<Output = T>) -> Result<T, Fail> {
        within(self.deadline(), what, fut).await
    }

    /// `fut`, a load that the loader's own deadline already bounds, under a backstop a second later: the
    /// loader's error (naming the backend and what it waited for) is the one the user should see.
    pub async fn within_backstop<T>(&self, what: &str, fut: impl std::future::Future<Output = T>) -> Result<T, Fail> {
        let backstop = self.deadline().map(|d| d + std::time::Duration::from_secs(1));
        within(backstop, what, fut).await
    }

    /// The profile: `--profile`, else `SKM_PROFILE`, checked as the runtime checks it at load.
    ///
    /// Every command that takes a profile goes through here, so `--profile '*'` or `+` can never become a
    /// wildcard in a path or a policy.
    pub fn profile(&self) -> Result<Option<String>, Fail> {
        let profile = self
            .profile
            .clone()
            .or_else(|| select::env_var("SKM_PROFILE").filter(|p| !p.trim().is_empty()));
        if let Some(p) = &profile {
            check_profile(p).map_err(Fail::Usage)?;
        }
        Ok(profile)
    }

    /// The declarations: the embedded struct's, or the manifest's.
    pub fn declarations(&self, command: &str) -> Result<Declarations, Fail> {
        match (&self.source, &self.manifest) {
            (DeclSource::Embedded { name, .. }, Some(_)) => Err(Fail::Usage(format!(
                "this binary has the declarations of `{name}` built in; --manifest (or SKM_MANIFEST) is for the \
                 standalone `skm`"
            ))),
            (DeclSource::Embedded { name, resolve, typed }, None) => {
                let profile = self.profile()?;
                let fields = resolve(profile.as_deref()).map_err(Fail::from)?;
                Ok(Declarations {
                    struct_name: name.to_string(),
                    profile,
                    fields,
                    typed: Some(*typed),
                    unsupplied_defaults: Vec::new(),
                })
            }
            (DeclSource::Manifest, None) => Err(Fail::Usage(format!(
                "`{command}` needs the declarations: pass --manifest FILE (written by `skm manifest` from your \
                 application's `secrets` binary), or run the command through that binary"
            ))),
            (DeclSource::Manifest, Some(path)) => {
                let manifest = Manifest::read(path).map_err(Fail::Usage)?;
                if let (Some(wanted), Some(has)) = (self.profile()?, &manifest.profile) {
                    if &wanted != has {
                        return Err(Fail::Usage(format!(
                            "the manifest was written for profile `{has}`, not `{wanted}`: export one per profile \
                             with `skm manifest --profile {wanted}`"
                        )));
                    }
                }
                Ok(manifest.into_declarations())
            }
        }
    }

    /// The backend kind and why, honouring `--backend` and a backend set in code.
    pub fn choice(&self) -> Result<Choice, Fail> {
        if let Some(b) = &self.backend {
            return Ok(Choice {
                backend: None,
                reason: format!("{} set in code", b.name()),
            });
        }
        select::choose(self.backend_flag.as_deref())
    }

    /// The backend, or `None` when none is configured.
    pub async fn backend_opt(&self) -> Result<(Option<Arc<dyn AdminBackend>>, Choice), Fail> {
        let choice = self.choice()?;
        if let Some(b) = &self.backend {
            return Ok((Some(b.clone()), choice));
        }
        let backend = select::build(choice.backend).await?;
        Ok((backend, choice))
    }

    /// The backend; an error when none is configured.
    pub async fn backend(&self) -> Result<Arc<dyn AdminBackend>, Fail> {
        match self.backend_opt().await? {
            (Some(b), _) => Ok(b),
            (None, choice) => Err(no_backend(&choice)),
        }
    }
}

/// `fut` bounded by `deadline` (none: unbounded); past it, a failure naming `what` and the time.
pub(crate) async fn within<T>(
    deadline: Option<std::time::Duration>,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Fail> {
    match deadline {
        None => Ok(fut.await),
        Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| {
            Fail::Failed(format!(
                "{what} did not finish within {}s (the deadline: --deadline or SKM_DEADLINE)",
                d.as_secs_f64()
            ))
        }),
    }
}

/// The runtime's own profile check (the one a load runs), so that the tool accepts exactly what a load does.
pub(crate) fn check_profile(profile: &str) -> Result<(), String> {
    skm_runtime::Loader::new()
        .profile(profile)
        .resolved_profile()
        .map(drop)
        .map_err(|e| e.to_string())
}

pub(crate) fn no_backend(choice: &Choice) -> Fail {
    Fail::Usage(format!(
        "no backend selected ({}): pass --backend aws|vault|local or set SKM_BACKEND",
        choice.reason
    ))
}
