//! The `skm` tool end to end: real processes against the local store, moto (AWS) and OpenBao (Vault).
//!
//! This test binary has its own `main` (`harness = false`) because it plays two parts. Started by cargo, it
//! runs the tests below. Started with `SKM_E2E_AS_APP=1`, it *is* an application's embedded `secrets`
//! binary: `skm::cli::run::<AppSecrets>()`, exactly what a user writes in `src/bin/secrets.rs`. The tests
//! run both that binary and the standalone `skm` (with the manifest the application exported).
//!
//! Each scenario is one function parameterised by backend; a backend whose peer is missing fails.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;

use serde_json::Value;
use skm::{SecretString, Secrets};

const AS_APP: &str = "SKM_E2E_AS_APP";

/// Values that must never appear in output unless `--reveal` asks for them.
const SENTINELS: [&str; 10] = [
    "SENTINEL-jwt-3b9f",
    "postgres://app:SENTINEL-dbpass-77aa@db:5432/app",
    "5432",
    "SENTINEL-stripe-c0ffee",
    "SENTINEL-smtp-1d2e",
    "redis://:SENTINEL-redis-9a8b@cache:6379",
    "SENTINEL-s3-4f4f",
    "https://SENTINEL-sentry-0101@sentry.example/1",
    "SENTINEL-github-5e5e",
    "SENTINEL-webhook-6161",
];
const ENV_NAMES: [&str; 10] = [
    "JWT_SECRET",
    "DATABASE_URL",
    "DATABASE_PORT",
    "STRIPE_KEY",
    "SMTP_PASSWORD",
    "REDIS_URL",
    "S3_SECRET",
    "SENTRY_DSN",
    "GITHUB_TOKEN",
    "WEBHOOK_SECRET",
];
/// The declared default of `log_level`, a secret-typed field: a manifest must flag it, never contain it.
const DEFAULT_SENTINEL: &str = "DEFAULT-SENTINEL-8c8c";
/// The paths the ten migrated secrets live at (two share `app/db`).
const PATHS: [&str; 9] = [
    "app/db",
    "app/github",
    "app/jwt",
    "app/redis",
    "app/s3",
    "app/sentry",
    "app/smtp",
    "app/stripe",
    "app/webhook",
];

/// The application's declarations: ten secrets over nine paths, one env-only value with a default, and an
/// optional secret.
#[derive(Secrets)]
#[allow(dead_code)]
struct AppSecrets {
    #[secret(path = "app/jwt", key = "secret", env = "JWT_SECRET")]
    jwt: SecretString,
    #[secret(path = "app/db", key = "url", env = "DATABASE_URL")]
    db_url: SecretString,
    #[secret(path = "app/db", key = "port", env = "DATABASE_PORT", plain)]
    db_port: u16,
    #[secret(path = "app/stripe", env = "STRIPE_KEY")]
    stripe: SecretString,
    #[secret(path = "app/smtp", key = "password", env = "SMTP_PASSWORD")]
    smtp: SecretString,
    #[secret(path = "app/redis", key = "url", env = "REDIS_URL")]
    redis: SecretString,
    #[secret(path = "app/s3", key = "secret_key", env = "S3_SECRET")]
    s3: SecretString,
    #[secret(path = "app/sentry", env = "SENTRY_DSN")]
    sentry: SecretString,
    #[secret(path = "app/github", key = "token", env = "GITHUB_TOKEN")]
    github: SecretString,
    #[secret(path = "app/webhook", key = "secret", env = "WEBHOOK_SECRET")]
    webhook: SecretString,
    #[secret(env = "LOG_LEVEL", default = "DEFAULT-SENTINEL-8c8c")]
    log_level: SecretString,
    #[secret(path = "app/optional", key = "token", env = "OPTIONAL_TOKEN")]
    optional: Option<SecretString>,
}

fn dotenv_text() -> String {
    let mut text = String::from("# the service's secrets, before skm\n");
    for (name, value) in ENV_NAMES.iter().zip(SENTINELS) {
        text.push_str(&format!("{name}={value}\n"));
    }
    text.push_str("LOG_LEVEL=debug\nUNDECLARED_FLAG=keep-me\n");
    text
}

// ---------------------------------------------------------------------------------------------------------
// The environment of one test: a scratch directory, a backend peer, and runners for both binaries.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    #[cfg(feature = "aws")]
    Aws,
    #[cfg(feature = "vault")]
    Vault,
}

struct World {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,

