//! `--backend gcp` and `--backend azure` end to end: the `skm` binary against drongo (Secret Manager) and
//! the Key Vault test server, with only each backend's documented variables in its environment.

#![cfg(all(feature = "gcp", feature = "azure"))]

use std::path::Path;
use std::process::Stdio;

use skm_testing::{Drongo, KeyVault};
use tokio::io::AsyncWriteExt;

const SENTINEL: &str = "SENTINEL-cloud-cli-5b1e";

const MANIFEST: &str = r#"skm_manifest = 1
struct = "AppSecrets"

[[secret]]
field = "jwt"
path = "auth/jwt"
key = "secret"
env = "JWT_SECRET"
type = "SecretString"

[[secret]]
field = "db"
path = "database/connection"
key = "url"
env = "DATABASE_URL"
type = "SecretString"
"#;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn skm(dir: &Path, env: &[(&str, String)], args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_skm"));
    cmd.env_clear()
        .current_dir(dir)
        .env("HOME", dir)
        .env("SKM_MANIFEST", dir.join("skm.toml"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn skm");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// put, get, list, versions, check and policy through `--backend NAME`, then through detection alone.
async fn round_trip(name: &str, env: &[(&str, String)], mapped: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("skm.toml"), MANIFEST).unwrap();
    let d = dir.path();
    let run = |args: Vec<&'static str>, stdin: Option<String>| {
        let mut full = vec!["--backend", name];
        full.extend(args);
        async move { skm(d, env, &full, stdin.as_deref()).await }
    };
    let jwt = format!("{{\"secret\":\"{SENTINEL}\"}}");
    let put = run(vec!["put", "auth/jwt"], Some(jwt.clone())).await;
    assert_eq!(put.code, 0, "{name} put: {}", put.stderr);
    assert!(!put.stdout.contains(SENTINEL) && !put.stderr.contains(SENTINEL));
    let put = run(vec!["put", "auth/jwt"], Some("{\"secret\":\"second\"}".into())).await;
    assert_eq!(put.code, 0, "{name} second put: {}", put.stderr);
    let put = run(
        vec!["put", "database/connection"],
        Some("{\"url\":\"postgres://db\"}".into()),
    )
    .await;
    assert_eq!(put.code, 0, "{name} put: {}", put.stderr);

    let get = run(vec!["get", "auth/jwt", "--key", "secret", "--reveal"], None).await;
    assert_eq!(get.code, 0, "{name} get: {}", get.stderr);
    assert!(get.stdout.contains("second"), "{name} get: {}", get.stdout);
    let masked = run(vec!["get", "auth/jwt"], None).await;
    assert_eq!(masked.code, 0, "{name} get: {}", masked.stderr);
    assert!(
        !masked.stdout.contains("second"),
        "masked get shows the value: {}",
        masked.stdout
    );

    let list = run(vec!["list", "--json"], None).await;
    assert_eq!(list.code, 0, "{name} list: {}", list.stderr);
    // GCP lists secret ids (the mapping cannot be undone); Key Vault lists the declared path it tagged.
    assert!(
        list.stdout.contains(mapped) || list.stdout.contains("auth/jwt"),
        "{name} list: {}",
        list.stdout
    );

    let versions = run(vec!["versions", "auth/jwt", "--json"], None).await;
    assert_eq!(versions.code, 0, "{name} versions: {}", versions.stderr);
    let v: serde_json::Value = serde_json::from_str(&versions.stdout).expect("versions json");
    let count = v
        .as_array()
        .map(Vec::len)
        .or_else(|| v["versions"].as_array().map(Vec::len));
    assert_eq!(count, Some(2), "{name} versions: {}", versions.stdout);

    let check = run(vec!["check", "--no-dotenv", "--json"], None).await;
    assert_eq!(check.code, 0, "{name} check: {}{}", check.stdout, check.stderr);
    let c: serde_json::Value = serde_json::from_str(&check.stdout).expect("check json");
    assert_eq!(c["fields"][0]["backend_name"], mapped, "{}", check.stdout);
    assert!(!check.stdout.contains("second"));

    // Detection alone (no --backend) picks the same backend from its variables.
    let detected = skm(d, env, &["check", "--no-dotenv", "--json"], None).await;
    let c: serde_json::Value = serde_json::from_str(&detected.stdout).expect("check json");
    assert_eq!(c["ok"], true, "{}", detected.stderr);
    assert!(
        c["backend_reason"].as_str().unwrap().contains("is set"),
        "{}",
        detected.stdout
    );
}

