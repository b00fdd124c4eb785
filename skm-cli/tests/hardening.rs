//! Issue 17's findings in the tool, each reproduced in process (a backend set in code, `Cli::execute` with
//! buffers): wrong files named as manifests, manifests built to inject into generated documents, wildcard
//! profiles, names built to drive the terminal, `rotate` over a JSON object, and a dry run with conflicts.

use std::path::Path;
use std::sync::Arc;

use skm::backend::{AdminBackend, Backend, FetchRequest, MemoryBackend, SecretValue};
use skm::cli::{exit, Cli, Io};
use skm::{ExposeSecret, SecretString, Secrets};

/// An application whose paths depend on the profile.
#[derive(Secrets)]
#[secrets(prefix = "app/{profile}")]
#[allow(dead_code)]
struct Profiled {
    #[secret(path = "db", key = "url", env = "DATABASE_URL")]
    db_url: SecretString,
}

struct Run {
    code: u8,
    out: String,
    err: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.out, self.err)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.out, self.err
        )
    }
}

async fn run(cli: Cli, args: &[&str]) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        stdin: &mut std::io::empty(),
        stdout: &mut out,
        stderr: &mut err,
        stdin_tty: false,
        stdout_tty: false,
        stderr_tty: false,
    };
    let mut argv = vec!["skm"];
    argv.extend(args);
    let code = cli.execute(argv, &mut io).await;
    Run {
        code,
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
    }
}

fn standalone(backend: &MemoryBackend) -> Cli {
    Cli::standalone().backend(Arc::new(backend.clone()))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

// --- #3: a wrong --manifest prints no line of the file --------------------------------------------------

#[tokio::test]
async fn a_wrong_manifest_prints_no_part_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryBackend::new();
    let cases = [
        // The reported case: a .env passed as the manifest.
        (".env", "# secrets\nDATABASE_URL=postgres://app:SENTINEL-pw-1@db/app\n"),
        (
            "quoted.toml",
            "DATABASE_URL = \"postgres://app:SENTINEL-pw-2@db/app\"\n",
        ),
        ("typed.toml", "skm_manifest = \"SENTINEL-pw-3\"\n"),
        ("keyed.json", "{\"SENTINEL-pw-4\": \"SENTINEL-pw-5\"}"),
        ("typed.json", "{\"skm_manifest\": \"SENTINEL-pw-6\"}"),
        ("broken.json", "{\"skm_manifest\": 1, \"struct\": \"SENTINEL-pw-7\n"),
    ];
    for (name, text) in cases {
        let path = write(dir.path(), name, text);
        for args in [
            &["--manifest", &path, "check"][..],
            &["--manifest", &path, "--json", "template", "-o", "-"],
        ] {
            let r = run(standalone(&memory), args).await;
            assert_eq!(r.code, exit::USAGE, "{name}: {r:?}");
            assert!(
                !r.all().contains("SENTINEL"),
                "{name}: the file's content was printed: {r:?}"
            );
            assert!(r.err.contains("invalid manifest"), "{name}: {r:?}");
        }
    }
    // The position is still given.
    let path = dir.path().join(".env").display().to_string();
    let r = run(standalone(&memory), &["--manifest", &path, "check"]).await;
    assert!(r.err.contains("line 2"), "{r:?}");
}

// --- #4: manifests are validated, generated documents cannot be injected into ---------------------------

const INJECTING: &str = r#"skm_manifest = 1
struct = "App\napiVersion: evil/v1"

[[secret]]
field = "db_url"
path = "app/db"
key = "url\nINJECTED_KEY=1"
env = "DATABASE_URL\nINJECTED_ENV=1"
type = "SecretString"

[[secret]]
field = "jwt"
path = "../sys/policy"
env = "jwt-secret"
type = "SecretString"
"#;

#[tokio::test]
async fn an_injecting_manifest_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "skm.toml", INJECTING);
    let memory = MemoryBackend::new();
    for args in [
        &["template", "-o", "-"][..],
        &["policy", "--vault"],
        &["policy", "--external-secret"],
        &["policy", "--aws"],
        &["manifest"],
    ] {
        let mut argv = vec!["--manifest", path.as_str()];
        argv.extend(args);
        let r = run(standalone(&memory), &argv).await;
        assert_eq!(r.code, exit::USAGE, "{args:?}: {r:?}");
        assert!(r.out.is_empty(), "{args:?}: a document was written: {r:?}");
        for line in r.err.lines() {
            assert!(
                !line.starts_with("INJECTED") && !line.starts_with("apiVersion"),
                "{r:?}"
            );
        }
        for problem in ["`struct`", "`key`", "invalid `env` name", "`..` segment", "jwt-secret"] {
            assert!(r.err.contains(problem), "{args:?}: `{problem}` not reported: {r:?}");
        }
    }
}

