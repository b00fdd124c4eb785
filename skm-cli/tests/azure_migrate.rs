//! Issue 14's acceptance: `skm migrate --to azure`, the real `skm` binary with only the Azure variables in
//! its environment, writes into the Key Vault test server secrets that Microsoft's own Python client
//! (`azure-keyvault-secrets`, `azure-identity`) reads back exactly, and that skm's own load reads back too.
//! Both sources are covered: a `.env` file, and another backend (the local store, `--from local`).
//!
//! The peers are required: a missing `.venv` Python or Azure package fails the test, it never skips.

#![cfg(all(feature = "azure", feature = "local"))]

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use skm::backend::azure::AzureBackend;
use skm::{ExposeSecret, Loader, SecretString, Secrets};
use skm_testing::KeyVault;

/// The declarations, as `skm manifest` exports them: four secrets over three paths (two keys share one).
const MANIFEST: &str = r#"skm_manifest = 1
struct = "AppSecrets"

[[secret]]
field = "jwt"
path = "auth/jwt"
key = "secret"
env = "JWT_SECRET"
type = "SecretString"

[[secret]]
field = "db_url"
path = "database/connection"
key = "url"
env = "DATABASE_URL"
type = "SecretString"

[[secret]]
field = "db_password"
path = "database/connection"
key = "password"
env = "DATABASE_PASSWORD"
type = "SecretString"

[[secret]]
field = "stripe"
path = "payments/stripe-key"
env = "STRIPE_KEY"
type = "SecretString"
"#;

/// The same declarations as a struct, for skm's own load.
#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET")]
    jwt: SecretString,
    #[secret(path = "database/connection", key = "url", env = "DATABASE_URL")]
    db_url: SecretString,
    #[secret(path = "database/connection", key = "password", env = "DATABASE_PASSWORD")]
    db_password: SecretString,
    #[secret(path = "payments/stripe-key", env = "STRIPE_KEY")]
    stripe: SecretString,
}

/// `(env var, value)`: sentinels, with characters that JSON and `.env` quoting must carry unchanged.
const VALUES: [(&str, &str); 4] = [
    ("JWT_SECRET", "SENTINEL-jwt-a1b2 with spaces"),
    ("DATABASE_URL", "postgres://app:p%40ss@db:5432/app?sslmode=require"),
    ("DATABASE_PASSWORD", "SENTINEL-pw-\"quoted\"-'single'-\\back"),
    ("STRIPE_KEY", "sk_live_SENTINEL-stripe-9f9f"),
];

fn dotenv(values: &[(&str, &str)]) -> String {
    let mut text = String::from("# before skm\n");
    for (name, value) in values {
        // Single quotes keep the value literal in a .env file; a single quote inside is written as '\''
        // would be in a shell, which .env parsers do not share, so use double quotes with escapes.
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("{name}=\"{escaped}\"\n"));
    }
    text
}

