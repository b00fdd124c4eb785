//! A throw-away PostgreSQL cluster: `initdb` in a temporary directory, `pg_ctl start` on a loopback port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::paths::free_port;

/// How many times the cluster is started on a new port when another process took its port first.
const PORT_ATTEMPTS: usize = 5;

/// The superuser `initdb` creates.
const ADMIN_USER: &str = "postgres";

/// A login that takes longer than this on loopback is wedged.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tells apart the clusters one test process starts.
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// A PostgreSQL cluster on `127.0.0.1`, in its own temporary directory, stopped and deleted when dropped.
///
/// Logins over TCP need a password (`scram-sha-256` in `pg_hba.conf`), so a test that logs in with a
/// wrong or revoked password fails as it would against a real server; a trusting cluster would accept any
/// password and make rotation tests unable to fail. The superuser is `postgres` with a random password
/// ([`Postgres::admin_password`]); the Unix socket (in the cluster's directory, used by no test) trusts.
///
/// PostgreSQL refuses to run as root: when the tests run as root, the cluster runs as the `postgres` user
/// (Debian's package creates it) or else `nobody`.
pub struct Postgres {
    port: u16,
    admin_password: String,
    /// The temporary directory: `data/` (the cluster) and `postgres.log`.
    dir: PathBuf,
    run_as: Option<User>,
    bin: PathBuf,
}

/// An unprivileged account to run the server as.
#[derive(Clone, Copy)]
struct User {
    uid: u32,
    gid: u32,
}