#[tokio::test]
async fn a_wildcard_profile_is_refused_by_the_embedded_tool() {
    let memory = MemoryBackend::new();
    for profile in ["*", "+", "a/b", "..", "${x}"] {
        for args in [
            &["policy", "--vault"][..],
            &["policy", "--aws"],
            &["policy", "--external-secret"],
            &["template", "-o", "-"],
            &["manifest"],
            &["check", "--no-dotenv"],
            &["migrate", "--dry-run"],
        ] {
            let mut argv = vec!["--profile", profile];
            argv.extend(args);
            let cli = Cli::embedded::<Profiled>().backend(Arc::new(memory.clone()));
            let r = run(cli, &argv).await;
            assert_eq!(r.code, exit::USAGE, "--profile {profile} {args:?}: {r:?}");
            assert!(r.err.contains("invalid profile"), "{r:?}");
            assert!(
                !r.out.contains("app/"),
                "--profile {profile} {args:?} printed paths: {r:?}"
            );
        }
    }
    // A good profile still works.
    let cli = Cli::embedded::<Profiled>().backend(Arc::new(memory.clone()));
    let r = run(cli, &["--profile", "prod", "policy", "--vault"]).await;
    assert_eq!(r.code, exit::OK, "{r:?}");
    assert!(r.out.contains("secret/data/app/prod/db"), "{r:?}");
}

// --- Smaller findings ---------------------------------------------------------------------------------

#[tokio::test]
async fn names_from_a_backend_cannot_drive_the_terminal() {
    let memory = MemoryBackend::new();
    let evil_path = "app/\x1b[2J\x1b]0;pwned\x07x";
    memory.insert(evil_path, SecretValue::map([("k\x1b[31m\nfake: line", "v")]));
    memory.insert("app/ok", SecretValue::map([("user\u{202e}", "v")]));
    for args in [
        &["list"][..],
        &["versions", evil_path],
        &["get", evil_path],
        &["get", "app/ok"],
        &["get", evil_path, "--key", "nope"],
        &["get", "app/ok", "--key", "nope"],
        &["rotate", evil_path, "--generate", "24"],
    ] {
        let r = run(standalone(&memory), args).await;
        let all = r.all();
        assert!(
            !all.contains('\x1b') && !all.contains('\x07'),
            "{args:?} printed a control sequence: {r:?}"
        );
        assert!(!all.contains('\u{202e}'), "{args:?} printed a bidi override: {r:?}");
        assert!(!all.lines().any(|l| l.starts_with("fake: line")), "{args:?}: {r:?}");
    }
    // JSON output stays exact: serde escapes, a machine reads the real name back.
    let r = run(standalone(&memory), &["list", "--json"]).await;
    let listed: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert!(
        listed.as_array().unwrap().iter().any(|e| e["path"] == evil_path),
        "{r:?}"
    );
}

#[tokio::test]
async fn rotate_without_a_key_keeps_a_json_object_unless_forced() {
    let memory = MemoryBackend::new();
    memory.insert(
        "app/db",
        SecretValue::map([("user", "app"), ("password", "SENTINEL-old")]),
    );
    let r = run(standalone(&memory), &["rotate", "app/db", "--generate", "24"]).await;
    assert_eq!(r.code, exit::FAILED, "{r:?}");
    assert!(r.err.contains("--key") && r.err.contains("--force"), "{r:?}");
    assert!(r.err.contains("password") && !r.all().contains("SENTINEL"), "{r:?}");
    let versions = memory.versions("app/db").await.unwrap();
    assert_eq!(versions.len(), 1, "rotate wrote although it refused");

    let r = run(
        standalone(&memory),
        &["rotate", "app/db", "--generate", "24", "--force"],
    )
    .await;
    assert_eq!(r.code, exit::OK, "{r:?}");
    let now = memory
        .fetch(&[FetchRequest::current("app/db")])
        .await
        .remove(0)
        .unwrap();
    match now.value {
        SecretValue::Text(t) => assert_eq!(t.expose_secret().len(), 24),
        other => panic!("{other:?}"),
    }
    // A plain text secret rotates as before.
    memory.insert("app/token", SecretValue::text("SENTINEL-text"));
    let r = run(standalone(&memory), &["rotate", "app/token", "--generate", "24"]).await;
    assert_eq!(r.code, exit::OK, "{r:?}");
}

