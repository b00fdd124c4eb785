//! `--backend gcp` and `--backend azure` end to end: the `skm` binary against drongo (Secret Manager) and
//! the Key Vault test server, with only each backend's documented variables in its environment; and
//! `skm migrate --to sops`, whose files the real `sops` tool decrypts.

#![cfg(all(feature = "gcp", feature = "azure", feature = "sops"))]

use std::path::Path;
use std::process::Stdio;

use skm_testing::{AgeKey, Drongo, KeyVault, Sops};
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

/// `skm migrate --to sops` from a `.env`: one encrypted file per path, to the recipients of
/// `SOPS_AGE_RECIPIENTS`, that `sops -d` decrypts to exactly the migrated values, that skm loads back, and
/// whose lines a reviewer diffs by key: a second migration with one changed value changes that key's line
/// (and sops's MAC and date), no other.
#[tokio::test]
async fn migrate_to_sops_writes_files_that_sops_decrypts_and_that_diff_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("skm.toml"), MANIFEST).unwrap();
    let key = AgeKey::generate();
    let key_file = key.write(&d.join("age.txt"));
    let env = [
        ("SKM_BACKEND", "sops".to_string()),
        ("SKM_SOPS_DIR", d.join("secrets").display().to_string()),
        ("SOPS_AGE_RECIPIENTS", key.recipient.clone()),
        ("SOPS_AGE_KEY_FILE", key_file.display().to_string()),
    ];
    let db = "postgres://app:SENTINEL-db-77@db/app";
    std::fs::write(d.join(".env"), format!("JWT_SECRET={SENTINEL}\nDATABASE_URL={db}\n")).unwrap();

    let migrated = skm(d, &env, &["migrate", "--to", "sops"], None).await;
    assert_eq!(migrated.code, 0, "{}{}", migrated.stdout, migrated.stderr);
    assert!(!format!("{}{}", migrated.stdout, migrated.stderr).contains("SENTINEL"));

    let sops = Sops::locate();
    let files = [
        d.join("secrets/auth/jwt.yaml"),
        d.join("secrets/database/connection.yaml"),
    ];
    for (file, (k, v)) in files.iter().zip([("secret", SENTINEL), ("url", db)]) {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!text.contains("SENTINEL"), "plaintext in {}:\n{text}", file.display());
        // One line per key: what a reviewer sees in a pull request.
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{k}: ENC[AES256_GCM,data:"))),
            "{}:\n{text}",
            file.display()
        );
        let out = sops.decrypt(file, &key_file);
        assert!(
            out.status.success(),
            "sops -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plain: serde_norway::Value = serde_norway::from_slice(&out.stdout).unwrap();
        assert_eq!(plain[k].as_str(), Some(v), "{}", file.display());
    }
    let check = skm(d, &env, &["check", "--no-dotenv", "--json"], None).await;
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);

    // A changed value: refused without --force (a conflict), then written; only its key's line changes.
    let before = std::fs::read_to_string(&files[1]).unwrap();
    let jwt_before = std::fs::read_to_string(&files[0]).unwrap();
    let db2 = "postgres://app:SENTINEL-db-88@db/app";
    std::fs::write(d.join(".env"), format!("JWT_SECRET={SENTINEL}\nDATABASE_URL={db2}\n")).unwrap();
    let refused = skm(d, &env, &["migrate", "--to", "sops"], None).await;
    assert_ne!(refused.code, 0, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(
        std::fs::read_to_string(&files[1]).unwrap(),
        before,
        "a refused migration wrote"
    );
    let forced = skm(d, &env, &["migrate", "--to", "sops", "--force"], None).await;
    assert_eq!(forced.code, 0, "{}{}", forced.stdout, forced.stderr);
    let after = std::fs::read_to_string(&files[1]).unwrap();
    let changed: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .map(|l| l.split(':').next().unwrap_or(l).trim())
        .collect();
    // `lastmodified` is to the second: it may not have moved.
    assert!(
        changed.contains(&"url") && changed.iter().all(|k| ["url", "lastmodified", "mac"].contains(k)),
        "{changed:?}:\n{after}"
    );
    assert_eq!(
        std::fs::read_to_string(&files[0]).unwrap(),
        jwt_before,
        "an unchanged path's file was rewritten"
    );
    let out = sops.decrypt(&files[1], &key_file);
    let plain: serde_norway::Value = serde_norway::from_slice(&out.stdout).unwrap();
    assert_eq!(plain["url"].as_str(), Some(db2));
}
