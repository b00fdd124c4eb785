//! `skm rotate PATH --key password --postgres-role ROLE` (issue 15 part 3) against a real PostgreSQL cluster,
//! on the local store and on Vault (OpenBao): the role's password and the stored one change together, and a
//! database that refuses the change (no such role, an admin without rights, a role that cannot log in)
//! leaves a stored password the database accepts.

use std::path::Path;

use serde_json::Value;
use skm_testing::Postgres;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// One backend and one PostgreSQL cluster, with the `skm` binary run against them.
struct World {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
    pg: Postgres,
    #[cfg(feature = "vault")]
    _bao: Option<skm_testing::Bao>,
    #[cfg(feature = "aws")]
    _moto: Option<skm_testing::Moto>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    #[cfg(feature = "vault")]
    Vault,
    #[cfg(feature = "aws")]
    Aws,
}

impl World {
    async fn new(kind: Kind) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = vec![
            ("PATH".to_string(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), dir.path().display().to_string()),
            ("NO_COLOR".into(), "1".into()),
        ];
        #[cfg(feature = "vault")]
        let mut bao = None;
        #[cfg(feature = "aws")]
        let mut moto = None;
        match kind {
            Kind::Local => {
                vars.push(("SKM_BACKEND".into(), "local".into()));
                vars.push(("SKM_LOCAL_PATH".into(), dir.path().join(".skm").display().to_string()));
                vars.push(("SKM_LOCAL_KEY".into(), "5e".repeat(32)));
            }
            #[cfg(feature = "vault")]
            Kind::Vault => {
                let b = skm_testing::Bao::start().await;
                vars.push(("SKM_BACKEND".into(), "vault".into()));
                vars.push(("VAULT_ADDR".into(), b.addr()));
                vars.push(("VAULT_TOKEN".into(), b.root_token().to_string()));
                bao = Some(b);
            }
            #[cfg(feature = "aws")]
            Kind::Aws => {
                let m = skm_testing::Moto::start().await;
                vars.push(("SKM_BACKEND".into(), "aws".into()));
                vars.push(("AWS_REGION".into(), "eu-west-1".into()));
                vars.push(("AWS_ENDPOINT_URL".into(), m.endpoint()));
                vars.push(("AWS_ACCESS_KEY_ID".into(), "test".into()));
                vars.push(("AWS_SECRET_ACCESS_KEY".into(), "test".into()));
                vars.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
                moto = Some(m);
            }
        }
        let pg = Postgres::start().await;
        pg.execute("CREATE ROLE app LOGIN PASSWORD 'old-app-pw'; CREATE ROLE weak LOGIN PASSWORD 'weak-pw';")
            .await;
        let world = World {
            dir,
            vars,
            pg,
            #[cfg(feature = "vault")]
            _bao: bao,
            #[cfg(feature = "aws")]
            _moto: moto,
        };
        for (path, value) in [
            (
                "db/app",
                r#"{"username":"app","password":"old-app-pw","host":"127.0.0.1"}"#.to_string(),
            ),
            (
                "db/admin",
                serde_json::json!({ "password": world.pg.admin_password() }).to_string(),
            ),
        ] {
            let out = world.skm(&[], &["put", path], Some(&value)).await;
            assert_eq!(out.code, 0, "{out:?}");
        }
        world
    }

    async fn skm(&self, extra: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Out {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(Path::new(env!("CARGO_BIN_EXE_skm")))
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.vars.iter().cloned())
            .envs(extra.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        drop(pipe);
        let output = child.wait_with_output().await.unwrap();
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn admin_url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/postgres", self.pg.port())
    }

    /// `rotate db/app --key password --postgres-role ROLE`, the admin's password from `db/admin`.
    async fn rotate(&self, role: &str, path: &str) -> Out {
        let url = self.admin_url(self.pg.admin_user());
        let args = [
            "rotate",
            path,
            "--key",
            "password",
            "--generate",
            "24",
            "--postgres-role",
            role,
            "--postgres-url",
            &url,
            "--admin-path",
            "db/admin",
            "--admin-key",
            "password",
        ];
        self.skm(&[], &args, None).await
    }

    async fn stored(&self, path: &str) -> serde_json::Map<String, Value> {
        let out = self.skm(&[], &["get", path, "--reveal"], None).await;
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(out.stdout.trim_end()).unwrap()
    }
}

async fn rotates_role_and_secret_together(kind: Kind) {
    let w = World::new(kind).await;
    let out = w.rotate("app", "db/app").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("PostgreSQL role \"app\""), "{out:?}");
    let stored = w.stored("db/app").await;
    let new = stored["password"].as_str().unwrap().to_string();
    assert_eq!(new.chars().count(), 24);
    assert_eq!(stored["username"], "app", "the other keys are kept");
    assert!(!stored.contains_key("password.pending"), "{stored:?}");
    assert!(
        !out.stdout.contains(&new) && !out.stderr.contains(&new),
        "the password was printed"
    );
    w.pg.login("app", &new).await.expect("the stored password logs in");
    assert!(
        w.pg.login("app", "old-app-pw").await.is_err(),
        "the old password still works"
    );

    // Again: the rotation starts from what the first one stored.
    let out = w.rotate("app", "db/app").await;
    assert_eq!(out.code, 0, "{out:?}");
    let newer = w.stored("db/app").await["password"].as_str().unwrap().to_string();
    assert_ne!(newer, new);
    w.pg.login("app", &newer).await.unwrap();
}

