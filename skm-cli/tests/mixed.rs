//! The standalone `skm` on a manifest whose fields live on two backends: AWS (moto, the default, detected
//! by `AWS_REGION`) and Vault (OpenBao, `backend = "vault"`, configured by `VAULT_ADDR` beside it).
//! `check`, `doctor`, `policy` and `migrate` each treat a routed field on its own backend.
#![cfg(all(feature = "aws", feature = "vault", feature = "local"))]

use std::path::Path;

use serde_json::{json, Value};
use skm_runtime::backend::aws::AwsBackend;
use skm_runtime::backend::{AdminBackend, PutRequest, SecretValue};
use skm_testing::{Bao, Moto};

const AWS_VALUE: &str = "SENTINEL-mixed-cli-aws-71c2";
const VAULT_VALUE: &str = "SENTINEL-mixed-cli-vault-0e4f";

const MANIFEST: &str = r#"skm_manifest = 1
struct = "Mixed"

[[secret]]
field = "api_key"
path = "svc/api"
key = "key"
env = "API_KEY"
type = "SecretString"

[[secret]]
field = "db_password"
path = "svc/db"
key = "password"
env = "DB_PASSWORD"
type = "SecretString"
backend = "vault"
"#;

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

/// Runs `skm` and checks that no value was printed.
async fn skm(dir: &Path, vars: &[(&str, String)], args: &[&str]) -> Out {
    let out = run(dir, vars, args).await;
    for sentinel in [AWS_VALUE, VAULT_VALUE] {
        assert!(
            !out.stdout.contains(sentinel) && !out.stderr.contains(sentinel),
            "leaked: {out:?}"
        );
    }
    out
}

async fn run(dir: &Path, vars: &[(&str, String)], args: &[&str]) -> Out {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_skm"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env("SKM_MANIFEST", dir.join("skm.toml"))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("run skm");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn json_of(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_doctor_policy_and_migrate_follow_routed_fields() {
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let moto = Moto::start().await;
    let bao = Bao::start().await;
    let aws = AwsBackend::builder()
        .region("eu-west-1")
        .endpoint_url(moto.endpoint())
        .static_credentials("test", "test")
        .build()
        .await
        .unwrap();
    aws.put(PutRequest::new("svc/api", SecretValue::map([("key", AWS_VALUE)])))
        .await
        .unwrap();
    let (status, body) = bao
        .api(
            "POST",
            "secret/data/svc/db",
            json!({ "data": { "password": VAULT_VALUE } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("skm.toml"), MANIFEST).unwrap();
    let vars = vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_REGION", "eu-west-1".to_string()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_TOKEN", bao.root_token().to_string()),
        ("SKM_LOCAL_PATH", dir.path().join(".skm").display().to_string()),
        ("SKM_LOCAL_KEY", "7f".repeat(32)),
        ("SKM_DOTENV", String::new()),
    ];

    // check: each field resolves on its own backend.
    let out = skm(dir.path(), &vars, &["check", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = json_of(&out);
    let fields = report["fields"].as_array().unwrap();
    let source = |id: &str| {
        fields.iter().find(|f| f["field"] == id).unwrap()["source"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(source("api_key").contains("AWS Secrets Manager"), "{report:#}");
    assert!(source("db_password").contains("Vault"), "{report:#}");
    assert_eq!(report["routed_backends"][0]["backend"], "vault", "{report:#}");

    // Without VAULT_ADDR the routed field fails, saying what would configure its backend.
    let no_vault: Vec<(&str, String)> = vars.iter().filter(|(k, _)| *k != "VAULT_ADDR").cloned().collect();
    let out = skm(dir.path(), &no_vault, &["check"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("db_password") && out.stdout.contains("VAULT_ADDR"),
        "{out:?}"
    );

    // doctor: the default backend and the routed one are both probed.
    let out = skm(dir.path(), &vars, &["doctor", "--json"]).await;
    let checks = json_of(&out)["checks"].as_array().unwrap().clone();
    let find = |check: &str, needle: &str| {
        checks
            .iter()
            .find(|c| c["check"] == check && c["detail"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no `{check}` finding with `{needle}` in {checks:#?}"))
            .clone()
    };
    assert_eq!(find("reachable", "1 of 1 declared paths exist")["status"], "ok");
    assert_eq!(find("routed backend", "1 of 1 routed paths exist")["status"], "ok");
    assert!(find("routed backend", "Vault")["detail"]
        .as_str()
        .unwrap()
        .contains("db_password"));

    // policy: each backend's document covers the fields it serves, and says which it leaves out.
    let out = skm(dir.path(), &vars, &["policy", "--for", "vault"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("svc/db") && !out.stdout.contains("svc/api"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("api_key") && out.stderr.contains("--for aws"),
        "{out:?}"
    );
    let out = skm(dir.path(), &vars, &["policy", "--for", "aws"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("svc/api") && !out.stdout.contains("svc/db"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("db_password") && out.stderr.contains("--for vault"),
        "{out:?}"
    );

    // run: the child gets both values, each from its own backend (checked by the child, not printed).
    let script = r#"case "$API_KEY/$DB_PASSWORD" in *-aws-71c2/*-vault-0e4f) exit 0;; *) exit 7;; esac"#;
    let out = skm(dir.path(), &vars, &["run", "--", "sh", "-c", script]).await;
    assert_eq!(out.code, 0, "{out:?}");

    // migrate --from aws: the routed field is read from Vault, the other from AWS, both into the local store.
    let out = skm(dir.path(), &vars, &["migrate", "--from", "aws", "--to", "local"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let local = [("SKM_BACKEND", "local".to_string())];
    let local_vars: Vec<(&str, String)> = vars.iter().cloned().chain(local).collect();
    for (path, key, value) in [("svc/api", "key", AWS_VALUE), ("svc/db", "password", VAULT_VALUE)] {
        // `--reveal` prints the value on purpose: compare it here, outside the leak check.
        let out = run(dir.path(), &local_vars, &["get", path, "--key", key, "--reveal"]).await;
        assert_eq!(out.code, 0, "{path}: exit {}, {}", out.code, out.stderr);
        assert!(out.stdout.trim_end() == value, "{path}: the migrated value differs");
    }
}
