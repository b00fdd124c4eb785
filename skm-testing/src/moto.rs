//! A moto server: AWS Secrets Manager (and the rest of AWS) on a loopback port.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use crate::http_client::{self, REQUEST_TIMEOUT};
use crate::paths::{free_port, venv_bin};
use crate::process::{start_with_retries, PeerProcess, PortTaken};

/// A moto server on `127.0.0.1`, killed when dropped.
///
/// Point the AWS SDK at [`Moto::endpoint`] with any region and static credentials (moto checks no
/// signatures). Its state starts empty and lives as long as the server; [`Moto::reset`] empties it.
pub struct Moto {
    process: PeerProcess,
    port: u16,
}

impl Moto {
    /// Starts `.venv/bin/moto_server` on a free port and waits until it serves.
    ///
    /// # Panics
    /// When `moto_server` is not installed (see [`crate::venv_bin`]), exits, or is not serving within 30 s.
    pub async fn start() -> Moto {
        let program = venv_bin("moto_server");
        start_with_retries("moto_server", free_port, |port| Moto::attempt(&program, port)).await
    }

    async fn attempt(program: &Path, port: u16) -> Result<Moto, PortTaken> {
        let mut command = Command::new(program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Python buffers a redirected stdout; unbuffered, the log is complete when a test fails.
            .env("PYTHONUNBUFFERED", "1");
        let mut process = PeerProcess::spawn("moto", command, port);
        let banner = format!("Running on http://127.0.0.1:{port}");
        let mut answering_since: Option<Instant> = None;
        process
            .wait_ready(|log| {
                // A loopback connect answers at once, so a blocking one keeps this simple (and `Send`).
                let answering = std::net::TcpStream::connect_timeout(
                    &(Ipv4Addr::LOCALHOST, port).into(),
                    Duration::from_millis(200),
                )
                .is_ok();
                if !answering {
                    answering_since = None;
                    return std::future::ready(false);
                }
                // The banner proves the listener is ours, not another process's that took the port
                // (ours would then exit). Should a moto release word it differently, a port that has
                // answered for 3 s while ours lives is ours too: a moto that lost the port exits sooner.
                let since = *answering_since.get_or_insert_with(Instant::now);
                std::future::ready(log.contains(&banner) || since.elapsed() >= Duration::from_secs(3))
            })
            .await?;
        Ok(Moto { process, port })
    }

    /// The base URL to give the AWS SDK: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where moto's output goes (kept after a failing test, deleted after a passing one).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Deletes every resource moto holds (`POST /moto-api/reset`).
    ///
    /// # Panics
    /// When moto does not answer 200.
    pub async fn reset(&self) {
        let url = format!("{}/moto-api/reset", self.endpoint());
        match http_client::send(Method::POST, &url, &[], Bytes::new(), REQUEST_TIMEOUT).await {
            Ok((status, _)) if status.is_success() => {}
            Ok((status, body)) => panic!("moto reset answered {status}: {}", String::from_utf8_lossy(&body)),
            Err(e) => panic!("moto reset failed: {e}; log:\n{}", self.process.log_tail()),
        }
    }
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto").field("endpoint", &self.endpoint()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_taken_by_another_process_is_detected_and_another_one_used() {
        // A listener that accepts connections but never answers, like a stranger's server.
        let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = squatter.local_addr().unwrap().port();
        let mut ports = vec![free_port(), taken];
        let program = venv_bin("moto_server");
        let moto = start_with_retries("moto", || ports.pop().unwrap(), |port| Moto::attempt(&program, port)).await;
        assert!(ports.is_empty(), "the taken port was tried first");
        assert_ne!(moto.port(), taken);
        moto.reset().await;
    }
}