#[tokio::test]
async fn a_dry_run_with_conflicts_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "skm.toml",
        "skm_manifest = 1\nstruct = \"App\"\n[[secret]]\nfield = \"jwt\"\npath = \"app/jwt\"\nkey = \"secret\"\n\
         env = \"JWT_SECRET\"\ntype = \"SecretString\"\n",
    );
    let dotenv = write(dir.path(), ".env", "JWT_SECRET=SENTINEL-local\n");
    let memory = MemoryBackend::new();
    let dry = ["--manifest", &manifest, "migrate", "--from", &dotenv, "--dry-run"];
    // Nothing remote yet: a clean plan.
    let r = run(standalone(&memory), &dry).await;
    assert_eq!(r.code, exit::OK, "{r:?}");
    memory.insert("app/jwt", SecretValue::map([("secret", "SENTINEL-remote")]));
    let r = run(standalone(&memory), &dry).await;
    assert_eq!(
        r.code,
        exit::FAILED,
        "a dry run with a conflict exited {}: {r:?}",
        r.code
    );
    assert!(r.err.contains("1 conflict(s)"), "{r:?}");
    let mut json = dry.to_vec();
    json.push("--json");
    let r = run(standalone(&memory), &json).await;
    assert_eq!(r.code, exit::FAILED, "{r:?}");
    let report: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(report["ok"], false, "{report:#}");
    // --force: the real run would overwrite, so the dry run passes.
    let mut forced = dry.to_vec();
    forced.push("--force");
    assert_eq!(run(standalone(&memory), &forced).await.code, exit::OK);
    assert!(!r.all().contains("SENTINEL"));
}

// --- Second review, #9: a generated value has at least 128 bits of entropy unless --allow-weak ---------

#[tokio::test]
async fn rotate_refuses_fewer_than_128_bits_unless_allowed() {
    let memory = MemoryBackend::new();
    memory.insert("app/token", SecretValue::text("SENTINEL-weak-before"));
    // 8 hex digits: 32 bits. Refused before anything is written, and the output says the bits.
    let weak = ["rotate", "app/token", "--generate", "8", "--charset", "hex"];
    let r = run(standalone(&memory), &weak).await;
    assert_eq!(r.code, exit::USAGE, "{r:?}");
    assert!(r.err.contains("32 bits"), "the bits are named: {r:?}");
    assert!(
        r.err.contains("--allow-weak") && r.err.contains("--generate 32"),
        "{r:?}"
    );
    assert_eq!(
        memory.versions("app/token").await.unwrap().len(),
        1,
        "a refused rotate wrote"
    );
    // 21 alphanumerics are 125 bits: still refused; 22 are 130.
    let r = run(standalone(&memory), &["rotate", "app/token", "--generate", "21"]).await;
    assert_eq!(r.code, exit::USAGE, "{r:?}");
    assert!(r.err.contains("125 bits") && r.err.contains("--generate 22"), "{r:?}");
    let r = run(standalone(&memory), &["rotate", "app/token", "--generate", "22"]).await;
    assert_eq!(r.code, exit::OK, "{r:?}");
    assert!(r.all().contains("130 bits"), "{r:?}");

    // --allow-weak writes it, and still says how weak it is.
    let mut allowed = weak.to_vec();
    allowed.push("--allow-weak");
    let r = run(standalone(&memory), &allowed).await;
    assert_eq!(r.code, exit::OK, "{r:?}");
    assert!(r.all().contains("32 bits"), "{r:?}");
    let now = memory
        .fetch(&[FetchRequest::current("app/token")])
        .await
        .remove(0)
        .unwrap();
    match now.value {
        SecretValue::Text(t) => assert_eq!(t.expose_secret().len(), 8),
        other => panic!("{other:?}"),
    }
    // JSON output carries the figure too.
    let r = run(
        standalone(&memory),
        &["rotate", "app/token", "--generate", "32", "--json"],
    )
    .await;
    assert_eq!(r.code, exit::OK, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(doc["entropy_bits"], 190, "{doc:#}");
    assert!(!r.all().contains("SENTINEL"), "{r:?}");
}
