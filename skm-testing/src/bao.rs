//! An OpenBao dev server: the HashiCorp Vault HTTP API on a loopback port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
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
    /// With [`Bao::start_tls`]: where `-dev-tls` wrote its CA, certificate and key.
    tls_dir: Option<PathBuf>,
    /// The key that signs [`Bao::sign_jwt`]'s tokens, made by [`Bao::enable_jwt`].
    jwt_key: Mutex<Option<KeyPair>>,
    /// The CA that signs [`Bao::issue_client_cert`]'s certificates, made at first use.
    client_ca: Mutex<Option<(String, Issuer<'static, KeyPair>)>>,
}

impl Bao {
    /// Starts `.venv/bin/bao server -dev` on a free port and waits until it is unsealed and answers with its
    /// root token.
    ///
    /// # Panics
    /// When `bao` is not installed (see [`crate::venv_bin`]), exits, or is not ready within 30 s.
    pub async fn start() -> Bao {
        let program = venv_bin("bao");
        start_with_retries("bao", free_port_pair, |port| Bao::attempt(&program, port, false)).await
    }

    /// Like [`Bao::start`], over TLS: `bao server -dev -dev-tls` writes a CA, a certificate for `127.0.0.1`
    /// and its key to a directory ([`Bao::ca_cert_path`] is the CA for clients to trust), and [`Bao::addr`]
    /// is `https://127.0.0.1:PORT`. The listener asks for a client certificate but does not require one (what
    /// the `cert` auth method needs).
    ///
    /// # Panics
    /// As [`Bao::start`].
    pub async fn start_tls() -> Bao {
        let program = venv_bin("bao");
        start_with_retries("bao", free_port_pair, |port| Bao::attempt(&program, port, true)).await
    }

    async fn attempt(program: &Path, port: u16, tls: bool) -> Result<Bao, PortTaken> {
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
        let tls_dir = tls.then(|| home.join("tls"));
        if let Some(dir) = &tls_dir {
            // A fresh directory per attempt: the CA of a server that lost its port must not be trusted.
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            command.args(["-dev-tls", &format!("-dev-tls-cert-dir={}", dir.display())]);
        }
        isolate_from_vault_env(&mut command);
        command.env("HOME", &home);
        let process = PeerProcess::spawn("bao", command, port);
        let mut bao = Bao {
            process,
            port,
            token,
            home,
            tls_dir,
            jwt_key: Mutex::new(None),
            client_ca: Mutex::new(None),
        };
        let addr = bao.addr();
        let token = bao.token.clone();
        let ca = bao.ca_cert_path();
        bao.process
            .wait_ready(|_log| {
                let (addr, token, ca) = (addr.clone(), token.clone(), ca.clone());
                async move {
                    if ca.as_ref().is_some_and(|ca| !ca.exists()) {
                        return false;
                    }
                    // Short probes: whatever holds the port may accept connections and never answer.
                    let health = format!("{addr}/v1/sys/health");
                    let lookup = format!("{addr}/v1/auth/token/lookup-self");
                    let token = [("x-vault-token", token.as_str())];
                    let ok = |answer: Result<(StatusCode, Bytes), String>| {
                        matches!(answer, Ok((status, _)) if status == StatusCode::OK)
                    };
                    let ca = ca.as_deref();
                    ok(send(ca, Method::GET, &health, &[], Bytes::new(), PROBE_TIMEOUT).await)
                        && ok(send(ca, Method::GET, &lookup, &token, Bytes::new(), PROBE_TIMEOUT).await)
                }
            })
            .await?;
        Ok(bao)
    }

    /// The address to give a Vault client: `http://127.0.0.1:PORT` (`https://` with [`Bao::start_tls`]).
    pub fn addr(&self) -> String {
        let scheme = if self.tls_dir.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// With [`Bao::start_tls`]: the CA that signed the server's certificate (what `VAULT_CACERT` names).
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.tls_dir.as_ref().map(|d| d.join("vault-ca.pem"))
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
        if let Some(ca) = self.ca_cert_path() {
            command.env("BAO_CACERT", &ca).env("VAULT_CACERT", &ca);
        }
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
        let (status, body) = send(
            self.ca_cert_path().as_deref(),
            method,
            &url,
            &headers,
            body,
            REQUEST_TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("OpenBao API call failed: {e}; log:\n{}", self.process.log_tail()));
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        (status.as_u16(), json)
    }