#[tokio::test]
async fn gcp_through_the_cli() {
    let drongo = Drongo::start().await;
    let env = [
        ("GOOGLE_CLOUD_PROJECT", "skm-cli".to_string()),
        ("SKM_GCP_ENDPOINT", drongo.endpoint()),
    ];
    round_trip("gcp", &env, "auth-jwt").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("skm.toml"), MANIFEST).unwrap();
    let policy = skm(
        dir.path(),
        &env,
        &[
            "policy",
            "--gcp",
            "--member",
            "serviceAccount:app@skm-cli.iam.gserviceaccount.com",
        ],
        None,
    )
    .await;
    assert_eq!(policy.code, 0, "{}", policy.stderr);
    let p: serde_json::Value = serde_json::from_str(&policy.stdout).expect("policy json");
    assert_eq!(p["bindings"][0]["resource"], "projects/skm-cli/secrets/auth-jwt");
    assert_eq!(p["bindings"][0]["role"], "roles/secretmanager.secretAccessor");
    assert!(p["gcloud"][1]
        .as_str()
        .unwrap()
        .contains("database-connection --project=skm-cli"));
    // `--for gcp` is the same document.
    let same = skm(
        dir.path(),
        &env,
        &[
            "policy",
            "--for",
            "gcp",
            "--member",
            "serviceAccount:app@skm-cli.iam.gserviceaccount.com",
        ],
        None,
    )
    .await;
    assert_eq!(same.stdout, policy.stdout);
    let eso = skm(dir.path(), &env, &["policy", "--external-secret", "--gcp"], None).await;
    assert_eq!(eso.code, 0, "{}", eso.stderr);
    assert!(
        eso.stdout.contains("gcpsm:\n      projectID: \"skm-cli\""),
        "{}",
        eso.stdout
    );
    assert!(eso.stdout.contains("key: \"auth-jwt\""), "{}", eso.stdout);
    let bad = skm(dir.path(), &env, &["policy", "--gcp", "--project", "p; rm -rf /"], None).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let both = skm(dir.path(), &env, &["policy", "--gcp", "--aws"], None).await;
    assert_eq!(both.code, 2, "{}", both.stderr);
}

#[tokio::test]
async fn azure_through_the_cli() {
    let kv = KeyVault::start().await;
    let env = [
        ("AZURE_KEYVAULT_URL", kv.url().to_string()),
        ("AZURE_TENANT_ID", kv.tenant_id().to_string()),
        ("AZURE_CLIENT_ID", kv.client_id().to_string()),
        ("AZURE_CLIENT_SECRET", kv.client_secret().to_string()),
        ("AZURE_AUTHORITY_HOST", kv.authority_host().to_string()),
        ("SKM_AZURE_CA_CERT", kv.ca_pem_path().display().to_string()),
    ];
    round_trip("azure", &env, "auth-jwt").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("skm.toml"), MANIFEST).unwrap();
    let policy = skm(
        dir.path(),
        &env,
        &[
            "policy",
            "--azure",
            "--keyvault",
            "my-vault",
            "--principal",
            "0000-abcd",
        ],
        None,
    )
    .await;
    assert_eq!(policy.code, 0, "{}", policy.stderr);
    let p: serde_json::Value = serde_json::from_str(&policy.stdout).expect("policy json");
    assert_eq!(p["assignments"][0]["secretName"], "auth-jwt");
    assert_eq!(p["roleDefinitionName"], "Key Vault Secrets User");
    assert!(p["az"][0].as_str().unwrap().contains("--name my-vault"));
    let eso = skm(dir.path(), &env, &["policy", "--external-secret", "--azure"], None).await;
    assert_eq!(eso.code, 0, "{}", eso.stderr);
    assert!(eso.stdout.contains("azurekv:\n      vaultUrl: "), "{}", eso.stdout);
    assert!(eso.stdout.contains("key: \"database-connection\""), "{}", eso.stdout);
    let bad = skm(
        dir.path(),
        &env,
        &["policy", "--azure", "--principal", "\"; rm -rf /"],
        None,
    )
    .await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
