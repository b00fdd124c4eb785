//! A drongo server: Google Cloud Secret Manager's REST v1 API (and other GCP services) on a loopback port.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::http_client::{self, REQUEST_TIMEOUT};
use crate::paths::{free_port, venv_bin};
use crate::process::{start_with_retries, PeerProcess, PortTaken};

/// drongo's own entry point, run with Nagle's algorithm off on every connection it accepts. drongo serves with
/// Python's `http.server`, which sends an answer's headers and body in two writes without `TCP_NODELAY`; on a
/// kept-alive connection Nagle's algorithm then holds the body until the client's delayed ACK, about 40 ms a
/// request (measured: 44 ms per kept-alive access, 0.5 ms with Nagle off). Google's front ends have no such
/// stall, and the API drongo serves is the same either way.
const LAUNCH: &str = "import socketserver, sys\n\
                      socketserver.StreamRequestHandler.disable_nagle_algorithm = True\n\
                      from drongo.cli import main\n\
                      sys.exit(main())";

/// A readiness probe unanswered for this long is retried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A Python client script that takes longer than this is wedged.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A drongo server on `127.0.0.1`, killed when dropped.
///
/// Point a Secret Manager client at [`Drongo::endpoint`] with anonymous credentials (drongo checks none);
/// any project id works. State starts empty and lives as long as the server; [`Drongo::reset`] empties it.
///
/// drongo differs from Google Cloud in ways tests must name when they touch them: `latest` resolves to the
/// newest *enabled* version (Google: the newest created), there are no `projects/*/locations/*` paths, access
/// answers carry no `dataCrc32c` and writes are not checked against one, versions are listed oldest first,
/// lists have no page tokens, and secrets keep no annotations.
pub struct Drongo {
    process: PeerProcess,
    port: u16,
}

impl Drongo {
    /// Starts drongo's server (`.venv/bin/drongo server`, with Nagle's algorithm off) on a free port and waits
    /// until `GET /drongo/health` lists the `secretmanager` service.
    ///
    /// # Panics
    /// When `drongo` is not installed (see [`crate::venv_bin`]; `./scripts/test` installs it), exits, or is
    /// not serving within 30 s.
    pub async fn start() -> Drongo {
        // Checked for its clear message when drongo is missing; the server runs in the venv's Python.
        venv_bin("drongo");
        let python = venv_bin("python");
        start_with_retries("drongo", free_port, |port| Drongo::attempt(&python, port)).await
    }

    async fn attempt(python: &Path, port: u16) -> Result<Drongo, PortTaken> {
        let mut command = Command::new(python);
        command
            .args([
                "-c",
                LAUNCH,
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .env("PYTHONUNBUFFERED", "1");
        let mut process = PeerProcess::spawn("drongo", command, port);
        let health = format!("http://127.0.0.1:{port}/drongo/health");
        process
            .wait_ready(|_log| {
                let health = health.clone();
                async move {
                    // The service list proves the listener is a drongo with Secret Manager, not a stranger.
                    matches!(
                        http_client::send(Method::GET, &health, &[], Bytes::new(), PROBE_TIMEOUT).await,
                        Ok((StatusCode::OK, body)) if String::from_utf8_lossy(&body).contains("\"secretmanager\"")
                    )
                }
            })
            .await?;
        Ok(Drongo { process, port })
    }

    /// The endpoint to give a client: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port drongo listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where drongo's output goes (kept after a failing test, deleted after a passing one).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Deletes every resource drongo holds (`POST /drongo/reset`).
    ///
    /// # Panics
    /// When drongo does not answer 200.
    pub async fn reset(&self) {
        let url = format!("{}/drongo/reset", self.endpoint());
        match http_client::send(Method::POST, &url, &[], Bytes::new(), REQUEST_TIMEOUT).await {
            Ok((status, _)) if status.is_success() => {}
            Ok((status, body)) => panic!("drongo reset answered {status}: {}", String::from_utf8_lossy(&body)),
            Err(e) => panic!("drongo reset failed: {e}; log:\n{}", self.process.log_tail()),
        }
    }

    /// Runs `script` with the venv's Python and Google's own client (`google-cloud-secret-manager`), with
    /// `client` (a `SecretManagerServiceClient` on the REST transport, anonymous credentials, this server as
    /// `api_endpoint`) and `project` (`project`) already defined. `stdin` is given to the script (read it with
    /// `sys.stdin.buffer.read()`), so values never go through argv.
    ///
    /// # Panics
    /// When the script fails or runs longer than 60 s; the message holds its stderr.
    pub async fn google_client(&self, project: &str, script: &str, stdin: &[u8]) -> Output {
        let python = venv_bin("python");
        let prelude = format!(
            "import sys, json\n\
             from google.api_core.client_options import ClientOptions\n\
             from google.auth.credentials import AnonymousCredentials\n\
             from google.cloud import secretmanager\n\
             client = secretmanager.SecretManagerServiceClient(transport='rest', \
             credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint='{}'))\n\
             project = '{project}'\n",
            self.endpoint()
        );
        let mut child = tokio::process::Command::new(python)
            .arg("-c")
            .arg(format!("{prelude}{script}"))
            // Google's auth library must not find the developer's credentials or a metadata server.
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env("NO_GCE_CHECK", "True")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run the venv's python: {e}"));
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(stdin).await.expect("write the script's stdin");
        drop(input);
        let output = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("Google's Python client ran longer than {SCRIPT_TIMEOUT:?}"))
            .expect("wait for python");
        if !output.status.success() {
            panic!(
                "Google's Python client failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }
}

impl std::fmt::Debug for Drongo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drongo").field("endpoint", &self.endpoint()).finish()
    }
}
