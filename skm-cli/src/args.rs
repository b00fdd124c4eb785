//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "Exit codes: 0 success; 1 a failure (a secret missing or of the wrong type, a conflict \
left, a verification or backend error); 2 a usage or configuration error.";

/// Manage the secrets a skm struct declares: migrate, check, document, and everyday operations.
#[derive(Debug, Parser)]
#[command(name = "skm", version, about, long_about = None, disable_help_subcommand = true, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The backend to use instead of detection (SKM_BACKEND, AWS_REGION, VAULT_ADDR, a local store).
    #[arg(long, global = true, value_name = "aws|vault|local|none")]
    pub backend: Option<String>,

    /// The declarations, exported by `manifest` (TOML or JSON). The standalone binary needs it for
    /// migrate, check, template, policy and manifest.
    #[arg(long, global = true, env = "SKM_MANIFEST", value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Replaces `{profile}` in the struct's prefix (default: SKM_PROFILE).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// Machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Never colour the output (also: NO_COLOR, or stdout not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,

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
        /// Without --key, replace the value even when it is a JSON object (all its keys are lost).
        #[arg(long)]
        force: bool,
    },
    /// Move the declared secrets from a .env file (or another backend) into a backend.
    Migrate(MigrateArgs),
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
    /// Export the declarations (never values) as TOML or JSON, for `--manifest`.
    Manifest {
        /// The format.
        #[arg(long, value_enum, default_value_t = ManifestFormat::Toml)]
        format: ManifestFormat,
        /// Where to write (`-` for stdout).
        #[arg(long, short, default_value = "-", value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// The source: a .env file, or a backend name (aws, vault, local). Write `./aws` for a file named `aws`.
    #[arg(long, default_value = ".env", value_name = "FILE|BACKEND")]
    pub from: String,
    /// The destination backend (default: --backend, else detection).
    #[arg(long, value_name = "aws|vault|local")]
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

#[derive(Debug, Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["aws", "vault", "external_secret"])))]
pub(crate) struct PolicyArgs {
    /// An AWS IAM policy (JSON).
    #[arg(long)]
    pub aws: bool,
    /// A Vault / OpenBao policy (HCL).
    #[arg(long)]
    pub vault: bool,
    /// An External Secrets Operator ExternalSecret (YAML).
    #[arg(long)]
    pub external_secret: bool,
    /// AWS: the region in the ARNs (default: AWS_REGION, AWS_DEFAULT_REGION, else `*`).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS: the account id in the ARNs (default `*`).
    #[arg(long)]
    pub account: Option<String>,
    /// AWS: the partition (`aws`, `aws-cn`, `aws-us-gov`).
    #[arg(long, default_value = "aws")]
    pub partition: String,
    /// Vault: the KV mount (default: SKM_VAULT_MOUNT, else `secret`).
    #[arg(long)]
    pub mount: Option<String>,
    /// Vault: the KV engine version (default: SKM_VAULT_KV_VERSION, else 2).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub kv_version: Option<u8>,
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

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a tag: write KEY=VALUE")),
    }
}
