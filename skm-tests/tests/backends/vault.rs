//! The Vault backend against a real OpenBao dev server (and, for cross-checks, hvac), by behaviour: reading KV
//! secrets ([`kv`]), logging in and keeping the token alive ([`auth`]; JWT and certificate logins in [`login`]), the
//! connection ([`transport`]), and writing, batched reads and watching ([`admin`]). This file holds what they
//! share.
//!
//! Every test starts its own server (`skm_testing::Bao`), so tests share no state. The tests never change the
//! process environment: they configure backends through `VaultBuilder::from_vars`, and the one test that needs
//! `AppSecrets::load()` (which reads the real environment) runs this binary again as a child process with
//! exactly `VAULT_ADDR` and `VAULT_TOKEN` (see `transport::child_process_entry`).
#![cfg(feature = "vault")]

mod admin;
mod auth;
mod kv;
mod login;
mod transport;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skm::backend::vault::{Credential, KvVersion, VaultAuth, VaultBackend, VaultBuilder};
use skm::backend::{
    AdminBackend, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchRequest, FetchResult, PutRequest, SecretValue,
};
use skm::{ExposeSecret, Loader, SecretBox, SecretString, Secrets, VersionPin, Zeroize};
use skm_testing::{Action, Bao, Proxy};

const SENTINEL: &str = "SENTINEL-vault-3b9d-do-not-leak";

fn vars(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

async fn root(bao: &Bao) -> VaultBackend {
    VaultBuilder::new(bao.addr())
        .token(bao.root_token())
        .build()
        .await
        .expect("backend")
}

fn loader(backend: &VaultBackend) -> Loader {
    Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

/// Writes a KV v2 secret as root through the HTTP API (not through skm).
async fn write(bao: &Bao, path: &str, data: Value) {
    let (status, body) = bao
        .api("POST", &format!("secret/data/{path}"), json!({ "data": data }))
        .await;
    assert_eq!(status, 200, "writing {path}: {body}");
}

async fn api_ok(bao: &Bao, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = bao.api(method, path, body).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
    answer
}

async fn policy(bao: &Bao, name: &str, hcl: &str) {
    bao.bao_with_stdin(&["policy", "write", name, "-"], hcl.as_bytes())
        .await;
}

/// A token with `policies` and extra creation parameters (`ttl`, `explicit_max_ttl`...).
async fn token(bao: &Bao, policies: &[&str], extra: Value) -> String {
    let mut body = json!({ "policies": policies, "no_default_policy": false });
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let answer = api_ok(bao, "POST", "auth/token/create", body).await;
    answer["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_string()
}

fn text(result: &FetchResult) -> String {
    match &result.as_ref().expect("found").value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

fn kind(result: &FetchResult) -> FailureKind {
    result.as_ref().err().map(|e| e.kind).expect("expected a failure")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skm-vault-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[derive(Debug, Clone, serde::Deserialize, Zeroize)]
struct DbConf {
    user: String,
    password: String,
    port: u16,
}

#[derive(Secrets)]
struct DbSecrets {
    #[secret(path = "app/db", key = "password")]
    password: SecretString,
    #[secret(path = "app/db", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "app/db")]
    whole: SecretBox<DbConf>,
}

// Issue 23: no call waits forever. A Vault that accepts connections and never answers must fail the load well
// within the loader's default deadline (30 s) with an error naming Vault; a refused port must fail at once.