/// The database refuses: the stored password stays the one it accepts, nothing pending is left, and the
/// message says what state the run left.
async fn a_refused_change_keeps_a_working_stored_password(kind: Kind) {
    let w = World::new(kind).await;

    // No such role.
    let out = w
        .skm(
            &[],
            &["put", "db/ghost"],
            Some(r#"{"username":"ghost","password":"ghost-pw"}"#),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = w.rotate("ghost", "db/ghost").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("does not exist"), "{out:?}");
    assert!(out.stderr.contains("the database is unchanged"), "{out:?}");
    assert!(out.stderr.contains("run the same command again"), "{out:?}");
    let stored = w.stored("db/ghost").await;
    assert_eq!(stored["password"], "ghost-pw");
    assert!(!stored.contains_key("password.pending"), "{stored:?}");

    // An admin without the right to change another role's password (PGPASSWORD gives its password).
    let url = w.admin_url("weak");
    let out = w
        .skm(
            &[("PGPASSWORD", "weak-pw")],
            &[
                "rotate",
                "db/app",
                "--key",
                "password",
                "--generate",
                "24",
                "--postgres-role",
                "app",
                "--postgres-url",
                &url,
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("ALTER ROLE failed"), "{out:?}");
    assert!(!out.stderr.contains("weak-pw"), "{out:?}");
    let stored = w.stored("db/app").await;
    assert_eq!(stored["password"], "old-app-pw");
    assert!(!stored.contains_key("password.pending"), "{stored:?}");
    w.pg.login("app", "old-app-pw")
        .await
        .expect("the stored password still logs in");

    // The change is accepted but the role cannot log in: the test fails and the role is set back.
    w.pg.execute("ALTER ROLE app NOLOGIN").await;
    let out = w.rotate("app", "db/app").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("set back to the stored password"), "{out:?}");
    let stored = w.stored("db/app").await;
    assert_eq!(stored["password"], "old-app-pw");
    assert!(!stored.contains_key("password.pending"), "{stored:?}");
    w.pg.execute("ALTER ROLE app LOGIN").await;
    w.pg.login("app", "old-app-pw")
        .await
        .expect("the role was set back to the stored password");

    // A URL carrying a password is refused before anything happens, and not echoed.
    let url = format!("postgres://postgres:SENTINEL-url-pw@127.0.0.1:{}/postgres", w.pg.port());
    let out = w
        .skm(
            &[],
            &[
                "rotate",
                "db/app",
                "--key",
                "password",
                "--generate",
                "24",
                "--postgres-role",
                "app",
                "--postgres-url",
                &url,
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("holds a password"), "{out:?}");
    assert!(!out.stderr.contains("SENTINEL-url-pw"), "{out:?}");
    assert_eq!(w.stored("db/app").await["password"], "old-app-pw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rotates_role_and_secret_together() {
    rotates_role_and_secret_together(Kind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_a_refused_change_keeps_a_working_stored_password() {
    a_refused_change_keeps_a_working_stored_password(Kind::Local).await;
}

#[cfg(feature = "vault")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_rotates_role_and_secret_together() {
    rotates_role_and_secret_together(Kind::Vault).await;
}

#[cfg(feature = "vault")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_a_refused_change_keeps_a_working_stored_password() {
    a_refused_change_keeps_a_working_stored_password(Kind::Vault).await;
}

/// On AWS the rotation service's protocol: AWSPENDING, the role changed and tested, then AWSCURRENT; a
/// refused change leaves AWSCURRENT (the password the database accepts) alone.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_rotates_through_the_staging_labels() {
    let w = World::new(Kind::Aws).await;
    let out = w.rotate("app", "db/app").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("AWSCURRENT"), "{out:?}");
    // Read by label: after a stage move, moto's batch read (what a plain `get` uses) still answers with the
    // first version; AWS answers AWSCURRENT (see the report).
    let out = w
        .skm(&[], &["get", "db/app", "--version", "AWSCURRENT", "--reveal"], None)
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let stored: serde_json::Map<String, Value> = serde_json::from_str(out.stdout.trim_end()).unwrap();
    let new = stored["password"].as_str().unwrap().to_string();
    assert_ne!(new, "old-app-pw");
    assert_eq!(stored["username"], "app");
    w.pg.login("app", &new).await.expect("AWSCURRENT logs in");
    assert!(w.pg.login("app", "old-app-pw").await.is_err());

    let out = w
        .skm(
            &[],
            &["put", "db/ghost"],
            Some(r#"{"username":"ghost","password":"ghost-pw"}"#),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = w.rotate("ghost", "db/ghost").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("AWSCURRENT is unchanged"), "{out:?}");
    let out = w
        .skm(
            &[],
            &[
                "get",
                "db/ghost",
                "--version",
                "AWSCURRENT",
                "--reveal",
                "--key",
                "password",
            ],
            None,
        )
        .await;
    assert_eq!(out.stdout.trim_end(), "ghost-pw", "{out:?}");
}
