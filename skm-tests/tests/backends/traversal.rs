//! Path traversal (finding #10 of issue 17): every admin operation of every backend, fed `..`, absolute
//! paths, percent-encoded dots, backslashes and NUL, either refuses the path or stays inside the backend's
//! namespace, and never reaches another secret.
//!
//! Each backend test runs the same [`drive`] over the hostile inputs, then checks what only that backend can
//! show: the files of the local store, the requests that reached OpenBao (through a recording proxy) and
//! its policies, the AWS operations (names travel in the JSON body, never in the URL), the Secret Manager
//! and Key Vault URLs. Every backend also holds a `canary` secret that many inputs normalise to
//! (`../canary`, `a/../canary`, `%2e%2e/canary`...): a backend that resolved them would overwrite or delete
//! it. The servers are started by `skm_testing`, which panics with a clear message when a peer is missing.

use skm::backend::{AdminBackend, DeleteMode, FetchRequest, FetchResult, PutRequest, SecretValue};
use skm::ExposeSecret;

const CANARY: &str = "SENTINEL-traversal-canary-61c7";

/// Paths that name something outside the namespace, or the canary, if a backend resolved them.
const HOSTILE: &[&str] = &[
    "..",
    "../..",
    "../x",
    "a/../../b",
    "/etc/passwd",
    "/sys/policy",
    "../../sys/policy",
    "../../../sys/policy",
    "../../../../sys/policy",
    "../../../../../../etc/passwd",
    "%2e%2e/x",
    "%2E%2E/%2E%2E/sys/policy",
    "..%2f",
    "..%2fsys%2fpolicy",
    "%2e%2e%2fcanary",
    "a\\..\\..\\b",
    "..\\canary",
    "x\0y",
    "\0",
    "canary\0",
    "./canary",
    "../canary",
    "a/../canary",
    "x/./../canary",
    "canary/.",
    "canary/..",
    "%2e%2e/canary",
    ".%2e/canary",
];

/// What the operations did with one input, for the report and the backend-specific checks.
#[derive(Debug, Default)]
struct Outcome {
    /// Inputs a put accepted (as a literal name inside the namespace, checked per backend).
    accepted: Vec<String>,
    /// Inputs refused, with the error (checked to name no value).
    refused: usize,
}