    /// Enables the `jwt` auth method at `mount` with a fresh ES256 public key in `jwt_validation_pubkeys` and
    /// `bound_issuer` = `issuer`; [`Bao::sign_jwt`] then signs tokens it accepts.
    pub async fn enable_jwt(&self, mount: &str, issuer: &str) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate the JWT signing key");
        let public = key.public_key_pem();
        *self.jwt_key.lock().unwrap() = Some(key);
        let (status, answer) = self
            .api(
                "POST",
                &format!("sys/auth/{mount}"),
                serde_json::json!({ "type": "jwt" }),
            )
            .await;
        assert!((200..300).contains(&status), "enable jwt auth: {status} {answer}");
        let config = serde_json::json!({ "jwt_validation_pubkeys": [public], "bound_issuer": issuer });
        let (status, answer) = self.api("POST", &format!("auth/{mount}/config"), config).await;
        assert!((200..300).contains(&status), "configure jwt auth: {status} {answer}");
    }

    /// A compact JWS (ES256) of `claims`, signed with the key [`Bao::enable_jwt`] configured.
    ///
    /// # Panics
    /// Before [`Bao::enable_jwt`].
    pub fn sign_jwt(&self, claims: &Value) -> String {
        let key = self.jwt_key.lock().unwrap();
        sign_es256(key.as_ref().expect("Bao::enable_jwt first"), claims)
    }

    /// A JWT of `claims` signed with a key no server trusts (to test a wrongly signed token).
    pub fn sign_jwt_with_another_key(claims: &Value) -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a key");
        sign_es256(&key, claims)
    }

    /// The PEM of the client CA whose certificates [`Bao::issue_client_cert`] issues (for a `cert` auth role's
    /// `certificate`), made at first use.
    pub fn client_ca_pem(&self) -> String {
        let mut ca = self.client_ca.lock().unwrap();
        ca.get_or_insert_with(|| new_ca("skm-testing client CA")).0.clone()
    }

    /// Writes a client certificate for `name` signed by [`Bao::client_ca_pem`]'s CA, and its key, as
    /// `DIR/NAME.pem` and `DIR/NAME-key.pem`; returns both paths. Calling it again for the same name renews
    /// the certificate in place (a new key and serial).
    pub fn issue_client_cert(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let mut ca = self.client_ca.lock().unwrap();
        let (_, issuer) = ca.get_or_insert_with(|| new_ca("skm-testing client CA"));
        write_client_cert(issuer, dir, name)
    }

    /// Like [`Bao::issue_client_cert`], signed by a CA of its own that no server trusts.
    pub fn stranger_client_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (_, issuer) = new_ca("skm-testing stranger CA");
        write_client_cert(&issuer, dir, name)
    }
}

/// A self-signed CA: its PEM and the issuer that signs with it.
fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("generate a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert.pem(), Issuer::new(params, key))
}

fn write_client_cert(issuer: &Issuer<'static, KeyPair>, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("generate a client key");
    let mut params = CertificateParams::new(vec![format!("{name}.skm.test")]).expect("client parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).expect("sign the client certificate");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&cert_path, cert.pem()).expect("write the client certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write the client key");
    (cert_path, key_path)
}

/// Base64url without padding (JWS).
fn b64url(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An ES256 compact JWS: rcgen signs ECDSA in ASN.1 DER; JWS wants the 32-byte `r` and `s` side by side.
fn sign_es256(key: &KeyPair, claims: &Value) -> String {
    use rcgen::SigningKey;
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"ES256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let der = key.sign(input.as_bytes()).expect("sign the JWT");
    // SEQUENCE { INTEGER r, INTEGER s }, short lengths (a P-256 signature is at most 72 bytes).
    assert_eq!(der[0], 0x30, "an ECDSA signature is a DER sequence");
    let mut at = 2;
    let mut raw = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "an ECDSA signature holds two integers");
        let len = der[at + 1] as usize;
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        raw.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        raw.extend_from_slice(int);
        at += 2 + len;
    }
    format!("{input}.{}", b64url(&raw))
}

/// One request to the server: plain HTTP, or HTTPS trusting `ca` (the `-dev-tls` CA) when given.
async fn send(
    ca: Option<&Path>,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let Some(ca) = ca else {
        return http_client::send(method, url, headers, body, timeout).await;
    };
    let exchange = async {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.host().unwrap_or("127.0.0.1").to_string();
        let port = uri.port_u16().unwrap_or(443);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
            roots
                .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header("host", format!("{host}:{port}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(http_body_util::Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result.map_err(|e: String| format!("{method} {url}: {e}")),
        Err(_) => Err(format!("{method} {url}: no answer within {timeout:?}")),
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
        let bao = start_with_retries(
            "bao",
            || ports.pop().unwrap(),
            |port| Bao::attempt(&program, port, false),
        )
        .await;
        assert!(ports.is_empty(), "the taken port was tried first");
        assert_ne!(bao.port(), taken);
        assert_eq!(bao.api("GET", "auth/token/lookup-self", None).await.0, 200);
    }
}
