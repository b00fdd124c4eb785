//! A private Secret Service: a D-Bus session bus and GNOME Keyring (`gnome-keyring-daemon`) in a temporary
//! home, for the `keyring` backend's tests, with `secret-tool` as the third-party client.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the bus and the keyring may take to start (well under a second on an idle machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The password of the session's login keyring.
const PASSWORD: &str = "skm-test-keyring";

/// A D-Bus session bus with GNOME Keyring's Secret Service on it, unlocked, in a temporary home of its own
/// (`HOME` and the `XDG_*` directories), so that no real keyring is touched. Both processes are killed, and the
/// home deleted, on drop.
///
/// Clients reach it through [`SecretService::env`] (`DBUS_SESSION_BUS_ADDRESS` and the home): the `keyring`
/// crate reads the bus address from the process environment, so a test gives these variables to a child
/// process rather than setting them in its own, which every test of the binary shares.
pub struct SecretService {
    home: tempfile::TempDir,
    address: String,
    bus: Child,
    keyring: Option<Child>,
}

impl std::fmt::Debug for SecretService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretService")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The path of `program` in `PATH`.
///
/// # Panics
/// When it is not installed: a keyring test must fail, never pass, without its Secret Service.
fn installed(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{program} not found in PATH: run ./scripts/test (it installs Debian's gnome-keyring, dbus and \
                 libsecret-tools for the keyring backend's tests)"
            )
        })
}

impl SecretService {
    /// Starts `dbus-daemon --session` on a socket in a new temporary home, then `gnome-keyring-daemon
    /// --foreground --unlock --components=secrets` on it (the login keyring created and unlocked with a
    /// password given on stdin), and returns once the Secret Service's name is on the bus.
    ///
    /// # Panics
    /// When `dbus-daemon`, `gnome-keyring-daemon`, `dbus-send` or `secret-tool` is not installed
    /// (`./scripts/test` installs them), or the bus or the keyring does not start.
    pub fn start() -> SecretService {
        let dbus_daemon = installed("dbus-daemon");
        let gnome_keyring = installed("gnome-keyring-daemon");
        installed("dbus-send");
        installed("secret-tool");
        let home = tempfile::Builder::new()
            .prefix("skm-keyring-")
            .tempdir()
            .expect("cannot create a temporary home");
        for dir in ["data", "config", "cache", "run"] {
            std::fs::create_dir_all(home.path().join(dir)).expect("cannot create the home's directories");
        }
        set_private(&home.path().join("run"));
        let socket = home.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        let mut bus = Command::new(dbus_daemon);
        bus.args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .env_clear()
            .envs(base_env(home.path()))
            .stdin(Stdio::null());
        log_to(&mut bus, &home.path().join("dbus.log"));
        let bus = bus.spawn().expect("cannot start dbus-daemon");
        let mut service = SecretService {
            home,
            address,
            bus,
            keyring: None,
        };
        service.wait_for("the D-Bus session bus", |s| {
            socket.exists() && s.name_has_owner("org.freedesktop.DBus")
        });

        let mut keyring = Command::new(gnome_keyring);
        keyring
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env_clear()
            .envs(service.env())
            .stdin(Stdio::piped());
        log_to(&mut keyring, &service.home.path().join("keyring.log"));
        let mut child = keyring.spawn().expect("cannot start gnome-keyring-daemon");
        // The password of the login keyring, read from stdin up to its end.
        let mut stdin = child.stdin.take().expect("a piped stdin");
        stdin
            .write_all(PASSWORD.as_bytes())
            .expect("cannot give gnome-keyring its password");
        drop(stdin);
        service.keyring = Some(child);
        service.wait_for("gnome-keyring's Secret Service", |s| {
            s.name_has_owner("org.freedesktop.secrets")
        });
        service
    }