fn text(r: &FetchResult) -> String {
    match &r.as_ref().unwrap_or_else(|e| panic!("expected a value, got {e}")).value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

fn value_for(i: usize) -> String {
    format!("SENTINEL-traversal-input-{i}")
}

/// Runs put, fetch, versions, list, delete (default and force), and `rollback` where the backend has one,
/// on every hostile input. A put that succeeds must read back under the same name; nothing may touch the
/// canary; no error shows a value.
async fn drive<B, F, Fut>(backend: &B, rollback: F) -> Outcome
where
    B: AdminBackend + ?Sized,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<String, skm::backend::AdminError>>,
{
    backend
        .put(PutRequest::new("canary", SecretValue::text(CANARY)))
        .await
        .expect("put canary");
    let mut outcome = Outcome::default();
    for (i, &input) in HOSTILE.iter().enumerate() {
        let value = value_for(i);
        let no_value = |what: &str, e: &dyn std::fmt::Display| {
            let shown = e.to_string();
            assert!(
                !shown.contains(&value) && !shown.contains(CANARY),
                "{what} {input:?}: an error shows a value: {shown}"
            );
        };
        match backend.put(PutRequest::new(input, SecretValue::text(&value))).await {
            Ok(_) => {
                outcome.accepted.push(input.to_string());
                let r = backend.fetch(&[FetchRequest::current(input)]).await.remove(0);
                assert_eq!(text(&r), value, "put {input:?} then fetch: another secret answered");
                let versions = backend.versions(input).await;
                assert!(versions.is_ok_and(|v| !v.is_empty()), "versions {input:?} after a put");
                if let Err(e) = rollback(input.to_string()).await {
                    no_value("rollback", &e);
                }
            }
            Err(e) => {
                outcome.refused += 1;
                no_value("put", &e);
                if let Err(e) = backend.fetch(&[FetchRequest::current(input)]).await.remove(0) {
                    no_value("fetch", &e);
                }
                if let Err(e) = backend.versions(input).await {
                    no_value("versions", &e);
                }
                if let Err(e) = rollback(input.to_string()).await {
                    no_value("rollback", &e);
                }
            }
        }
        // What a listing shows is the backend's naming (GCP and Azure map `/` to `-`); where its requests
        // went is checked per backend.
        if let Err(e) = backend.list(input).await {
            no_value("list", &e);
        }
        if let Err(e) = backend.delete(input, DeleteMode::Default).await {
            no_value("delete", &e);
        }
        if let Err(e) = backend.delete(input, DeleteMode::Force).await {
            no_value("delete --force", &e);
        }
        let canary = backend.fetch(&[FetchRequest::current("canary")]).await.remove(0);
        assert_eq!(
            canary.as_ref().ok().map(|_| text(&canary)).as_deref(),
            Some(CANARY),
            "the operations on {input:?} reached the secret `canary`"
        );
    }
    // What list reports is inside the namespace too: each path is one the backend was asked to write.
    let listed = backend.list("").await.expect("list everything");
    assert!(listed.iter().any(|e| e.path == "canary"), "{listed:?}");
    println!(
        "{}: {} inputs, {} accepted as literal names, {} refused",
        backend.name(),
        HOSTILE.len(),
        outcome.accepted.len(),
        outcome.refused
    );
    outcome
}

async fn no_rollback(_: String) -> Result<String, skm::backend::AdminError> {
    Ok(String::new())
}

#[tokio::test]
async fn memory_backend_takes_every_path_literally() {
    let backend = skm::testing::MemoryBackend::new();
    let outcome = drive(&backend, no_rollback).await;
    // A map keyed by the path: every input is its own key, none reaches another.
    assert_eq!(outcome.accepted.len(), HOSTILE.len());
}

#[cfg(feature = "local")]
#[tokio::test]
async fn local_store_never_creates_a_file_outside_its_directory() {
    use skm::backend::local::{LocalKey, LocalStore};

    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for item in std::fs::read_dir(dir).unwrap().flatten() {
            let path = item.path();
            if item.file_type().unwrap().is_dir() {
                files(&path, out);
            }
            out.push(path);
        }
    }

    let dir = tempfile::tempdir().unwrap();
    // Decoys where `..` from the store or its `secrets` directory would land.
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("sys")).unwrap();
    std::fs::write(project.join("x"), "decoy").unwrap();
    let root = project.join(".skm");
    let store = LocalStore::open(&root).key(LocalKey::generate().unwrap());
    let outcome = drive(&store, |p| {
        let store = store.clone();
        async move { store.rollback(&p, 1).await }
    })
    .await;
    // Every byte that is not `a-z0-9-_` is written `%XX` in the file name, so every input is a literal path.
    assert_eq!(outcome.accepted.len(), HOSTILE.len(), "{outcome:?}");

    let mut all = Vec::new();
    files(dir.path(), &mut all);
    for path in &all {
        let inside = path.starts_with(&root);
        let decoy = [project.join("sys"), project.join("x"), project.clone(), root.clone()].contains(path);
        assert!(inside || decoy, "a file outside the store: {}", path.display());
    }
    assert_eq!(std::fs::read_to_string(project.join("x")).unwrap(), "decoy");
    for path in all
        .iter()
        .filter(|p| p.starts_with(root.join("secrets")) && p.is_file())
    {
        assert_eq!(
            path.parent(),
            Some(root.join("secrets").as_path()),
            "{}",
            path.display()
        );
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_%.ABCDEF".contains(&b)),
            "{name}"
        );
        assert!(!name.contains(".."), "{name}");
    }
}

