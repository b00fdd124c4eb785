//! A peer server process: spawned with its output in a log file, awaited until ready, killed on drop.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::paths::scratch_dir;

/// How long a peer may take to become ready (they take about a second; CI machines can be slow).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a peer is restarted on a new port when another process took its port first.
const PORT_ATTEMPTS: usize = 5;

/// A running peer. A `std` child rather than a tokio one, so that drop can kill and reap it synchronously,
/// inside or outside a runtime.
pub(crate) struct PeerProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Why a start attempt failed without panicking: the peer lost its port to another process.
pub(crate) struct PortTaken;

impl PeerProcess {
    /// Spawns `command` (one attempt on `port`) with stdout and stderr in `<scratch>/<name>-<pid>-<port>.log`.
    pub(crate) fn spawn(name: &'static str, mut command: Command, port: u16) -> PeerProcess {
        let log = scratch_dir().join(format!("{name}-{}-{port}.log", std::process::id()));
        let file = File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let stderr = file.try_clone().expect("cannot duplicate a log file handle");
        command.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", command.get_program()));
        PeerProcess { name, child, log }
    }

    /// The log file the peer writes to.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far (peers' logs are small).
    pub(crate) fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last lines of the log, for panic messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Polls `ready` until it answers true.
    ///
    /// Returns `Err(PortTaken)` when the peer exited because its port was in use (the caller retries on
    /// another port), and panics, with the log tail, when it exited for another reason or timed out.
    pub(crate) async fn wait_ready<F, Fut>(&mut self, mut ready: F) -> Result<(), PortTaken>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot poll a child process") {
                return self.exited(status);
            }
            if ready(self.log_text()).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not become ready within {STARTUP_TIMEOUT:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn exited(&self, status: ExitStatus) -> Result<(), PortTaken> {
        let log = self.log_text();
        if log.to_ascii_lowercase().contains("address already in use") {
            return Err(PortTaken);
        }
        panic!(
            "{} exited during startup ({status}); log {}:\n{}",
            self.name,
            self.log.display(),
            self.log_tail()
        );
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // SIGKILL, then reap at once: the process is gone (port and memory freed) before the next test runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the log of a failing test for diagnosis; clean up after passing ones.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Starts a peer, retrying on a new port (at most [`PORT_ATTEMPTS`] times) when another process took it.
///
/// `attempt` gets a port and returns the ready peer or [`PortTaken`].
pub(crate) async fn start_with_retries<T, F, Fut>(name: &str, mut pick_port: impl FnMut() -> u16, mut attempt: F) -> T
where
    F: FnMut(u16) -> Fut,
    Fut: Future<Output = Result<T, PortTaken>>,
{
    for _ in 0..PORT_ATTEMPTS {
        if let Ok(peer) = attempt(pick_port()).await {
            return peer;
        }
    }
    panic!("{name} could not bind a port after {PORT_ATTEMPTS} attempts: other processes kept taking them");
}

/// Removes the `BAO_*` and `VAULT_*` variables a developer may have exported (namespace, CA file, token...),
/// so that the peer and CLI see only what the test sets.
pub(crate) fn isolate_from_vault_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("BAO_") || name_str.starts_with("VAULT_") {
            command.env_remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_that_dies_at_startup_fails_the_test_with_its_log() {
        let startup = tokio::spawn(async {
            let mut command = Command::new("sh");
            command.args(["-c", "echo 'fatal: bad flag' >&2; exit 3"]);
            let mut process = PeerProcess::spawn("fake", command, 1);
            let _ = process.wait_ready(|_| std::future::ready(false)).await;
        });
        let panic = startup.await.expect_err("must panic").into_panic();
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(
            message.starts_with("fake exited during startup (exit status: 3); log "),
            "{message}"
        );
        assert!(message.ends_with(":\nfatal: bad flag"), "{message}");
        // The log is kept for a failing test; this failure was expected.
        let log = scratch_dir().join(format!("fake-{}-1.log", std::process::id()));
        std::fs::remove_file(log).unwrap();
    }

    #[tokio::test]
    async fn a_peer_that_lost_its_port_is_retried() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo 'bind: address already in use' >&2; exit 1"]);
        let mut process = PeerProcess::spawn("fake", command, 2);
        let result = process.wait_ready(|_| std::future::ready(false)).await;
        assert!(result.is_err());
    }
}
