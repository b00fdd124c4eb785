//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use skm_runtime::backend::registry;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 a failure (a secret missing or of the wrong type, a conflict \
left, a verification or backend error); 2 a usage or configuration error.";

/// Manage the secrets a skm struct declares: migrate, check, document, and everyday operations.
#[derive(Debug, Parser)]
#[command(name = "skm", version, about, long_about = None, disable_help_subcommand = true, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The backend to use instead of detection (SKM_BACKEND, then each backend's signal; see `skm doctor`).
    #[arg(long, global = true, value_name = "BACKEND", value_parser = backend_names(), ignore_case = true)]
    pub backend: Option<String>,

    /// The declarations, exported by `manifest` (TOML or JSON). The standalone binary needs it for
    /// migrate, check, template, policy and manifest.
    #[arg(long, global = true, env = "SKM_MANIFEST", value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Replaces `{profile}` in the struct's prefix (default: SKM_PROFILE). Only the commands that compare or
    /// prepare several profiles (`prepare`, `diff`) take it more than once.
    #[arg(long, global = true, value_name = "NAME", action = clap::ArgAction::Append)]
    pub profile: Vec<String>,

    /// Machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Never colour the output (also: NO_COLOR, or stdout not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Seconds a load, `check`, `doctor`, `run` or `export` may wait on backends and secret files (default 30;
    /// also SKM_DEADLINE). `0` means no deadline, which is dangerous: a backend that accepts connections and
    /// never answers then holds the command forever.
    #[arg(long, global = true, env = "SKM_DEADLINE", value_name = "SECONDS", value_parser = parse_deadline)]
    pub deadline: Option<std::time::Duration>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a command with the declared secrets in its environment: `skm run -- CMD [ARGS]...`.
    Run(crate::cmd::run::RunArgs),
    /// Hand the declared secrets to a CI job: `skm export --github-env` (GitHub Actions).
    Export(crate::cmd::github::ExportArgs),
    /// Show a secret, masked unless --reveal.
    Get {
        /// The secret's path.
        path: String,
        /// A key inside a JSON-object secret.
        #[arg(long)]
        key: Option<String>,
        /// A version id or number (default: current).
        #[arg(long)]
        version: Option<String>,
        /// Print the value itself.
        #[arg(long)]
        reveal: bool,
    },
    /// Write a secret; the value comes from stdin or a hidden prompt, never from the command line.
    ///
    /// From stdin, exactly one trailing newline (`\n` or `\r\n`) is removed, so that `echo value | skm put
    /// PATH` stores `value`; `--keep-newline` stores the input as it is. With no backend configured at all, the
    /// first `put` writes to the local store (`.skm`, or SKM_LOCAL_PATH) and says so.
    Put {
        /// The secret's path.
        path: String,
        /// Set this key inside a JSON-object secret, keeping its other keys.
        #[arg(long)]
        key: Option<String>,
        /// A tag, where the backend supports them (repeatable).
        #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// A description, where the backend supports it.
        #[arg(long)]
        description: Option<String>,
        /// Fail if the secret already exists.
        #[arg(long)]
        create_only: bool,
        /// Store the value from stdin exactly as read, without removing one trailing newline.
        #[arg(long)]
        keep_newline: bool,
    },
    /// List secret paths.
    List {
        /// Only paths starting with this.
        prefix: Option<String>,
    },
    /// Delete a secret.
    Delete {
        /// The secret's path.
        path: String,
        /// Delete at once, without a recovery window.
        #[arg(long, conflicts_with = "recovery_days")]
        force: bool,
        /// Keep it recoverable for this many days (AWS: 7 to 30).
        #[arg(long, value_name = "N")]
        recovery_days: Option<u32>,
        /// Do not ask for confirmation on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List a secret's versions, newest first.
    Versions {
        /// The secret's path.
        path: String,
    },
    /// Make an old version current again, by writing its value as a new version.
    Rollback {
        /// The secret's path.
        path: String,
        /// The version to restore: an id or number (see `versions`), a stage label, or `previous`.
        #[arg(long, value_name = "VERSION")]
        to: String,
    },
    /// Write a new cryptographically random value; prints the new version, never the value.
    Rotate {
        /// The secret's path.
        path: String,
        /// Set this key inside a JSON-object secret, keeping its other keys.
        #[arg(long)]
        key: Option<String>,
        /// The length of the generated value.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(8..=4096))]
        generate: u16,
        /// The characters to draw from.
        #[arg(long, value_enum, default_value_t = Charset::Alnum)]
        charset: Charset,
        /// Write a value of fewer than 128 bits of entropy (e.g. `--generate 8 --charset hex`, 32 bits) for a
        /// system that cannot take a longer one; refused without it.
        #[arg(long)]
        allow_weak: bool,
        /// Without --key, replace the value even when it is a JSON object (all its keys are lost).
        #[arg(long)]
        force: bool,
        /// Also change this PostgreSQL role's password: generate, store as pending, ALTER ROLE, test a
        /// login, then store as current (needs --key).
        #[cfg(feature = "postgres")]
        #[arg(long, value_name = "ROLE", requires = "key")]
        postgres_role: Option<String>,
        /// The admin connection for --postgres-role, without a password
        /// (`postgres://admin@127.0.0.1:5432/postgres`; default: SKM_POSTGRES_ADMIN_URL).
        #[cfg(feature = "postgres")]
        #[arg(long, value_name = "URL", requires = "postgres_role")]
        postgres_url: Option<String>,
        /// The secret holding the admin's password (with --admin-key) or a whole database secret
        /// (`host`, `port`, `username`, `password`, `dbname`).
        #[cfg(feature = "postgres")]
        #[arg(long, value_name = "PATH", requires = "postgres_role")]
        admin_path: Option<String>,
        /// The key of --admin-path holding the admin's password.
        #[cfg(feature = "postgres")]
        #[arg(long, value_name = "KEY", requires = "admin_path")]
        admin_key: Option<String>,
    },
    /// Move the declared secrets from a .env file (or another backend) into a backend.
    Migrate(MigrateArgs),
    /// Compare the declared secrets between two profiles or two backends, never printing a value.
    ///
    /// `--profile staging --profile prod` or `--from aws --to vault`: for each field, equal, different, type
    /// mismatch, missing in A or B (or both), or present in both (not compared: a side's type could not be
    /// checked). Only the stores are compared: no environment variable, .env file, secret file or default.
    #[command(after_help = crate::cmd::diff::AFTER_HELP)]
    Diff(crate::cmd::diff::DiffArgs),
    /// Resolve every declared secret here and now, without printing values; exit 0 only if all resolve.
    Check {
        /// The .env file to read (default: SKM_DOTENV, else ./.env).
        #[arg(long, value_name = "FILE")]
        dotenv: Option<PathBuf>,
        /// Read no .env file.
        #[arg(long, conflicts_with = "dotenv")]
        no_dotenv: bool,
        /// A backend failure is an error even when a lower layer has the value.
        #[arg(long)]
        strict: bool,
    },
    /// Write a .env.example: every declared variable, with comments, and no values.
    Template {
        /// Where to write (`-` for stdout).
        #[arg(long, short, default_value = ".env.example", value_name = "FILE")]
        output: PathBuf,
        /// Overwrite a file that `skm template` did not write.
        #[arg(long)]
        force: bool,
    },
    /// Print a least-privilege policy for exactly the declared secrets.
    Policy(PolicyArgs),
    /// Diagnose the set-up: backend, reachability, token lifetime, git ignores, file permissions.
    Doctor {
        /// The .env file to inspect (default: SKM_DOTENV, else ./.env).
        #[arg(long, value_name = "FILE")]
        dotenv: Option<PathBuf>,
    },
    /// Export the declarations (never a secret value) as TOML or JSON, for `--manifest`; or, with --schema, the
    /// manifest's JSON Schema.
    Manifest {
        /// The format.
        #[arg(long, value_enum, default_value_t = ManifestFormat::Toml)]
        format: ManifestFormat,
        /// Print the JSON Schema of the manifest file (`skm.toml`) instead, for editors; needs no declarations.
        #[arg(long, conflicts_with = "format")]
        schema: bool,
        /// Where to write (`-` for stdout).
        #[arg(long, short, default_value = "-", value_name = "FILE")]
        output: PathBuf,
    },
    /// Write the snapshot of the stores that `#[derive(Secrets)]` checks declarations against at compile time
    /// (`.skm/prepared/`, to commit); `--check`: exit 1 when it no longer matches the stores or the declarations.
    Prepare(crate::cmd::prepare::PrepareArgs),
    /// Print a shell completion script: `skm completions bash > ~/.local/share/bash-completion/completions/skm`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// The source: a .env file, or a backend name (as `--backend`). Write `./aws` for a file named `aws`.
    #[arg(long, default_value = ".env", value_name = "FILE|BACKEND")]
    pub from: String,
    /// The destination backend (default: --backend, else detection).
    #[arg(long, value_name = "BACKEND", value_parser = backend_names(), ignore_case = true)]
    pub to: Option<String>,
    /// Show the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite remote values that differ (conflicts).
    #[arg(long)]
    pub force: bool,
    /// Copy the source .env file aside (mode 0600) before writing anything.
    #[arg(long)]
    pub backup: bool,
    /// After verifying every write, rewrite the .env without the migrated entries (keeps a backup).
    #[arg(long)]
    pub delete_source: bool,
}