#[cfg(feature = "vault")]
#[tokio::test]
async fn vault_requests_never_leave_the_kv_mount() {
    use serde_json::Value;
    use skm::backend::vault::VaultBuilder;
    use skm_testing::{Bao, Proxy};

    let bao = Bao::start().await;
    let policies = |answer: Value| {
        let mut keys: Vec<String> = answer["data"]["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("policy list: {answer}"))
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    };
    let (status, before) = bao.api("GET", "sys/policy", None).await;
    assert_eq!(status, 200, "{before}");
    let proxy = Proxy::start(&bao.addr()).await;
    let backend = VaultBuilder::new(proxy.url())
        .token(bao.root_token())
        .build()
        .await
        .expect("backend");
    drive(&backend, no_rollback).await;

    let (status, after) = bao.api("GET", "sys/policy", None).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(policies(after), policies(before), "sys/policy changed");
    let requests = proxy.requests();
    assert!(
        requests.len() > HOSTILE.len(),
        "the proxy saw the traffic: {}",
        requests.len()
    );
    for r in &requests {
        let path = r.path.split('?').next().unwrap_or_default();
        // The token lookup and the mount detection are the backend's own, fixed requests.
        let own = ["/v1/auth/token/lookup-self", "/v1/sys/internal/ui/mounts/secret"].contains(&path);
        assert!(
            own || path.starts_with("/v1/secret/"),
            "{} {} left the KV mount",
            r.method,
            r.path
        );
        // The server would resolve these before routing.
        let lower = path.to_ascii_lowercase();
        for segment in lower.split('/') {
            assert!(segment != ".." && segment != ".", "{} {}", r.method, r.path);
        }
        assert!(!lower.contains("%2f"), "{} {}", r.method, r.path);
    }
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn aws_names_are_literal_and_never_in_the_url() {
    use skm::backend::aws::AwsBackend;
    use skm_testing::{Moto, Proxy};

    crate::support::no_instance_metadata();
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let backend = AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(proxy.url())
        .static_credentials("test", "test")
        .build()
        .await
        .expect("backend");
    drive(&backend, no_rollback).await;
    let requests = proxy.requests();
    assert!(requests.len() > HOSTILE.len());
    for r in &requests {
        // The JSON protocol: every operation is a POST to `/`, the name travels in the body.
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"), "{r:?}");
        let target = r.target.as_deref().unwrap_or_default();
        assert!(target.starts_with("secretsmanager."), "{target}");
    }
}

#[cfg(feature = "gcp")]
#[tokio::test]
async fn gcp_names_stay_under_the_projects_secrets() {
    use skm::backend::gcp::GcpBackend;
    use skm_testing::{Drongo, Proxy};

    let drongo = Drongo::start().await;
    let proxy = Proxy::start(&drongo.endpoint()).await;
    let backend = GcpBackend::builder()
        .project("skm-test")
        .endpoint(proxy.url())
        .build()
        .await
        .expect("backend");
    drive(&backend, |p| {
        let backend = backend.clone();
        async move { backend.rollback(&p, 1).await }
    })
    .await;
    let requests = proxy.requests();
    assert!(requests.len() > HOSTILE.len());
    for r in &requests {
        let path = r.path.split('?').next().unwrap_or_default();
        assert!(
            path.starts_with("/v1/projects/skm-test/secrets"),
            "{} {}",
            r.method,
            r.path
        );
        let lower = path.to_ascii_lowercase();
        assert!(
            !lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%5c"),
            "{}",
            r.path
        );
        for segment in lower.split('/') {
            assert!(segment != ".." && segment != ".", "{} {}", r.method, r.path);
        }
    }
}

#[cfg(feature = "azure")]
#[tokio::test]
async fn azure_names_stay_under_the_vaults_secrets() {
    use skm::backend::azure::AzureBackend;
    use skm_testing::KeyVault;

    crate::support::no_instance_metadata();
    let kv = KeyVault::start().await;
    let backend = AzureBackend::builder()
        .vault_url(kv.url())
        .authority_host(kv.authority_host())
        .ca_cert(kv.ca_pem_path())
        .client_secret(kv.tenant_id(), kv.client_id(), kv.client_secret())
        .build()
        .expect("backend");
    drive(&backend, no_rollback).await;
    let requests = kv.requests();
    assert!(requests.len() > HOSTILE.len());
    let tenant = format!("/{}/", kv.tenant_id());
    for r in &requests {
        let token = r.path.starts_with(&tenant);
        let inside = r.path.starts_with("/secrets") || r.path.starts_with("/deletedsecrets");
        assert!(token || inside, "{} {}", r.method, r.path);
        if !token {
            let lower = r.path.to_ascii_lowercase();
            assert!(
                !lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%5c"),
                "{}",
                r.path
            );
            for segment in lower.split('/') {
                assert!(segment != ".." && segment != ".", "{} {}", r.method, r.path);
            }
        }
    }
    // Every secret the vault holds has a Key Vault name: letters, digits and `-`.
    for name in kv.secret_names() {
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{name}");
    }
}