    #[cfg(feature = "aws")]
    _moto: Option<skm_testing::Moto>,
    #[cfg(feature = "vault")]
    _bao: Option<skm_testing::Bao>,
    /// Everything printed without `--reveal`, for the sentinel checks.
    printed: std::sync::Mutex<String>,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl World {
    async fn new(kind: Kind) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut vars: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), dir.path().display().to_string()),
            ("NO_COLOR".into(), "1".into()),
        ];
        #[cfg(feature = "aws")]
        let mut moto = None;
        #[cfg(feature = "vault")]
        let mut bao = None;
        match kind {
            Kind::Local => {
                vars.push(("SKM_BACKEND".into(), "local".into()));
                vars.push(("SKM_LOCAL_PATH".into(), dir.path().join(".skm").display().to_string()));
                vars.push(("SKM_LOCAL_KEY".into(), "7f".repeat(32)));
            }
            #[cfg(feature = "aws")]
            Kind::Aws => {
                let m = skm_testing::Moto::start().await;
                vars.push(("SKM_BACKEND".into(), "aws".into()));
                vars.push(("AWS_REGION".into(), "eu-west-1".into()));
                vars.push(("AWS_ENDPOINT_URL".into(), m.endpoint()));
                vars.push(("AWS_ACCESS_KEY_ID".into(), "test".into()));
                vars.push(("AWS_SECRET_ACCESS_KEY".into(), "test".into()));
                vars.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
                moto = Some(m);
            }
            #[cfg(feature = "vault")]
            Kind::Vault => {
                let b = skm_testing::Bao::start().await;
                vars.push(("SKM_BACKEND".into(), "vault".into()));
                vars.push(("VAULT_ADDR".into(), b.addr()));
                vars.push(("VAULT_TOKEN".into(), b.root_token().to_string()));
                bao = Some(b);
            }
        }
        let world = World {
            dir,
            vars,

            #[cfg(feature = "aws")]
            _moto: moto,
            #[cfg(feature = "vault")]
            _bao: bao,
            printed: std::sync::Mutex::new(String::new()),
        };
        // The standalone tool reads the declarations the application exports.
        let out = world.app(&["manifest", "-o", "skm.toml"], None).await;
        assert_eq!(out.code, 0, "{out:?}");
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    async fn run(&self, exe: &Path, extra: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Out {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.vars.iter().filter(|(_, v)| !v.is_empty()).cloned())
            .envs(extra.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        drop(pipe);
        let output = child.wait_with_output().await.unwrap();
        let out = Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if !args.contains(&"--reveal") {
            let mut printed = self.printed.lock().unwrap();
            printed.push_str(&format!("$ {}\n{}\n{}\n", args.join(" "), out.stdout, out.stderr));
        }
        out
    }

    /// The standalone `skm`, with the application's manifest.
    async fn skm(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let manifest = self.path("skm.toml").display().to_string();
        self.run(
            Path::new(env!("CARGO_BIN_EXE_skm")),
            &[("SKM_MANIFEST", &manifest)],
            args,
            stdin,
        )
        .await
    }

    /// The standalone `skm` without a manifest.
    async fn bare_skm(&self, args: &[&str], stdin: Option<&str>) -> Out {
        self.run(Path::new(env!("CARGO_BIN_EXE_skm")), &[], args, stdin).await
    }

    /// The application's embedded `secrets` binary (this test binary, in its other part).
    async fn app(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let exe = std::env::current_exe().unwrap();
        self.run(&exe, &[(AS_APP, "1")], args, stdin).await
    }

    async fn listed(&self) -> BTreeSet<String> {
        let out = self.skm(&["list", "--json"], None).await;
        assert_eq!(out.code, 0, "{out:?}");
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect()
    }

    async fn reveal(&self, path: &str, key: Option<&str>) -> String {
        let mut args = vec!["get", path, "--reveal"];
        if let Some(k) = key {
            args.extend(["--key", k]);
        }
        let out = self.skm(&args, None).await;
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout.trim_end_matches('\n').to_string()
    }

    /// No sentinel value was printed by any command run without `--reveal`.
    fn assert_nothing_leaked(&self, extra: &[&str]) {
        let printed = self.printed.lock().unwrap();
        assert!(!printed.is_empty());
        for s in SENTINELS.iter().chain(extra).chain(&[DEFAULT_SENTINEL]) {
            // `5432` is a port: it may legitimately appear in a path or version; the others must not.
            if *s == "5432" {
                continue;
            }
            assert!(!printed.contains(s), "`{s}` was printed without --reveal:\n{printed}");
        }
    }
}

fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {v:#}"))
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios, each run against every backend.

/// Migrate a 10-secret .env: dry run writes 0, the real run 10, a rerun 0; a differing remote value is a
/// conflict left alone unless --force; --delete-source rewrites .env only after verifying, with a backup.
async fn migrate(kind: Kind) {
    let w = World::new(kind).await;
    w.write(".env", &dotenv_text());

    let dry = w.app(&["migrate", "--dry-run", "--json"], None).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    let plan = dry.json();
    assert_eq!(num(&plan, "/summary/create"), 10, "{plan:#}");
    assert_eq!(num(&plan, "/summary/skipped"), 2, "{plan:#}"); // LOG_LEVEL (no path), OPTIONAL_TOKEN (absent)
    assert_eq!(num(&plan, "/written"), 0);
    assert_eq!(plan["undeclared"], serde_json::json!(["UNDECLARED_FLAG"]));
    assert!(w.listed().await.is_empty(), "a dry run wrote to the backend");

    // The human plan, too, is value-free and names each secret.
    let table = w.skm(&["migrate", "--dry-run"], None).await;
    assert_eq!(table.code, 0, "{table:?}");
    for name in ENV_NAMES {
        assert!(table.stdout.contains(name), "{table:?}");
    }
    assert!(table.stdout.contains("dry run: 0 written"), "{table:?}");

    let real = w.app(&["migrate", "--json"], None).await;
    assert_eq!(real.code, 0, "{real:?}");
    let report = real.json();
    assert_eq!(num(&report, "/written"), 10, "{report:#}");
    assert_eq!(num(&report, "/puts"), 9, "{report:#}");
    assert_eq!(num(&report, "/verified"), 10, "{report:#}");
    assert_eq!(w.listed().await, PATHS.iter().map(|s| s.to_string()).collect());
    assert_eq!(w.reveal("app/db", Some("url")).await, SENTINELS[1]);
    assert_eq!(w.reveal("app/stripe", None).await, SENTINELS[3]);

    let again = w.skm(&["migrate", "--json"], None).await;
    assert_eq!(again.code, 0, "{again:?}");
    let report = again.json();
    assert_eq!(num(&report, "/written"), 0, "{report:#}");
    assert_eq!(num(&report, "/summary/unchanged"), 10, "{report:#}");

    // A differing remote value is a conflict: reported, left alone, exit 1.
    let put = w.skm(&["put", "app/stripe"], Some("rotated-remotely\n")).await;
    assert_eq!(put.code, 0, "{put:?}");
    let conflict = w.app(&["migrate", "--json"], None).await;
    assert_eq!(conflict.code, 1, "{conflict:?}");
    let report = conflict.json();
    assert_eq!(num(&report, "/summary/conflict"), 1, "{report:#}");
    assert_eq!(num(&report, "/written"), 0, "{report:#}");
    let row = report["plan"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["env"] == "STRIPE_KEY")
        .unwrap();
    assert_eq!(row["status"], "conflict");
    assert_eq!(w.reveal("app/stripe", None).await, "rotated-remotely");
    // The same for a key inside a shared secret.
    let put = w.skm(&["put", "app/db", "--key", "port"], Some("6543")).await;
    assert_eq!(put.code, 0, "{put:?}");
    assert_eq!(
        w.reveal("app/db", Some("url")).await,
        SENTINELS[1],
        "put --key kept the other keys"
    );
    let conflict = w.skm(&["migrate"], None).await;
    assert_eq!(conflict.code, 1, "{conflict:?}");
    assert!(conflict.stderr.contains("2 conflict(s) left alone"), "{conflict:?}");

    let forced = w.app(&["migrate", "--force", "--json"], None).await;
    assert_eq!(forced.code, 0, "{forced:?}");
    let report = forced.json();
    assert_eq!(num(&report, "/written"), 2, "{report:#}");
    assert_eq!(num(&report, "/verified"), 10, "{report:#}");
    assert_eq!(w.reveal("app/stripe", None).await, SENTINELS[3]);
    assert_eq!(w.reveal("app/db", Some("port")).await, "5432");

    // --delete-source: verified entries leave .env; a backup keeps the original.
    let original = w.read(".env");
    let delete = w.app(&["migrate", "--delete-source", "--json"], None).await;
    assert_eq!(delete.code, 0, "{delete:?}");
    let report = delete.json();
    assert_eq!(report["source_rewritten"], true, "{report:#}");
    let backup = w.path(report["backup"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds secrets");
    }
    let rewritten = w.read(".env");
    for (name, value) in ENV_NAMES.iter().zip(SENTINELS) {
        assert!(
            !rewritten.contains(&format!("{name}={value}")),
            "{name} still in .env:\n{rewritten}"
        );
        assert!(
            rewritten.contains(&format!("# {name}: migrated by `skm migrate`")),
            "{rewritten}"
        );
    }
    assert!(
        rewritten.contains("LOG_LEVEL=debug\nUNDECLARED_FLAG=keep-me\n"),
        "{rewritten}"
    );
    assert!(rewritten.starts_with("# the service's secrets, before skm\n"));
    // The application still resolves everything, now from the backend.
    let check = w.app(&["check"], None).await;
    assert_eq!(check.code, 0, "{check:?}");

    w.assert_nothing_leaked(&["rotated-remotely"]);
}

/// `check`: exit 0 when every declared secret resolves, 1 when one is missing or of the wrong type; the
/// embedded binary checks types, the manifest cannot.
async fn check(kind: Kind) {
    let w = World::new(kind).await;
    w.write(".env", &dotenv_text());
    let out = w.app(&["migrate", "--delete-source"], None).await;
    assert_eq!(out.code, 0, "{out:?}");

    for out in [w.app(&["check"], None).await, w.skm(&["check"], None).await] {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("all 12 declared secrets resolve"), "{out:?}");
    }
    let json = w.app(&["check", "--json"], None).await.json();
    assert_eq!(json["ok"], true);
    let fields = json["fields"].as_array().unwrap();
    let jwt = fields.iter().find(|f| f["field"] == "jwt").unwrap();
    assert_eq!(jwt["layer"], "backend", "{jwt:#}");
    assert!(jwt["location"].as_str().unwrap().contains("app/jwt"), "{jwt:#}");
    let level = fields.iter().find(|f| f["field"] == "log_level").unwrap();
    assert_eq!(level["layer"], ".env", "{level:#}");
    let optional = fields.iter().find(|f| f["field"] == "optional").unwrap();
    assert_eq!(optional["status"], "absent", "{optional:#}");

    // One secret missing: exit 1, and the JSON names it.
    let out = w.skm(&["delete", "app/sentry", "--force"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    for out in [
        w.app(&["check", "--json"], None).await,
        w.skm(&["check", "--json"], None).await,
    ] {
        assert_eq!(out.code, 1, "{out:?}");
        let json = out.json();
        assert_eq!(json["ok"], false);
        assert_eq!(json["failed"], 1);
        let sentry = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == "sentry")
            .unwrap();
        assert_eq!(sentry["status"], "missing", "{sentry:#}");
    }
    // An env var fills the gap (as it would for the application).
    let out = w
        .run(
            Path::new(env!("CARGO_BIN_EXE_skm")),
            &[
                ("SKM_MANIFEST", &w.path("skm.toml").display().to_string()),
                ("SENTRY_DSN", "from-env"),
            ],
            &["check"],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    // A value of the wrong type: only the typed (embedded) check sees it.
    let out = w.skm(&["put", "app/sentry"], Some(SENTINELS[7])).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = w.skm(&["put", "app/db", "--key", "port"], Some("not-a-port")).await;
    assert_eq!(out.code, 0, "{out:?}");
    let typed = w.app(&["check", "--json"], None).await;
    assert_eq!(typed.code, 1, "{typed:?}");
    let port = typed.json()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "db_port")
        .cloned()
        .unwrap();
    assert_eq!(port["status"], "wrong type", "{port:#}");
    assert!(
        !typed.stdout.contains("not-a-port"),
        "the wrong value was printed: {typed:?}"
    );
    let untyped = w.skm(&["check"], None).await;
    assert_eq!(untyped.code, 0, "{untyped:?}");
    assert!(untyped.stderr.contains("types were not checked"), "{untyped:?}");

    // --strict with the backend down would be a separate concern; here: usage errors exit 2.
    let out = w.bare_skm(&["check"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--manifest"), "{out:?}");
    w.assert_nothing_leaked(&[]);
}

/// `rotate` prints the new version only; `rollback` to the first version restores the old value; `get`
/// masks unless --reveal.
async fn rotate_rollback(kind: Kind) {
    let w = World::new(kind).await;
    let first = w
        .skm(&["put", "svc/api", "--json"], Some("SENTINEL-original-4242\n"))
        .await;
    assert_eq!(first.code, 0, "{first:?}");
    let first_version = first.json()["version"].as_str().unwrap().to_string();

    let masked = w.skm(&["get", "svc/api"], None).await;
    assert_eq!(masked.code, 0, "{masked:?}");
    assert!(masked.stdout.contains("********"), "{masked:?}");
    assert!(!masked.stdout.contains("SENTINEL-original-4242"), "{masked:?}");
    let masked = w.skm(&["get", "svc/api", "--json"], None).await.json();
    assert_eq!(masked["value"], "********");
    assert_eq!(masked["revealed"], false);
    assert_eq!(w.reveal("svc/api", None).await, "SENTINEL-original-4242");

    let rotated = w.skm(&["rotate", "svc/api", "--generate", "40", "--json"], None).await;
    assert_eq!(rotated.code, 0, "{rotated:?}");
    let rotated_version = rotated.json()["version"].as_str().unwrap().to_string();
    assert_ne!(rotated_version, first_version);
    let new_value = w.reveal("svc/api", None).await;
    assert_eq!(new_value.len(), 40);
    assert!(new_value.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(!rotated.stdout.contains(&new_value) && !rotated.stderr.contains(&new_value));

    let versions = w.skm(&["versions", "svc/api", "--json"], None).await;
    assert_eq!(versions.code, 0, "{versions:?}");
    let ids: Vec<String> = versions
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&first_version) && ids.contains(&rotated_version),
        "{ids:?}"
    );

    let back = w.skm(&["rollback", "svc/api", "--to", &first_version], None).await;
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(w.reveal("svc/api", None).await, "SENTINEL-original-4242");
    // `previous` is the version before the current one, on every backend.
    let back = w.skm(&["rollback", "svc/api", "--to", "previous"], None).await;
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(w.reveal("svc/api", None).await, new_value);

    // A key inside an object rotates alone.
    let out = w.skm(&["put", "svc/db", "--key", "user"], Some("app")).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = w
        .skm(
            &[
                "rotate",
                "svc/db",
                "--key",
                "password",
                "--generate",
                "32",
                "--charset",
                "hex",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(w.reveal("svc/db", Some("user")).await, "app");
    let password = w.reveal("svc/db", Some("password")).await;
    assert!(
        password.len() == 32 && password.chars().all(|c| c.is_ascii_hexdigit()),
        "{password}"
    );

    let missing = w.skm(&["rollback", "svc/api", "--to", "no-such-version"], None).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    let missing = w.skm(&["get", "svc/nothing"], None).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    w.assert_nothing_leaked(&["SENTINEL-original-4242", &new_value, &password]);
}

/// Every command, run without --reveal, prints no secret value (a sentinel in every place a value lives).
async fn sentinel(kind: Kind) {
    let w = World::new(kind).await;
    w.write(".env", &dotenv_text());
    let commands: &[&[&str]] = &[
        &["migrate", "--dry-run"],
        &["migrate", "--dry-run", "--json"],
        &["migrate", "--backup"],
        &["migrate", "--json"],
        &["check"],
        &["check", "--json"],
        &["template", "-o", "-"],
        &["policy", "--aws"],
        &["policy", "--vault"],
        &["policy", "--external-secret"],
        &["policy", "--aws", "--json"],
        &["manifest"],
        &["manifest", "--format", "json"],
        &["doctor"],
        &["doctor", "--json"],
        &["list"],
        &["list", "--json"],
        &["get", "app/db"],
        &["get", "app/db", "--json"],
        &["get", "app/db", "--key", "url"],
        &["get", "app/db", "--key", "url", "--json"],
        &["get", "app/stripe"],
        &["get", "app/stripe", "--json"],
        &["versions", "app/jwt"],
        &["versions", "app/jwt", "--json"],
        &["rotate", "app/webhook", "--key", "secret", "--generate", "24"],
        &["migrate", "--delete-source"],
        &["migrate", "--force", "--json"],
        &["check"],
    ];
    for args in commands {
        for out in [w.app(args, None).await, w.skm(args, None).await] {
            assert!(out.code == 0 || out.code == 1, "{args:?}: {out:?}");
        }
    }
    let out = w
        .skm(&["put", "app/jwt", "--key", "secret"], Some("SENTINEL-put-0909"))
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = w.skm(&["rollback", "app/jwt", "--to", "previous"], None).await;
    assert!(out.code == 0 || out.code == 1, "{out:?}");
    let out = w.skm(&["delete", "app/jwt", "--force"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    w.assert_nothing_leaked(&["SENTINEL-put-0909"]);

    // The positive control: --reveal does print the value.
    let shown = w.app(&["get", "app/s3", "--key", "secret_key", "--reveal"], None).await;
    assert_eq!(shown.stdout.trim(), SENTINELS[6]);
}

// ---------------------------------------------------------------------------------------------------------
// Backend-independent: template, policy, manifest, usage errors, doctor.

async fn template() {
    let w = World::new(Kind::Local).await;
    let out = w.app(&["template", "-o", "-"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let text = out.stdout;
    for name in ENV_NAMES {
        assert!(
            text.lines().any(|l| l == format!("{name}=")),
            "{name}= missing:\n{text}"
        );
    }
    // Optional or defaulted variables are commented out; nothing has a value.
    assert!(text.lines().any(|l| l == "# LOG_LEVEL="), "{text}");
    assert!(text.lines().any(|l| l == "# OPTIONAL_TOKEN="), "{text}");
    assert!(!text.contains(DEFAULT_SENTINEL), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.ends_with('='), "a value in the template: {line}");
    }
    assert!(text.contains("# db_url (SecretString); backend: app/db#url"), "{text}");

    // The standalone tool writes the same file from the manifest.
    let out = w.skm(&["template"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(w.read(".env.example"), text);
    // It overwrites its own file, but not a hand-written one unless --force.
    assert_eq!(w.skm(&["template"], None).await.code, 0);
    w.write(".env.example", "HAND_WRITTEN=\n");
    let out = w.skm(&["template"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(w.read(".env.example"), "HAND_WRITTEN=\n");
    assert_eq!(w.skm(&["template", "--force"], None).await.code, 0);
    assert_eq!(w.read(".env.example"), text);
}

async fn policy() {
    let w = World::new(Kind::Local).await;
    let declared: BTreeSet<String> = PATHS
        .iter()
        .map(|s| s.to_string())
        .chain(["app/optional".into()])
        .collect();

    // AWS: GetSecretValue on exactly the declared secrets, BatchGetSecretValue on `*`.
    let out = w
        .skm(
            &["policy", "--aws", "--region", "eu-west-1", "--account", "123456789012"],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["Version"], "2012-10-17");
    let statements = doc["Statement"].as_array().unwrap();
    let get = statements
        .iter()
        .find(|s| s["Action"] == "secretsmanager:GetSecretValue")
        .unwrap();
    let resources: BTreeSet<String> = get["Resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = declared
        .iter()
        .map(|p| format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{p}-??????"))
        .collect();
    assert_eq!(resources, expected);
    let batch = statements
        .iter()
        .find(|s| s["Action"] == "secretsmanager:BatchGetSecretValue")
        .unwrap();
    assert_eq!(batch["Resource"], "*");
    assert_eq!(statements.len(), 2);
    assert!(
        out.stderr.contains("BatchGetSecretValue has no resource type"),
        "{out:?}"
    );

    // Vault: read on exactly the declared paths, under data/ for KV v2, as parsed by an HCL parser.
    let out = w.app(&["policy", "--vault"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let body: hcl::Body = hcl::from_str(&out.stdout).unwrap_or_else(|e| panic!("not HCL: {e}\n{}", out.stdout));
    let mut paths = BTreeSet::new();
    for block in body.blocks() {
        assert_eq!(block.identifier(), "path");
        let label = block.labels()[0].as_str().to_string();
        let caps = block
            .body()
            .attributes()
            .find(|a| a.key() == "capabilities")
            .unwrap()
            .expr()
            .to_string();
        assert_eq!(caps.replace(char::is_whitespace, ""), "[\"read\"]", "{label}");
        paths.insert(label);
    }
    assert_eq!(paths, declared.iter().map(|p| format!("secret/data/{p}")).collect());
    let out = w
        .skm(&["policy", "--vault", "--mount", "kv", "--kv-version", "1"], None)
        .await;
    let body: hcl::Body = hcl::from_str(&out.stdout).unwrap();
    let paths: BTreeSet<String> = body.blocks().map(|b| b.labels()[0].as_str().to_string()).collect();
    assert_eq!(paths, declared.iter().map(|p| format!("kv/{p}")).collect());

    // External Secrets Operator: one data entry per declared secret, keyed by its env var name.
    let out = w
        .app(&["policy", "--external-secret", "--namespace", "prod"], None)
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let doc: Value = serde_norway::from_str(&out.stdout).unwrap_or_else(|e| panic!("not YAML: {e}\n{}", out.stdout));
    assert_eq!(doc["apiVersion"], "external-secrets.io/v1");
    assert_eq!(doc["kind"], "ExternalSecret");
    assert_eq!(doc["metadata"]["name"], "app-secrets");
    assert_eq!(doc["metadata"]["namespace"], "prod");
    let data = doc["spec"]["data"].as_array().unwrap();
    let keys: BTreeSet<String> = data
        .iter()
        .map(|d| d["remoteRef"]["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, declared);
    let names: BTreeSet<&str> = data.iter().map(|d| d["secretKey"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = ENV_NAMES.iter().copied().chain(["OPTIONAL_TOKEN"]).collect();
    assert_eq!(names, expected);
    let db_url = data.iter().find(|d| d["secretKey"] == "DATABASE_URL").unwrap();
    assert_eq!(db_url["remoteRef"]["property"], "url");
    let stripe = data.iter().find(|d| d["secretKey"] == "STRIPE_KEY").unwrap();
    assert!(stripe["remoteRef"].get("property").is_none());
}

async fn manifest() {
    let w = World::new(Kind::Local).await;
    let toml_text = w.read("skm.toml");
    assert!(
        !toml_text.contains(DEFAULT_SENTINEL),
        "a default value in the manifest:\n{toml_text}"
    );
    let json = w.app(&["manifest", "--format", "json"], None).await;
    assert_eq!(json.code, 0, "{json:?}");
    assert!(!json.stdout.contains(DEFAULT_SENTINEL));
    let doc = json.json();
    assert_eq!(doc["skm_manifest"], 2);
    assert_eq!(doc["struct"], "AppSecrets");
    let secrets = doc["secret"].as_array().unwrap();
    assert_eq!(secrets.len(), 12);
    let level = secrets.iter().find(|s| s["field"] == "log_level").unwrap();
    assert_eq!(level["has_default"], true);
    assert_eq!(level["plain"], false);
    assert!(level.get("default").is_none(), "{level:#}");
    assert!(level.get("path").is_none());
    let port = secrets.iter().find(|s| s["field"] == "db_port").unwrap();
    assert_eq!(port["type"], "u16");
    assert_eq!(port["key"], "port");
    // Round trip: the standalone tool re-exports the same declarations, in either format.
    w.write("skm.json", &json.stdout);
    let again = w
        .run(
            Path::new(env!("CARGO_BIN_EXE_skm")),
            &[],
            &["--manifest", "skm.json", "manifest", "--format", "json"],
            None,
        )
        .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json(), doc);
    let again = w.skm(&["manifest"], None).await;
    assert_eq!(again.stdout, toml_text);
    // A malformed manifest is a usage error.
    w.write(
        "bad.toml",
        "skm_manifest = 1\nstruct = \"X\"\n[[secret]]\nfield = \"a\"\nnope = 1\n",
    );
    let out = w.bare_skm(&["--manifest", "bad.toml", "check"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    // The embedded binary refuses a manifest: its declarations are compiled in.
    let out = w.app(&["--manifest", "skm.toml", "check"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
}

async fn usage_errors() {
    let w = World::new(Kind::Local).await;
    for args in [
        &["--backend", "nope", "list"][..],
        &["frobnicate"],
        &["put"],
        &["policy"],
        &["rotate", "x", "--generate", "3"],
        &["delete", "x", "--force", "--recovery-days", "7"],
    ] {
        let out = w.skm(args, None).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
    let out = w
        .run(
            Path::new(env!("CARGO_BIN_EXE_skm")),
            &[("SKM_BACKEND", "none")],
            &["list"],
            None,
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no backend selected"), "{out:?}");
    let out = w.skm(&["--help"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Exit codes"), "{out:?}");
    // migrate without a .env: a usage error, nothing written.
    let out = w.app(&["migrate"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
}

async fn doctor() {
    let w = World::new(Kind::Local).await;
    w.write(".env", &dotenv_text());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(w.path(".env"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = w.app(&["migrate"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(w.dir.path())
            .env("HOME", w.dir.path())
            .output()
            .expect("git is needed for this test");
        assert!(status.status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);

    let out = w.app(&["doctor", "--json"], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    let checks = out.json()["checks"].as_array().unwrap().clone();
    let find = |check: &str, needle: &str| {
        checks
            .iter()
            .find(|c| c["check"] == check && c["detail"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no `{check}` finding with `{needle}` in {checks:#?}"))
            .clone()
    };
    assert_eq!(find("backend", "SKM_BACKEND=local")["status"], "ok");
    assert_eq!(find("reachable", "9 of 10 declared paths exist")["status"], "ok");
    assert_eq!(find("dotenv", "NOT ignored")["status"], "fail");
    assert_eq!(find("local store", "NOT ignored")["status"], "fail");
    #[cfg(unix)]
    assert_eq!(find("dotenv", "readable by others")["status"], "warn");
    assert_eq!(find("declarations", "12 declared")["status"], "ok");

    w.write(".gitignore", "/.env\n/.skm\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(w.path(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = w.skm(&["doctor"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(".env is ignored by git"), "{out:?}");
    // `skm prepare`'s snapshots committed beside an ignored store raise no alarm (they hold no value).
    w.write(".gitignore", "/.env\n/.skm/*\n!/.skm/prepared/\n");
    std::fs::create_dir_all(w.path(".skm/prepared")).unwrap();
    w.write(".skm/prepared/App.json", "{}\n");
    git(&["add", ".skm/prepared/App.json"]);
    let out = w.skm(&["doctor"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("tracked by git"), "{out:?}");
    // A tracked .env is a failure even when ignored.
    git(&["add", "-f", ".env"]);
    let out = w.skm(&["doctor"], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("is tracked by git"), "{out:?}");
    w.assert_nothing_leaked(&[]);
}

#[cfg(feature = "vault")]
async fn doctor_vault() {
    let w = World::new(Kind::Vault).await;
    let out = w.skm(&["doctor", "--json"], None).await;
    let checks = out.json()["checks"].as_array().unwrap().clone();
    let token = checks
        .iter()
        .find(|c| c["check"] == "vault token")
        .unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(token["status"], "ok", "{out:?}");
    assert!(token["detail"].as_str().unwrap().contains("never expires"), "{out:?}");
    let reach = checks.iter().find(|c| c["check"] == "reachable").unwrap();
    assert_eq!(reach["status"], "ok", "{out:?}");
    // Unreachable: a closed port.
    let port = skm_testing::free_port().to_string();
    let addr = format!("http://127.0.0.1:{port}");
    let out = w
        .run(
            Path::new(env!("CARGO_BIN_EXE_skm")),
            &[
                ("VAULT_ADDR", &addr),
                ("SKM_MANIFEST", &w.path("skm.toml").display().to_string()),
            ],
            &["doctor", "--json"],
            None,
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
}

/// Between backends: local → the other backend, with the same verification.
#[cfg(feature = "aws")]
async fn migrate_between_backends() {
    let w = World::new(Kind::Aws).await;
    w.write(".env", &dotenv_text());
    let local_vars = [
        ("SKM_LOCAL_PATH", w.path(".skm").display().to_string()),
        ("SKM_LOCAL_KEY", "7f".repeat(32)),
    ];
    let extra: Vec<(&str, &str)> = local_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let exe = std::env::current_exe().unwrap();
    let mut with_app = extra.clone();
    with_app.push((AS_APP, "1"));
    let out = w
        .run(&exe, &with_app, &["migrate", "--to", "local", "--json"], None)
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(num(&out.json(), "/written"), 10);
    let out = w
        .run(
            &exe,
            &with_app,
            &["migrate", "--from", "local", "--to", "aws", "--json"],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(num(&report, "/written"), 10, "{report:#}");
    assert_eq!(num(&report, "/verified"), 10, "{report:#}");
    assert_eq!(w.listed().await, PATHS.iter().map(|s| s.to_string()).collect());
    let out = w
        .run(&exe, &with_app, &["migrate", "--from", "local", "--json"], None)
        .await;
    assert_eq!(num(&out.json(), "/written"), 0, "{out:?}");
    let out = w
        .run(
            &exe,
            &with_app,
            &["migrate", "--from", "local", "--delete-source"],
            None,
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = w.run(&exe, &with_app, &["migrate", "--from", "aws"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("same backend"), "{out:?}");
    w.assert_nothing_leaked(&[]);
}

/// 50 `put --key` at once on one secret (issue 17 #6): every key survives where the backend can guarantee it
/// (the local store merges under its lock, Vault KV v2 checks-and-sets and retries); elsewhere each run says
/// plainly, once, that it could lose an update.
async fn parallel_put_keys(kind: Kind) {
    let w = World::new(kind).await;
    let runs = (0..50).map(|i| {
        let key = format!("k{i:02}");
        let w = &w;
        async move { w.skm(&["put", "app/many", "--key", &key], Some(&format!("v{i}"))).await }
    });
    let outs = futures_join_all(runs).await;
    for out in &outs {
        assert_eq!(out.code, 0, "{out:?}");
    }
    let shown = w.skm(&["get", "app/many", "--json"], None).await.json();
    let keys = shown["keys"].as_array().unwrap().len();
    #[cfg(feature = "aws")]
    if kind == Kind::Aws {
        assert!(keys >= 1);
        assert!(
            outs.iter()
                .all(|o| o.stderr.matches("cannot set one key atomically").count() == 1),
            "{:?}",
            outs[0]
        );
        return;
    }
    assert_eq!(keys, 50, "lost updates: {shown:#}");
    assert!(outs.iter().all(|o| !o.stderr.contains("atomically")), "{:?}", outs[0]);
}

/// `RUST_LOG=trace` shows the AWS SDK's debug logs but never a request body: `put` would log the value.
#[cfg(feature = "aws")]
async fn aws_trace_logs_no_values() {
    let w = World::new(Kind::Aws).await;
    let manifest = w.path("skm.toml").display().to_string();
    let out = w
        .run(
            Path::new(env!("CARGO_BIN_EXE_skm")),
            &[("SKM_MANIFEST", &manifest), ("RUST_LOG", "trace")],
            &["put", "app/traced"],
            Some("SENTINEL-traced-7e7e"),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    // The positive control: the subscriber is there and the SDK logs through it.
    assert!(out.stderr.contains("aws_smithy"), "no SDK logs at all: {out:?}");
    assert!(!out.stderr.contains("SENTINEL-traced-7e7e"), "a value reached the log");
    assert!(
        !out.stderr.contains("TRACE aws_smithy"),
        "an SDK target logged at TRACE"
    );
}

/// Runs futures concurrently on this task (no extra dependency for a join).
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().map(Option::unwrap).collect()
}

/// `doctor` on a store directory holding a symlink loop finishes (it no longer follows links).
async fn doctor_symlink_loop() {
    let w = World::new(Kind::Local).await;
    let out = w.skm(&["put", "app/x"], Some("v")).await;
    assert_eq!(out.code, 0, "{out:?}");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(".", w.path(".skm/a")).unwrap();
        std::os::unix::fs::symlink(".", w.path(".skm/b")).unwrap();
    }
    let run = w.skm(&["doctor", "--json"], None);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("doctor followed the symlink loop and did not finish in 60 s");
    assert!(out.code == 0 || out.code == 1, "{out:?}");
}

// ---------------------------------------------------------------------------------------------------------
// The runner.

type TestFn = fn() -> Pin<Box<dyn Future<Output = ()>>>;

macro_rules! tests {
    ($($name:literal => $body:expr),* $(,)?) => {
        vec![$(($name, (|| Box::pin($body) as Pin<Box<dyn Future<Output = ()>>>) as TestFn)),*]
    };
}

fn all_tests() -> Vec<(&'static str, TestFn)> {
    #[allow(unused_mut)]
    let mut tests = tests![
        "template" => template(),
        "policy" => policy(),
        "manifest" => manifest(),
        "usage_errors" => usage_errors(),
        "doctor" => doctor(),
        "local::migrate" => migrate(Kind::Local),
        "local::check" => check(Kind::Local),
        "local::rotate_rollback" => rotate_rollback(Kind::Local),
        "local::sentinel" => sentinel(Kind::Local),
        "local::parallel_put_keys" => parallel_put_keys(Kind::Local),
        "doctor_symlink_loop" => doctor_symlink_loop(),
    ];
    #[cfg(feature = "aws")]
    tests.extend(tests![
        "aws::migrate" => migrate(Kind::Aws),
        "aws::check" => check(Kind::Aws),
        "aws::rotate_rollback" => rotate_rollback(Kind::Aws),
        "aws::sentinel" => sentinel(Kind::Aws),
        "aws::migrate_between_backends" => migrate_between_backends(),
        "aws::parallel_put_keys" => parallel_put_keys(Kind::Aws),
        "aws::trace_logs_no_values" => aws_trace_logs_no_values(),
    ]);
    #[cfg(feature = "vault")]
    tests.extend(tests![
        "vault::migrate" => migrate(Kind::Vault),
        "vault::check" => check(Kind::Vault),
        "vault::rotate_rollback" => rotate_rollback(Kind::Vault),
        "vault::sentinel" => sentinel(Kind::Vault),
        "vault::doctor" => doctor_vault(),
        "vault::parallel_put_keys" => parallel_put_keys(Kind::Vault),
    ]);
    tests
}

fn main() -> ExitCode {
    if std::env::var_os(AS_APP).is_some() {
        // The application's `src/bin/secrets.rs`, verbatim.
        return skm::cli::run::<AppSecrets>();
    }
    // libtest's command line, as far as cargo passes it: filters, --exact, --skip, --list; other flags ignored.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut filters, mut skips, mut exact, mut list) = (Vec::new(), Vec::new(), false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exact" => exact = true,
            "--list" => list = true,
            "--skip" => skips.extend(it.next().cloned()),
            "--test-threads" | "--format" | "--color" | "--logfile" | "--shuffle-seed" | "-Z" => {
                it.next();
            }
            flag if flag.starts_with('-') => {}
            filter => filters.push(filter.to_string()),
        }
    }
    if list {
        for (name, _) in all_tests() {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let matches = |name: &str, f: &String| if exact { name == f } else { name.contains(f.as_str()) };
    let selected: Vec<_> = all_tests()
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| matches(name, f)))
        .filter(|(name, _)| !skips.iter().any(|f| matches(name, f)))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in selected {
        let started = std::time::Instant::now();
        let result = std::panic::catch_unwind(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(test());
        });
        let secs = started.elapsed().as_secs_f32();
        match result {
            Ok(()) => println!("test {name} ... ok ({secs:.1}s)"),
            Err(_) => {
                println!("test {name} ... FAILED ({secs:.1}s)");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok");
        ExitCode::SUCCESS
    } else {
        println!("\nfailures: {}\ntest result: FAILED", failed.join(", "));
        ExitCode::FAILURE
    }
}