    /// The bus's address, as `DBUS_SESSION_BUS_ADDRESS` holds it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The variables a client of this Secret Service needs: `DBUS_SESSION_BUS_ADDRESS`, the temporary `HOME`,
    /// `XDG_DATA_HOME`, `XDG_CONFIG_HOME`, `XDG_CACHE_HOME`, `XDG_RUNTIME_DIR`, and `PATH`.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = base_env(self.home.path());
        env.push(("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone()));
        env
    }

    /// `secret-tool` with [`SecretService::env`] and `args`.
    pub fn secret_tool(&self, args: &[&str]) -> Command {
        let mut command = Command::new("secret-tool");
        command.args(args).env_clear().envs(self.env());
        command
    }

    /// Stores `value` with `secret-tool store --label=<label>` under `attributes` (`service`, `username`, ...),
    /// as a third-party client of the Secret Service writes an item.
    ///
    /// # Panics
    /// When `secret-tool` fails.
    pub fn store(&self, label: &str, attributes: &[(&str, &str)], value: &str) {
        let mut args = vec!["store".to_string(), format!("--label={label}")];
        for (k, v) in attributes {
            args.push(k.to_string());
            args.push(v.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self
            .secret_tool(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run secret-tool");
        // secret-tool reads the value from stdin, up to its end.
        let mut stdin = child.stdin.take().expect("a piped stdin");
        stdin
            .write_all(value.as_bytes())
            .expect("cannot give secret-tool the value");
        drop(stdin);
        let out = child.wait_with_output().expect("secret-tool did not finish");
        assert!(out.status.success(), "secret-tool store failed: {}", describe(&out));
    }

    /// The value `secret-tool lookup` finds for `attributes`, `None` when there is none.
    ///
    /// # Panics
    /// When `secret-tool` cannot run.
    pub fn lookup(&self, attributes: &[(&str, &str)]) -> Option<String> {
        let mut args = vec!["lookup"];
        for (k, v) in attributes {
            args.push(k);
            args.push(v);
        }
        let out = self.secret_tool(&args).output().expect("cannot run secret-tool");
        // `lookup` exits with 1 and prints nothing when no item matches.
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn name_has_owner(&self, name: &str) -> bool {
        let out = Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--reply-timeout=2000",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
            ])
            .arg(format!("string:{name}"))
            .env_clear()
            .envs(self.env())
            .output();
        matches!(out, Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("boolean true"))
    }

    fn wait_for(&mut self, what: &str, ready: impl Fn(&SecretService) -> bool) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if ready(self) {
                return;
            }
            let exited = [Some(&mut self.bus), self.keyring.as_mut()]
                .into_iter()
                .flatten()
                .any(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                panic!(
                    "{what} did not start{}; dbus log:\n{}\nkeyring log:\n{}",
                    if exited { " (a process exited)" } else { " in time" },
                    self.log("dbus.log"),
                    self.log("keyring.log")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.home.path().join(name)).unwrap_or_default()
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        // SIGKILL and reap, keyring first: nothing of this session outlives the test.
        for child in [self.keyring.as_mut(), Some(&mut self.bus)].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `PATH` and the temporary home's `HOME` and `XDG_*` directories.
fn base_env(home: &Path) -> Vec<(String, String)> {
    let dir = |d: &str| home.join(d).display().to_string();
    vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".into(), home.display().to_string()),
        ("XDG_DATA_HOME".into(), dir("data")),
        ("XDG_CONFIG_HOME".into(), dir("config")),
        ("XDG_CACHE_HOME".into(), dir("cache")),
        ("XDG_RUNTIME_DIR".into(), dir("run")),
    ]
}

fn log_to(command: &mut Command, path: &Path) {
    let file = File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let err = file.try_clone().expect("cannot duplicate a log file handle");
    command.stdout(file).stderr(err);
}

/// `XDG_RUNTIME_DIR` must be private to its user.
fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("cannot make {} private: {e}", dir.display()));
}

fn describe(out: &Output) -> String {
    format!(
        "{}; stdout {}; stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
