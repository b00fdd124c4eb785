//! `skm diff` (issue 29): the declared secrets of two profiles, or of two backends, compared in memory.
//!
//! - The embedded tool (this test binary re-run as the application's `secrets` binary, see [`app_child`]) on
//!   two local-store profiles of a struct built to have one field in each state: equal, different, missing in
//!   A, missing in B, type mismatch (a `u16` that does not parse on one side), present in both (a validator
//!   fails on both sides, so the typed load cannot say whether the values parse: not compared), plus missing
//!   in both and an env-only field that is not compared. The environment and a `.env` holding a value for a
//!   field missing in the store do not leak into the comparison.
//! - The standalone `skm --manifest` between the local store and moto (AWS), the same six states (present in
//!   both: a type the standalone tool cannot parse by name), `--undeclared` on both sides, and a manifest per
//!   profile (`--manifest 'skm.{profile}.toml'`).
//!
//! Exit codes: 1 while a required field is missing on a side or an `--expect-equal` field is not equal, 0
//! otherwise, 2 for usage errors. No sentinel value is ever in stdout or stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use skm::{SecretString, Secrets};
use skm_runtime::backend::local::LocalStore;

/// Every stored value holds it; none may reach the output.
const SENTINEL: &str = "SENTINEL";

const AS_APP: &str = "SKM_DIFF_AS_APP";
const OUT_DIR: &str = "SKM_DIFF_OUT";

/// One field in each state between profiles `staging` (A) and `prod` (B).
#[derive(Secrets)]
#[secrets(prefix = "app/{profile}")]
#[allow(dead_code)]
struct DiffSecrets {
    /// Equal on both sides.
    #[secret(path = "same", key = "v")]
    same: SecretString,
    /// Different values.
    #[secret(path = "changed", key = "v")]
    changed: SecretString,
    /// Required, only in staging: missing in B fails the diff.
    #[secret(path = "only_a", key = "v")]
    only_a: SecretString,
    /// Optional, only in prod (and in the environment and `.env`, which must not count).
    #[secret(path = "only_b", key = "v", env = "ONLY_B")]
    only_b: Option<SecretString>,
    /// A number in staging, words in prod.
    #[secret(path = "port", key = "v", plain)]
    port: u16,
    /// Too short on both sides: the validator fails before the type is checked, so it is not compared.
    #[secret(path = "long", key = "v", min_len = 64)]
    long: SecretString,
    /// Nowhere.
    #[secret(path = "nowhere", key = "v")]
    nowhere: Option<SecretString>,
    /// In no store.
    #[secret(env = "ONLY_ENV")]
    only_env: Option<SecretString>,
}