fn azure_env(kv: &KeyVault) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_KEYVAULT_URL", kv.url()),
        ("AZURE_TENANT_ID", kv.tenant_id().to_string()),
        ("AZURE_CLIENT_ID", kv.client_id().to_string()),
        ("AZURE_CLIENT_SECRET", kv.client_secret().to_string()),
        ("AZURE_AUTHORITY_HOST", kv.authority_host()),
        ("SKM_AZURE_CA_CERT", kv.ca_pem_path().display().to_string()),
    ]
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Runs the built `skm` binary in `dir` with exactly `env` (plus HOME and the manifest).
async fn skm(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_skm"));
    cmd.env_clear()
        .current_dir(dir)
        .env("HOME", dir)
        .env("SKM_MANIFEST", dir.join("skm.toml"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run the skm binary");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `code` with `client`, Microsoft's `SecretClient` for this server (trusting its CA); returns stdout.
async fn python(kv: &KeyVault, code: &str) -> String {
    let prelude = r#"
import os, json
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
url, ca = os.environ["KV_URL"], os.environ["KV_CA"]
cred = ClientSecretCredential(os.environ["KV_TENANT"], os.environ["KV_CLIENT"], os.environ["KV_SECRET"],
                              authority=url, disable_instance_discovery=True, connection_verify=ca)
client = SecretClient(url, cred, verify_challenge_resource=False, connection_verify=ca)
"#;
    let out = tokio::process::Command::new(skm_testing::venv_bin("python"))
        .arg("-c")
        .arg(format!("{prelude}\n{code}"))
        .env("KV_URL", kv.url())
        .env("KV_TENANT", kv.tenant_id())
        .env("KV_CLIENT", kv.client_id())
        .env("KV_SECRET", kv.client_secret())
        .env("KV_CA", kv.ca_pem_path())
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "Microsoft's Python client failed (is azure-keyvault-secrets in .venv? run ./scripts/test):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What Microsoft's client reads: each Key Vault name's value, as one JSON object.
async fn read_with_microsofts_client(kv: &KeyVault) -> Value {
    let out = python(
        kv,
        r#"
names = ["auth-jwt", "database-connection", "payments-stripe-key"]
print(json.dumps({n: client.get_secret(n).value for n in names}))
"#,
    )
    .await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("python output ({e}): {out}"))
}

/// The values Microsoft's client read are exactly the migrated ones: whole values as written, keyed
/// values as properties of one JSON object per path.
fn assert_exact(read: &Value, values: &[(&str, &str)]) {
    let v = |name: &str| values.iter().find(|(n, _)| *n == name).unwrap().1;
    let jwt: Value = serde_json::from_str(read["auth-jwt"].as_str().unwrap()).expect("auth-jwt is a JSON object");
    assert_eq!(jwt, serde_json::json!({ "secret": v("JWT_SECRET") }));
    let db: Value = serde_json::from_str(read["database-connection"].as_str().unwrap()).expect("a JSON object");
    assert_eq!(
        db,
        serde_json::json!({ "url": v("DATABASE_URL"), "password": v("DATABASE_PASSWORD") })
    );
    assert_eq!(read["payments-stripe-key"], v("STRIPE_KEY"));
}

/// skm's own load, in process, with the backend the same variables configure.
async fn load_with_skm(kv: &KeyVault) -> AppSecrets {
    let backend = AzureBackend::builder()
        .vault_url(kv.url())
        .authority_host(kv.authority_host())
        .ca_cert(kv.ca_pem_path())
        .client_secret(kv.tenant_id(), kv.client_id(), kv.client_secret())
        .build()
        .expect("backend");
    Loader::new()
        .backend(backend)
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .load::<AppSecrets>()
        .await
        .unwrap_or_else(|e| panic!("skm's load failed: {e}"))
}

fn assert_loaded(s: &AppSecrets, values: &[(&str, &str)]) {
    let v = |name: &str| values.iter().find(|(n, _)| *n == name).unwrap().1;
    assert_eq!(s.jwt.expose_secret(), v("JWT_SECRET"));
    assert_eq!(s.db_url.expose_secret(), v("DATABASE_URL"));
    assert_eq!(s.db_password.expose_secret(), v("DATABASE_PASSWORD"));
    assert_eq!(s.stripe.expose_secret(), v("STRIPE_KEY"));
}

fn assert_no_value_in(out: &Out, values: &[(&str, &str)]) {
    for (_, value) in values {
        assert!(
            !out.stdout.contains(value) && !out.stderr.contains(value),
            "a value leaked into skm's output:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[tokio::test]
async fn migrate_from_dotenv_to_azure_is_read_by_microsofts_client_and_by_skm() {
    let kv = KeyVault::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("skm.toml"), MANIFEST).unwrap();
    std::fs::write(d.join(".env"), dotenv(&VALUES)).unwrap();
    let env = azure_env(&kv);

    let out = skm(d, &env, &["migrate", "--to", "azure", "--json"]).await;
    assert_eq!(out.code, 0, "migrate failed:\n{}\n{}", out.stdout, out.stderr);
    assert_no_value_in(&out, &VALUES);
    let report = out.json();
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        report["to"]
            .as_str()
            .unwrap()
            .starts_with("Azure Key Vault https://127.0.0.1:"),
        "{report:#}"
    );
    // Four values in one write per path (the two database keys share one secret); each read back and compared.
    assert_eq!(report["written"], 4, "{report:#}");
    assert_eq!(report["puts"], 3, "{report:#}");
    assert_eq!(report["verified"], 4, "{report:#}");
    let mut names = kv.secret_names();
    names.sort();
    assert_eq!(names, ["auth-jwt", "database-connection", "payments-stripe-key"]);

    assert_exact(&read_with_microsofts_client(&kv).await, &VALUES);
    assert_loaded(&load_with_skm(&kv).await, &VALUES);

    // A second run finds everything in place and writes nothing.
    let again = skm(d, &env, &["migrate", "--to", "azure", "--json"]).await;
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(again.json()["written"], 0, "{}", again.stdout);
    assert_eq!(again.json()["summary"]["unchanged"], 4, "{}", again.stdout);

    // A path whose Key Vault name is held by a soft-deleted secret: the write fails and says how to free it.
    python(&kv, "client.begin_delete_secret('payments-stripe-key').result()").await;
    let failed = skm(d, &env, &["migrate", "--to", "azure", "--json"]).await;
    assert_ne!(failed.code, 0, "{}\n{}", failed.stdout, failed.stderr);
    assert_no_value_in(&failed, &VALUES);
    let text = format!("{}{}", failed.stdout, failed.stderr);
    for needle in [
        "payments/stripe-key",
        "payments-stripe-key",
        "soft-deleted",
        "recover",
        "purge",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[tokio::test]
async fn migrate_from_the_local_store_to_azure_is_read_by_microsofts_client_and_by_skm() {
    let kv = KeyVault::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("skm.toml"), MANIFEST).unwrap();
    std::fs::write(d.join(".env"), dotenv(&VALUES)).unwrap();
    let local = [
        ("SKM_LOCAL_PATH", d.join(".skm").display().to_string()),
        ("SKM_LOCAL_KEY", "5a".repeat(32)),
    ];

    // First into the local store (only its variables set)...
    let out = skm(d, &local, &["migrate", "--to", "local", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.json()["written"], 4, "{}", out.stdout);
    // ...then from it, with nothing left in the .env, into Key Vault.
    std::fs::write(d.join(".env"), "# emptied\n").unwrap();
    let mut env = azure_env(&kv);
    env.extend(local.iter().cloned());
    let out = skm(d, &env, &["migrate", "--from", "local", "--to", "azure", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_no_value_in(&out, &VALUES);
    let report = out.json();
    assert!(
        report["from"].as_str().unwrap().starts_with("local store"),
        "{report:#}"
    );
    assert_eq!(report["written"], 4, "{report:#}");
    assert_eq!(report["puts"], 3, "{report:#}");
    assert_eq!(report["verified"], 4, "{report:#}");

    assert_exact(&read_with_microsofts_client(&kv).await, &VALUES);
    assert_loaded(&load_with_skm(&kv).await, &VALUES);
}