/// `skm policy`. Besides these, [`policy_command`] adds one flag per backend with a policy renderer
/// (`--aws`, `--vault`, `--gcp`, `--azure`: shorthands for `--for NAME`) and one per renderer option
/// (`--region`, `--mount`, `--project`, ...), all read from the backend registry.
#[derive(Debug, Args)]
#[group(skip)]
pub(crate) struct PolicyArgs {
    /// The backend whose policy to print (as `--backend`; also `--aws`, `--vault`, ...).
    #[arg(long = "for", value_name = "BACKEND", value_parser = policy_names(), ignore_case = true)]
    pub for_backend: Option<String>,
    /// An External Secrets Operator ExternalSecret (YAML) for the backend `--for` names, else the detected one.
    #[arg(long)]
    pub external_secret: bool,
    /// The registry flags given: backend shorthands and renderer options, by option name.
    #[arg(skip)]
    pub registry: RegistryArgs,
    /// ExternalSecret: the metadata name (default: the struct's name in kebab case).
    #[arg(long)]
    pub name: Option<String>,
    /// ExternalSecret: the namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// ExternalSecret: the SecretStore to read through.
    #[arg(long, default_value = "skm")]
    pub store: String,
    /// ExternalSecret: the store's kind.
    #[arg(long, value_enum, default_value_t = StoreKind::SecretStore)]
    pub store_kind: StoreKind,
    /// ExternalSecret: how often to refresh.
    #[arg(long, default_value = "1h")]
    pub refresh_interval: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Charset {
    /// A-Z, a-z, 0-9.
    Alnum,
    /// 0-9, a-f.
    Hex,
    /// A-Z, a-z, 0-9, `-`, `_` (URL-safe).
    Urlsafe,
    /// Printable ASCII without space, quotes or backslash.
    Ascii,
}

/// The shells `skm completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    #[value(name = "powershell")]
    PowerShell,
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(s: CompletionShell) -> Self {
        match s {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
            CompletionShell::PowerShell => clap_complete::Shell::PowerShell,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ManifestFormat {
    Toml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreKind {
    #[value(name = "SecretStore")]
    SecretStore,
    #[value(name = "ClusterSecretStore")]
    ClusterSecretStore,
}

/// What [`policy_command`]'s registry-derived flags held on the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistryArgs {
    /// Backends named by their shorthand flag (`--aws`).
    pub backends: Vec<&'static str>,
    /// Renderer options given, by [`PolicyOption::name`](skm_runtime::backend::registry::PolicyOption::name).
    pub options: Vec<(&'static str, String)>,
}

/// Every name and alias `--backend` accepts, from the registry.
fn backend_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(registry::names())
}

/// The names and aliases of backends that can render a policy.
fn policy_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        registry::all()
            .iter()
            .filter(|d| d.policy.is_some())
            .flat_map(|d| std::iter::once(d.name).chain(d.aliases.iter().copied())),
    )
}

/// The `policy` subcommand with the registry's flags added: `--NAME` per backend with a renderer, and each
/// renderer option once (backends sharing an option name share the flag).
pub(crate) fn policy_command(cmd: clap::Command) -> clap::Command {
    let mut kinds: Vec<&'static str> = vec!["for_backend", "external_secret"];
    let mut cmd = cmd;
    let mut seen: Vec<&'static str> = Vec::new();
    for d in registry::all() {
        let Some(renderer) = &d.policy else { continue };
        kinds.push(d.name);
        cmd = cmd.arg(
            clap::Arg::new(d.name)
                .long(d.name)
                .action(clap::ArgAction::SetTrue)
                .help(format!(
                    "{} ({}): the same as `--for {}`",
                    d.title, renderer.format, d.name
                )),
        );
        for o in renderer.options {
            if seen.contains(&o.name) {
                continue;
            }
            seen.push(o.name);
            let env = if o.env.is_empty() {
                String::new()
            } else {
                format!("; default: {}", o.env.join(", "))
            };
            cmd = cmd.arg(
                clap::Arg::new(o.name)
                    .long(o.name)
                    .value_name("VALUE")
                    .help(format!("{}: {}{env}", d.name, o.help)),
            );
        }
    }
    cmd.group(clap::ArgGroup::new("kind").required(true).multiple(true).args(kinds))
}

/// Reads [`policy_command`]'s flags back from the matches.
pub(crate) fn registry_args(m: &clap::ArgMatches) -> RegistryArgs {
    let mut out = RegistryArgs::default();
    for d in registry::all() {
        let Some(renderer) = &d.policy else { continue };
        if m.get_flag(d.name) {
            out.backends.push(d.name);
        }
        for o in renderer.options {
            if let Some(v) = m.get_one::<String>(o.name) {
                if !out.options.iter().any(|(n, _)| *n == o.name) {
                    out.options.push((o.name, v.clone()));
                }
            }
        }
    }
    out
}

/// The whole command line as clap knows it: the derived [`Cli`] plus the registry's `policy` flags (what
/// [`parse`] parses with, and what `completions` describes).
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().mut_subcommand("policy", policy_command)
}

impl Command {
    /// Whether the command takes `--profile` more than once (the others take one profile).
    pub(crate) fn takes_profiles(&self) -> bool {
        matches!(self, Command::Prepare(_) | Command::Diff(_))
    }
}

/// Parses a command line: the derived [`Cli`] plus the registry's `policy` flags.
pub(crate) fn parse<I, A>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    let cmd = command();
    let matches = cmd.clone().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd.clone()))?;
    if let (Command::Policy(args), Some(("policy", m))) = (&mut cli.command, matches.subcommand()) {
        args.registry = registry_args(m);
    }
    if cli.profile.len() > 1 && !cli.command.takes_profiles() {
        let message = "--profile was given more than once: this command works on one profile";
        return Err(clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, message).format(&mut cmd.clone()));
    }
    Ok(cli)
}

/// A number of seconds, as `SKM_DEADLINE` is read by the runtime: `30`, `2.5`, `0` for none.
fn parse_deadline(s: &str) -> Result<std::time::Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a number of seconds: write e.g. `30` or `2.5` (`0` for no deadline)"))
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a tag: write KEY=VALUE")),
    }
}