/// Run as the application's `secrets` binary when [`AS_APP`] holds the arguments (JSON): the output goes to
/// files in [`OUT_DIR`] (the test harness owns this process's stdout) and the process exits with the code.
#[test]
fn app_child() {
    let Ok(args) = std::env::var(AS_APP) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = {
        let mut io = skm_cli::Io {
            stdin: &mut std::io::empty(),
            stdout: &mut out,
            stderr: &mut err,
            stdin_tty: false,
            stdout_tty: false,
            stderr_tty: false,
        };
        let argv = std::iter::once("secrets".to_string()).chain(args);
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(skm_cli::Cli::embedded::<DiffSecrets>().execute(argv, &mut io))
    };
    let dir = PathBuf::from(std::env::var(OUT_DIR).unwrap());
    std::fs::write(dir.join("stdout"), out).unwrap();
    std::fs::write(dir.join("stderr"), err).unwrap();
    std::process::exit(i32::from(code));
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
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

impl Out {
    fn from(out: Output) -> Out {
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The state of `field` in the JSON report.
    fn state(&self, field: &str) -> String {
        let doc = self.json();
        let f = doc["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == field)
            .unwrap_or_else(|| panic!("no field `{field}` in {doc:#}"))
            .clone();
        f["state"].as_str().unwrap().to_string()
    }
}

fn assert_no_sentinel(what: &str, out: &Out) {
    for (stream, s) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!s.contains(SENTINEL), "a value leaked into {what}'s {stream}: {out:?}");
    }
}

struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        // A `.env` and the environment hold the field missing in staging's store: neither may count.
        std::fs::write(
            dir.path().join(".env"),
            "ONLY_B=SENTINEL-dotenv\nONLY_ENV=SENTINEL-env\n",
        )
        .unwrap();
        Scene { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", self.dir.path().display().to_string()),
            ("SKM_LOCAL_PATH", self.path(".skm").display().to_string()),
            ("SKM_LOCAL_KEY", "5e".repeat(32)),
            ("ONLY_B", "SENTINEL-process-env".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    fn store(&self) -> LocalStore {
        let env = self.env();
        LocalStore::from_lookup(&|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).unwrap()
    }

    async fn put(&self, path: &str, value: &str) {
        self.store().put_key(path, "v", value).await.unwrap();
    }

    fn command(&self, exe: &Path, args: &[&str], extra: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(exe);
        cmd.args(args).env_clear().current_dir(self.dir.path());
        for (k, v) in self.env().iter().chain(extra) {
            cmd.env(k, v);
        }
        cmd
    }

    /// The application's `secrets` binary (this test binary as [`app_child`]).
    fn app(&self, args: &[&str]) -> Out {
        let out_dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let status = self
            .command(&exe, &["app_child", "--exact", "--nocapture", "--test-threads=1"], &[])
            .env(AS_APP, serde_json::to_string(args).unwrap())
            .env(OUT_DIR, out_dir.path())
            .output()
            .unwrap()
            .status;
        let read = |name: &str| std::fs::read_to_string(out_dir.path().join(name)).unwrap_or_default();
        Out {
            code: status.code().unwrap_or(-1),
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }

    /// The standalone `skm`.
    fn skm(&self, args: &[&str], extra: &[(&str, String)]) -> Out {
        Out::from(
            self.command(Path::new(env!("CARGO_BIN_EXE_skm")), args, extra)
                .output()
                .unwrap(),
        )
    }
}

/// Fills profile `A` and `B` of the local store (paths `app/{profile}/...`) with one field in each state.
async fn fill_profiles(scene: &Scene, a: &str, b: &str) {
    for (profile, same, changed, port, long) in [
        (a, "SENTINEL-same-1", "SENTINEL-changed-a", "8080", "SENTINEL-short"),
        (
            b,
            "SENTINEL-same-1",
            "SENTINEL-changed-b",
            "SENTINEL-port",
            "SENTINEL-short",
        ),
    ] {
        scene.put(&format!("app/{profile}/same"), same).await;
        scene.put(&format!("app/{profile}/changed"), changed).await;
        scene.put(&format!("app/{profile}/port"), port).await;
        scene.put(&format!("app/{profile}/long"), long).await;
    }
    scene.put(&format!("app/{a}/only_a"), "SENTINEL-only-a").await;
    scene.put(&format!("app/{b}/only_b"), "SENTINEL-only-b").await;
}

/// The states every report of the six-state scenes must hold.
fn assert_six_states(out: &Out) {
    assert_eq!(out.state("same"), "equal", "{out:?}");
    assert_eq!(out.state("changed"), "different", "{out:?}");
    assert_eq!(out.state("only_a"), "missing_in_b", "{out:?}");
    assert_eq!(out.state("only_b"), "missing_in_a", "{out:?}");
    assert_eq!(out.state("port"), "type_mismatch", "{out:?}");
    assert_eq!(out.state("long"), "present_in_both", "{out:?}");
    assert_eq!(out.state("nowhere"), "missing_in_both", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_local_profiles_through_the_embedded_tool() {
    let scene = Scene::new();
    fill_profiles(&scene, "staging", "prod").await;
    let diff = [
        "diff",
        "--backend",
        "local",
        "--profile",
        "staging",
        "--profile",
        "prod",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { diff.iter().chain(extra).copied().collect() };

    // JSON: every state, the shape, exit 1 for the required field missing in prod.
    let out = scene.app(&with(&["--json"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_sentinel("diff --json", &out);
    assert_six_states(&out);
    let doc = out.json();
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert_eq!(doc["struct"], "DiffSecrets");
    assert_eq!(doc["a"]["profile"], "staging");
    assert_eq!(doc["b"]["profile"], "prod");
    assert_eq!(doc["layers"], serde_json::json!(["backend"]));
    assert_eq!(doc["compared"], 7);
    assert_eq!(doc["failed"], 1);
    assert_eq!(doc["counts"]["equal"], 1);
    assert_eq!(doc["not_compared"][0]["field"], "only_env");
    let field = |id: &str| {
        doc["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == id)
            .unwrap()
            .clone()
    };
    let only_a = field("only_a");
    assert_eq!(only_a["required"], true);
    assert_eq!(only_a["ok"], false);
    assert_eq!(only_a["path_a"], "app/staging/only_a#v");
    assert_eq!(only_a["path_b"], "app/prod/only_a#v");
    assert_eq!(only_a["a"]["present"], true);
    assert_eq!(only_a["b"]["present"], false);
    let port = field("port");
    assert_eq!(port["a"]["parses"], true);
    assert_eq!(port["b"]["parses"], false);
    assert_eq!(port["type"], "u16");
    assert!(
        port["detail"].as_str().unwrap().contains("B does not parse as u16"),
        "{port:#}"
    );
    assert_eq!(field("only_b")["ok"], true, "optional: missing in A is no failure");
    assert_eq!(field("nowhere")["ok"], true);
    let long = field("long");
    assert!(
        long["a"]["parse_undecided"].as_str().unwrap().contains("validator"),
        "{long:#}"
    );
    // Keys of every field entry: the shape machines rely on.
    let keys: Vec<&str> = port.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "field",
        "env",
        "type",
        "path_a",
        "path_b",
        "required",
        "expect_equal",
        "state",
        "detail",
        "a",
        "b",
        "ok",
        "failure",
    ] {
        assert!(keys.contains(&k), "`{k}` missing from {port:#}");
    }

    // The table: the same states in words, no value.
    let out = scene.app(&diff);
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_sentinel("diff", &out);
    for words in [
        "equal",
        "different",
        "missing in A",
        "missing in B",
        "type mismatch",
        "present in both",
        "missing in both",
    ] {
        assert!(out.stdout.contains(words), "`{words}` not in {out:?}");
    }
    assert!(out.stdout.contains("`only_a` is required and missing in B"), "{out:?}");
    assert!(out.stderr.contains("only the stores were compared"), "{out:?}");

    // The required field in prod too: nothing required is missing.
    scene.put("app/prod/only_a", "SENTINEL-only-a").await;
    let out = scene.app(&diff);
    assert_eq!(out.code, 0, "{out:?}");
    assert_no_sentinel("diff", &out);

    // --expect-equal: by id or env name; a field that is not equal fails.
    assert_eq!(scene.app(&with(&["--expect-equal", "same"])).code, 0);
    assert_eq!(scene.app(&with(&["--expect-equal", "only_a"])).code, 0);
    let out = scene.app(&with(&["--expect-equal", "changed", "--json"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_sentinel("diff --expect-equal", &out);
    assert!(out.json()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field"] == "changed" && f["ok"] == false && f["expect_equal"] == true));
    assert_eq!(scene.app(&with(&["--expect-equal", "port"])).code, 1);
    assert_eq!(scene.app(&with(&["--expect-equal", "ONLY_B"])).code, 1, "missing in A");
    assert_eq!(
        scene.app(&with(&["--expect-equal", "long"])).code,
        1,
        "not compared is not equal"
    );

    // Usage errors exit 2.
    for args in [
        vec!["diff", "--backend", "local", "--profile", "staging"],
        vec!["diff", "--backend", "local"],
        vec![
            "diff",
            "--backend",
            "local",
            "--profile",
            "a",
            "--profile",
            "b",
            "--profile",
            "c",
        ],
        vec!["diff", "--backend", "local", "--profile", "prod", "--profile", "prod"],
        with(&["--expect-equal", "no_such_field"]),
        with(&["--expect-equal", "ONLY_ENV"]),
        vec!["diff", "--from", "local"],
        vec![
            "diff",
            "--profile",
            "staging",
            "--profile",
            "../x",
            "--backend",
            "local",
        ],
    ] {
        let out = scene.app(&args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert_no_sentinel("a usage error", &out);
    }
    // Another command still takes one profile.
    assert_eq!(scene.app(&["check", "--profile", "a", "--profile", "b"]).code, 2);
}

const MANIFEST: &str = r#"skm_manifest = 2
struct = "DiffSecrets"

[[secret]]
field = "same"
path = "app/same"
key = "v"
type = "SecretString"

[[secret]]
field = "changed"
path = "app/changed"
key = "v"
type = "SecretString"

[[secret]]
field = "only_a"
path = "app/only_a"
key = "v"
type = "SecretString"

[[secret]]
field = "only_b"
path = "app/only_b"
key = "v"
env = "ONLY_B"
type = "Option<SecretString>"
optional = true

[[secret]]
field = "port"
path = "app/port"
key = "v"
type = "u16"
plain = true

[[secret]]
field = "long"
path = "app/long"
key = "v"
type = "url::Url"

[[secret]]
field = "nowhere"
path = "app/nowhere"
key = "v"
type = "Option<SecretString>"
optional = true

[[secret]]
field = "only_env"
env = "ONLY_ENV"
type = "Option<SecretString>"
optional = true
"#;

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_store_against_moto_through_the_standalone_tool() {
    use skm_runtime::backend::aws::AwsBackend;
    use skm_runtime::backend::{AdminBackend, PutRequest, SecretValue};

    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let moto = skm_testing::Moto::start().await;
    let aws = AwsBackend::builder()
        .region("eu-west-1")
        .endpoint_url(moto.endpoint())
        .static_credentials("test", "test")
        .build()
        .await
        .unwrap();
    let scene = Scene::new();
    std::fs::write(scene.path("skm.toml"), MANIFEST).unwrap();
    for (path, local, remote) in [
        ("app/same", Some("SENTINEL-same"), Some("SENTINEL-same")),
        (
            "app/changed",
            Some("SENTINEL-changed-local"),
            Some("SENTINEL-changed-aws"),
        ),
        ("app/only_a", Some("SENTINEL-only-local"), None),
        ("app/only_b", None, Some("SENTINEL-only-aws")),
        ("app/port", Some("443"), Some("SENTINEL-port")),
        (
            "app/long",
            Some("https://SENTINEL.example"),
            Some("https://SENTINEL.example"),
        ),
    ] {
        if let Some(v) = local {
            scene.put(path, v).await;
        }
        if let Some(v) = remote {
            aws.put(PutRequest::new(path, SecretValue::map([("v", v)])))
                .await
                .unwrap();
        }
    }
    // Orphans: a path no field declares, on each side, and one outside the struct's prefix.
    scene.put("app/old_local", "SENTINEL-orphan").await;
    aws.put(PutRequest::new("app/old_aws", SecretValue::text("SENTINEL-orphan")))
        .await
        .unwrap();
    aws.put(PutRequest::new("elsewhere/x", SecretValue::text("SENTINEL-orphan")))
        .await
        .unwrap();

    let aws_env = vec![
        ("AWS_REGION", "eu-west-1".to_string()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("SKM_MANIFEST", scene.path("skm.toml").display().to_string()),
    ];
    let out = scene.skm(
        &["diff", "--from", "local", "--to", "aws", "--json", "--undeclared"],
        &aws_env,
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_sentinel("diff --from local --to aws", &out);
    assert_six_states(&out);
    let doc = out.json();
    assert!(doc["a"]["backend"].as_str().unwrap().contains("local"), "{doc:#}");
    assert!(doc["b"]["backend"].as_str().unwrap().contains("AWS"), "{doc:#}");
    let long = doc["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "long")
        .unwrap()
        .clone();
    assert!(long["detail"].as_str().unwrap().contains("url::Url"), "{long:#}");
    assert_eq!(doc["undeclared"]["a"]["prefix"], "app/");
    assert_eq!(
        doc["undeclared"]["a"]["paths"],
        serde_json::json!(["app/old_local"]),
        "{doc:#}"
    );
    assert_eq!(
        doc["undeclared"]["b"]["paths"],
        serde_json::json!(["app/old_aws"]),
        "{doc:#}"
    );

    // The table, with the orphans.
    let out = scene.skm(&["diff", "--from", "local", "--to", "aws", "--undeclared"], &aws_env);
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_sentinel("diff --from local --to aws", &out);
    assert!(
        out.stdout.contains("app/old_aws") && out.stdout.contains("app/old_local"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("elsewhere/x"), "{out:?}");

    // The other way round, A and B swap.
    let out = scene.skm(&["diff", "--from", "aws", "--to", "local", "--json"], &aws_env);
    assert_eq!(out.state("only_a"), "missing_in_a", "{out:?}");
    assert_eq!(out.state("only_b"), "missing_in_b", "{out:?}");
    assert_eq!(out.code, 1, "{out:?}");

    // Once the required field is in AWS too, only --expect-equal can fail the diff.
    aws.put(PutRequest::new(
        "app/only_a",
        SecretValue::map([("v", "SENTINEL-only-local")]),
    ))
    .await
    .unwrap();
    let out = scene.skm(&["diff", "--from", "local", "--to", "aws"], &aws_env);
    assert_eq!(out.code, 0, "{out:?}");
    assert_no_sentinel("diff", &out);
    let out = scene.skm(
        &[
            "diff",
            "--from",
            "local",
            "--to",
            "aws",
            "--expect-equal",
            "only_a",
            "--expect-equal",
            "same",
        ],
        &aws_env,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let out = scene.skm(
        &["diff", "--from", "local", "--to", "aws", "--expect-equal", "changed"],
        &aws_env,
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_sentinel("diff --expect-equal", &out);

    // Usage errors.
    for args in [
        vec!["diff", "--from", "local", "--to", "local"],
        vec!["diff", "--from", "local", "--to", "aws", "--backend", "local"],
        vec!["diff", "--from", "local", "--to", "none"],
    ] {
        let out = scene.skm(&args, &aws_env);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
}

/// The standalone tool diffs two profiles with one manifest per profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_local_profiles_through_the_standalone_tool() {
    let scene = Scene::new();
    fill_profiles(&scene, "staging", "prod").await;
    for profile in ["staging", "prod"] {
        let text = MANIFEST
            .replace("path = \"app/", &format!("path = \"app/{profile}/"))
            .replace(
                "struct = \"DiffSecrets\"",
                &format!("struct = \"DiffSecrets\"\nprofile = \"{profile}\""),
            )
            .replace("type = \"url::Url\"", "type = \"SecretString\"\nmin_len = 64");
        std::fs::write(scene.path(&format!("skm.{profile}.toml")), text).unwrap();
    }
    let manifest = scene.path("skm.{profile}.toml").display().to_string();
    let args = [
        "diff",
        "--backend",
        "local",
        "--manifest",
        &manifest,
        "--profile",
        "staging",
        "--profile",
        "prod",
        "--json",
    ];
    let out = scene.skm(&args, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_sentinel("diff --manifest 'skm.{profile}.toml'", &out);
    assert_eq!(out.state("same"), "equal", "{out:?}");
    assert_eq!(out.state("changed"), "different", "{out:?}");
    assert_eq!(out.state("only_a"), "missing_in_b", "{out:?}");
    assert_eq!(out.state("only_b"), "missing_in_a", "{out:?}");
    assert_eq!(out.state("port"), "type_mismatch", "{out:?}");
    // A manifest's validators are not checked by the diff: the values are compared as text.
    assert_eq!(out.state("long"), "equal", "{out:?}");

    // One manifest for two profiles cannot be right for both.
    let staging = scene.path("skm.staging.toml").display().to_string();
    let out = scene.skm(
        &[
            "diff",
            "--backend",
            "local",
            "--manifest",
            &staging,
            "--profile",
            "staging",
            "--profile",
            "prod",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("{profile}"), "{out:?}");
}
