//! An OpenBao dev server: the HashiCorp Vault HTTP API on a loopback port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::http_client::{self, REQUEST_TIMEOUT};
use crate::paths::{free_port_pair, scratch_dir, venv_bin};
use crate::process::{isolate_from_vault_env, start_with_retries, PeerProcess, PortTaken};

/// A readiness probe unanswered for this long is retried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A `bao` CLI call that takes longer than this is wedged.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// An OpenBao dev server on `127.0.0.1`: in memory, unsealed, `secret/` mounted as KV v2, killed when dropped.
///
/// It runs with `-dev-no-store-token` and a private `HOME`, and so does every [`Bao::bao`] call, so neither
/// ever reads or writes the developer's `~/.vault-token`. The root token is unique per server.
pub struct Bao {
    process: PeerProcess,
    port: u16,
    token: String,
    home: PathBuf,
}

impl Bao {
    /// Starts `.venv/bin/bao server -dev` on a free port and waits until it is unsealed and answers with its
    /// root token.
    ///
    /// # Panics
    /// When `bao` is not installed (see [`crate::venv_bin`]), exits, or is not ready within 30 s.
    pub async fn start() -> Bao {
        let program = venv_bin("bao");
        start_with_retries("bao", free_port_pair, |port| Bao::attempt(&program, port)).await
    }

    async fn attempt(program: &Path, port: u16) -> Result<Bao, PortTaken> {
        // Unique per server, so that the readiness check below also proves the server on the port is ours.
        let token = format!("skm-root-{}-{port}", std::process::id());
        let home = scratch_dir().join(format!("bao-home-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));

        let mut command = Command::new(program);
        command.args([
            "server",
            "-dev",
            // Without it the dev server writes its root token to $HOME/.vault-token, overwriting the
            // developer's; the private HOME is a second guard.
            "-dev-no-store-token",
            &format!("-dev-root-token-id={token}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ]);
        isolate_from_vault_env(&mut command);
        command.env("HOME", &home);
        let process = PeerProcess::spawn("bao", command, port);
        let mut bao = Bao {
            process,
            port,
            token,
            home,
        };
        let addr = bao.addr();
        let token = bao.token.clone();
        bao.process
            .wait_ready(|_log| {
                let (addr, token) = (addr.clone(), token.clone());
                async move {
                    // Short probes: whatever holds the port may accept connections and never answer.
                    let health = format!("{addr}/v1/sys/health");
                    let lookup = format!("{addr}/v1/auth/token/lookup-self");
                    let token = [("x-vault-token", token.as_str())];
                    let ok = |answer: Result<(StatusCode, Bytes), String>| {
                        matches!(answer, Ok((status, _)) if status == StatusCode::OK)
                    };
                    ok(http_client::send(Method::GET, &health, &[], Bytes::new(), PROBE_TIMEOUT).await)
                        && ok(http_client::send(Method::GET, &lookup, &token, Bytes::new(), PROBE_TIMEOUT).await)
                }
            })
            .await?;
        Ok(bao)
    }

    /// The address to give a Vault client: `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port OpenBao listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root token (all permissions; unique to this server).
    pub fn root_token(&self) -> &str {
        &self.token
    }

    /// Where OpenBao's output goes (kept after a failing test, deleted after a passing one).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Runs the `bao` CLI against this server as root, e.g. `bao(&["secrets", "enable", "-path=kv1",
    /// "-version=1", "kv"])`, and returns its output.
    ///
    /// # Panics
    /// When the command fails; the message holds its stderr.
    pub async fn bao(&self, args: &[&str]) -> Output {
        self.bao_checked(args, None).await
    }

    /// Like [`Bao::bao`], with `stdin` as the command's standard input (for arguments given as `-`, such
    /// as `policy write NAME -`).
    pub async fn bao_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.bao_checked(args, Some(stdin)).await
    }

    /// Like [`Bao::bao`], without panicking when the command fails (to test a failure).
    pub async fn bao_unchecked(&self, args: &[&str]) -> Output {
        self.run_cli(args, None).await
    }

    async fn bao_checked(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let output = self.run_cli(args, stdin).await;
        if !output.status.success() {
            panic!(
                "bao {} failed ({}):\n{}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            );
        }
        output
    }

    async fn run_cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut command = Command::new(venv_bin("bao"));
        command.args(args);
        isolate_from_vault_env(&mut command);
        let addr = self.addr();
        command
            .env("BAO_ADDR", &addr)
            .env("VAULT_ADDR", &addr)
            .env("BAO_TOKEN", &self.token)
            .env("VAULT_TOKEN", &self.token)
            // The CLI's token helper reads and `bao login` writes $HOME/.vault-token: keep it private.
            .env("HOME", &self.home)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bao {}: {e}", args.join(" ")));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input)
                .await
                .unwrap_or_else(|e| panic!("cannot write the stdin of bao {}: {e}", args.join(" ")));
            // Dropping the pipe closes it: the CLI reads `-` until end of file.
        }
        match tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output()).await {
            Ok(output) => output.unwrap_or_else(|e| panic!("bao {}: {e}", args.join(" "))),
            Err(_) => panic!("bao {} did not finish within {CLI_TIMEOUT:?}", args.join(" ")),
        }
    }

    /// Calls OpenBao's HTTP API as root: `api("POST", "/v1/secret/data/app", json!({"data": {...}}))` or
    /// `api("GET", "secret/data/app", None)` (the `/v1/` prefix is optional). Returns the status and the JSON
    /// body (`Null` when empty, a `String` when not JSON).
    ///
    /// # Panics
    /// On a transport failure (not on an error status).
    pub async fn api(&self, method: &str, path: &str, body: impl Into<Option<Value>>) -> (u16, Value) {
        self.api_as(&self.token, method, path, body).await
    }

    /// Like [`Bao::api`], with `token` instead of the root token; an empty `token` sends none (for logins).
    pub async fn api_as(&self, token: &str, method: &str, path: &str, body: impl Into<Option<Value>>) -> (u16, Value) {
        let method =
            Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("invalid HTTP method {method:?}: {e}"));
        let path = path.trim_start_matches('/');
        let path = path.strip_prefix("v1/").unwrap_or(path);
        let url = format!("{}/v1/{path}", self.addr());
        let body = body
            .into()
            .map(|json| Bytes::from(json.to_string()))
            .unwrap_or_default();
        let mut headers = vec![("content-type", "application/json")];
        if !token.is_empty() {
            headers.push(("x-vault-token", token));
        }
        let (status, body) = http_client::send(method, &url, &headers, body, REQUEST_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("OpenBao API call failed: {e}; log:\n{}", self.process.log_tail()));
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        (status.as_u16(), json)
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

impl std::fmt::Debug for Bao {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bao")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn a_port_taken_by_another_process_is_detected_and_another_one_used() {
        // A listener that accepts connections but never answers, like a stranger's server.
        let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = squatter.local_addr().unwrap().port();
        let mut ports = vec![free_port_pair(), taken];
        let program = venv_bin("bao");
        let bao = start_with_retries("bao", || ports.pop().unwrap(), |port| Bao::attempt(&program, port)).await;
        assert!(ports.is_empty(), "the taken port was tried first");
        assert_ne!(bao.port(), taken);
        assert_eq!(bao.api("GET", "auth/token/lookup-self", None).await.0, 200);
    }
}