impl Postgres {
    /// Creates a cluster with `initdb` and starts it with `pg_ctl` on a free port; returns once it accepts
    /// password logins.
    ///
    /// # Panics
    /// When `initdb` or `pg_ctl` is not installed (`./scripts/test` installs Debian's `postgresql`), or the
    /// cluster cannot be created or started.
    pub async fn start() -> Postgres {
        let bin = pg_bin_dir();
        let run_as = unprivileged_user();
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("skm-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // initdb insists on a private data directory (0700) owned by the server's user.
        set_mode(&dir, 0o700);
        if let Some(user) = run_as {
            std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid))
                .unwrap_or_else(|e| panic!("cannot give {} to the postgres user: {e}", dir.display()));
        }
        let admin_password = random_password();
        let mut pg = Postgres {
            port: 0,
            admin_password,
            dir,
            run_as,
            bin,
        };
        pg.initdb();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if pg.pg_ctl_start(port) {
                pg.port = port;
                pg.wait_for_password_login().await;
                return pg;
            }
        }
        panic!(
            "PostgreSQL could not bind a port after {PORT_ATTEMPTS} attempts; log {}:\n{}",
            pg.log_path().display(),
            pg.log_tail()
        );
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log (kept after a failing test, deleted with the cluster after a passing one).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs one of the cluster's programs as the server's user.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = Command::new(&path);
        command.args(args).current_dir(&self.dir);
        // Variables such as PGDATA or PGPORT from a developer's shell would redirect the commands.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                command.env_remove(&name);
            }
        }
        command.env("LC_ALL", "C");
        if let Some(user) = self.run_as {
            use std::os::unix::process::CommandExt;
            command.uid(user.uid).gid(user.gid).env("HOME", &self.dir);
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
    }

    fn initdb(&self) {
        // The superuser's password goes through a file (never argv); it is deleted right after.
        let pwfile = self.dir.join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", self.admin_password))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", pwfile.display()));
        set_mode(&pwfile, 0o600);
        if let Some(user) = self.run_as {
            let _ = std::os::unix::fs::chown(&pwfile, Some(user.uid), Some(user.gid));
        }
        let data = self.data_dir();
        let output = self.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                ADMIN_USER,
                "--pwfile",
                &pwfile.to_string_lossy(),
                // TCP logins check the password; the private socket trusts (it serves no test).
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "--encoding=UTF8",
            ],
        );
        let _ = std::fs::remove_file(&pwfile);
        if !output.status.success() {
            panic!(
                "initdb failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            );
        }
    }

    /// Starts the server on `port`; `false` when the port was taken (the caller retries on another).
    fn pg_ctl_start(&self, port: u16) -> bool {
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c shared_buffers=16MB -c max_connections=40",
            self.dir.display()
        );
        let output = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir().to_string_lossy(),
                "-l",
                &self.log_path().to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        if output.status.success() {
            return true;
        }
        if self.log_tail().contains("already in use") {
            return false;
        }
        panic!(
            "pg_ctl start failed ({}):\n{}{}\nlog {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
            self.log_path().display(),
            self.log_tail()
        );
    }

    async fn wait_for_password_login(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.connect(ADMIN_USER, &self.admin_password).await {
                Ok(_) => return,
                Err(e) if std::time::Instant::now() >= deadline => panic!(
                    "PostgreSQL on port {} does not accept the superuser's login: {e}; log:\n{}",
                    self.port,
                    self.log_tail()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The superuser's name: `postgres`.
    pub fn admin_user(&self) -> &'static str {
        ADMIN_USER
    }

    /// The superuser's password (random per cluster).
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// A connection URL with `{{username}}` and `{{password}}` placeholders, the form Vault's and OpenBao's
    /// `postgresql-database-plugin` take as `connection_url`.
    pub fn templated_url(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Logs in over TCP as `user` with `password` (to the `postgres` database) and returns the client; its
    /// connection runs on the current runtime until the client is dropped.
    ///
    /// # Errors
    /// The server's refusal (`password authentication failed for user ...`, `role ... does not exist`) or a
    /// transport failure.
    pub async fn connect(&self, user: &str, password: &str) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname("postgres")
            .connect_timeout(CONNECT_TIMEOUT)
            .connect(NoTls)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Whether `user` can log in with `password` and run a query: `Ok`, or the server's reason.
    pub async fn login(&self, user: &str, password: &str) -> Result<(), String> {
        let client = self.connect(user, password).await.map_err(|e| describe(&e))?;
        client.simple_query("SELECT 1").await.map_err(|e| describe(&e))?;
        Ok(())
    }

    /// A connection as the superuser.
    ///
    /// # Panics
    /// When the superuser cannot log in.
    pub async fn admin(&self) -> Client {
        self.connect(ADMIN_USER, &self.admin_password)
            .await
            .unwrap_or_else(|e| panic!("the superuser cannot log in: {}", describe(&e)))
    }

    /// Runs `sql` (one or more statements) as the superuser.
    ///
    /// # Panics
    /// When a statement fails; the message holds the server's error.
    pub async fn execute(&self, sql: &str) {
        self.admin()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }

    /// Whether a role named `name` exists.
    pub async fn role_exists(&self, name: &str) -> bool {
        self.admin()
            .await
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .await
            .unwrap_or_else(|e| panic!("reading pg_roles: {}", describe(&e)))
            .is_some()
    }

    /// The role's `rolvaliduntil` (its password's expiry) as text, `None` when unset.
    ///
    /// # Panics
    /// When the role does not exist.
    pub async fn valid_until(&self, role: &str) -> Option<String> {
        let row = self
            .admin()
            .await
            .query_one("SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .unwrap_or_else(|e| panic!("reading rolvaliduntil of {role}: {}", describe(&e)));
        row.get(0)
    }
}

/// The server's error message (`tokio_postgres::Error`'s Display says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.port != 0 {
            // Immediate: the cluster is thrown away, nothing needs to be written back.
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D",
                    &self.data_dir().to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
        // Keep the log of a failing test for diagnosis.
        if std::thread::panicking() {
            eprintln!("PostgreSQL log kept at {}", self.log_path().display());
            let _ = std::fs::remove_dir_all(self.data_dir());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The directory holding `initdb` and `pg_ctl`: the one of `initdb` on `PATH`, else Debian's
/// `/usr/lib/postgresql/<newest>/bin`.
///
/// # Panics
/// When there is none: PostgreSQL tests must fail, not pass, without PostgreSQL.
fn pg_bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if let Some(dir) = on_path {
        return dir;
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.retain(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    debian.sort_by_key(|dir| {
        dir.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    debian.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's initdb and pg_ctl were found neither on PATH nor in /usr/lib/postgresql/*/bin: run \
             ./scripts/test (it installs Debian's postgresql package)"
        )
    })
}

/// As root, the account to run the server as: `postgres` if it exists, else `nobody`.
fn unprivileged_user() -> Option<User> {
    let euid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u32>().ok())
        .expect("cannot tell the current user id (`id -u`)");
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name).then(|| User {
                uid: fields[2].parse().unwrap_or(0),
                gid: fields[3].parse().unwrap_or(0),
            })
        })
    };
    let user = find("postgres")
        .or_else(|| find("nobody"))
        .filter(|u| u.uid != 0)
        .expect("running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as");
    Some(user)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

/// 32 random alphanumeric characters from the OS (through the std hasher's random keys, which are seeded
/// from it), enough for a throw-away cluster's superuser.
fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| {
            let n = std::collections::hash_map::RandomState::new().build_hasher().finish();
            ALPHABET[(n % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}
