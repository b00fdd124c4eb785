//! Day one in production: no load waits forever, fallbacks are visible without logging set up, empty values
//! are not secrets, and a failing `main` prints the per-field report.
//!
//! Tests that need a process environment of their own (`AppSecrets::load()` reads it, and stderr is what is
//! checked) run this binary again as a child: `child_entry` (ignored in a normal run) does the child's part.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use skm::backend::{FetchError, MemoryBackend};
use skm::{ExposeSecret, Loader, SecretString, Secrets};

const SENTINEL: &str = "SENTINEL-d41-do-not-leak";

#[derive(Secrets)]
#[allow(dead_code)]
struct Remote {
    #[secret(path = "auth/jwt", key = "secret")]
    jwt: SecretString,
}

#[derive(Secrets)]
struct WithFallback {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt: SecretString,
}

#[derive(Secrets)]
struct Mixed {
    #[secret(env = "API_KEY")]
    api_key: SecretString,
    #[secret(env = "GREETING", plain)]
    greeting: String,
}

/// A listener that accepts every connection and never answers (its connections stay open until the process
/// ends): the endpoint a load must not wait on forever.
#[cfg_attr(not(feature = "aws"), allow(dead_code))] // used by the `aws` tests only
fn silent_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    url
}

/// Runs `child_entry` in `mode` with only `env` (and a scratch HOME and working directory).
fn child(mode: &str, env: &[(&str, &str)]) -> (Output, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "first_run::child_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("SKM_FIRST_RUN_CHILD", mode)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out, started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value the child printed as `NAME=value` (libtest may print its own words before it on the line).
#[cfg_attr(not(feature = "aws"), allow(dead_code))] // used by the `aws` tests only
fn printed<'a>(stdout: &'a str, name: &str) -> &'a str {
    let tag = format!("{name}=");
    stdout
        .lines()
        .find_map(|l| l.split_once(tag.as_str()).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("the child printed no {name}:\n{stdout}"))
}

/// The child's part of the tests below; does nothing unless `SKM_FIRST_RUN_CHILD` names a mode.
#[tokio::test]
#[ignore = "a child process of the tests in this file, which run it with --ignored"]
async fn child_entry() {
    let mode = std::env::var("SKM_FIRST_RUN_CHILD").expect("run by the tests of this file");
    match mode.as_str() {
        // `AppSecrets::load()` as a service calls it, against whatever the environment configures.
        "load" => {
            let started = Instant::now();
            let result = Remote::load().await;
            println!("ELAPSED_MS={}", started.elapsed().as_millis());
            match result {
                Ok(_) => println!("LOADED"),
                Err(e) => println!("ERROR={}", e.to_string().replace('\n', " | ")),
            }
        }
        // The backend is out and `.env` has the value: the load succeeds on the fallback.
        "fallback" | "fallback-subscriber" => {
            if mode == "fallback-subscriber" {
                tracing_subscriber::fmt().with_writer(std::io::stdout).init();
            }
            std::fs::write(".env", format!("JWT_SECRET_KEY={SENTINEL}\n")).unwrap();
            let backend = MemoryBackend::new().named("aws");
            backend.fail_all(FetchError::unavailable("connection refused"));
            let loaded = Loader::new()
                .backend(backend)
                .no_secrets_dir()
                .load_report::<WithFallback>()
                .await
                .unwrap();
            assert_eq!(loaded.value.jwt.expose_secret(), SENTINEL);
            println!("WARNINGS={}", loaded.warnings().len());
        }
        other => panic!("unknown mode {other}"),
    }
    println!("CHILD-OK");
}

#[cfg(feature = "aws")]
#[test]
fn a_silent_backend_fails_the_load_within_skm_deadline() {
    let endpoint = silent_endpoint();
    let aws = [
        ("SKM_BACKEND", "aws"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("SKM_DOTENV", ""),
    ];
    let mut env = aws.to_vec();
    env.push(("SKM_DEADLINE", "2"));
    let (out, elapsed) = child("load", &env);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("CHILD-OK"), "{stdout}\n{}", text(&out.stderr));
    assert!(elapsed < Duration::from_secs(3) + Duration::from_secs(2), "{elapsed:?}");
    let load_ms: u64 = printed(&stdout, "ELAPSED_MS").parse().unwrap();
    assert!(load_ms < 3_000, "the load took {load_ms} ms with SKM_DEADLINE=2");
    let error = printed(&stdout, "ERROR");
    assert!(
        error.contains("AWS Secrets Manager") && error.contains("deadline of 2 s"),
        "{error}"
    );
    assert!(
        error.contains("auth/jwt"),
        "the error names what it waited for: {error}"
    );
}

#[cfg(feature = "aws")]
#[test]
fn a_silent_backend_fails_the_load_within_the_default_deadline() {
    let endpoint = silent_endpoint();
    let env = [
        ("SKM_BACKEND", "aws"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("SKM_DOTENV", ""),
    ];
    let (out, _) = child("load", &env);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("CHILD-OK"), "{stdout}\n{}", text(&out.stderr));
    let load_ms: u64 = printed(&stdout, "ELAPSED_MS").parse().unwrap();
    let default = Loader::DEFAULT_DEADLINE.as_millis() as u64;
    assert!(load_ms < default + 1_000, "the load took {load_ms} ms");
    // The backend's own timeouts may end it first; either way the load ends and names the backend.
    let error = printed(&stdout, "ERROR");
    assert!(
        error.contains("AWS Secrets Manager") && error.contains("unavailable"),
        "{error}"
    );
}

#[test]
fn a_fallback_says_so_on_stderr_without_a_subscriber_and_only_through_tracing_with_one() {
    let (out, _) = child("fallback", &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("CHILD-OK") && stdout.contains("WARNINGS=1"),
        "{stdout}\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("skm: warning:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("field `jwt`") && lines[0].contains("unavailable") && lines[0].contains(".env"),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("backend backend"), "{}", lines[0]);
    eprintln!("the fallback line: {}", lines[0]);
    assert!(!stderr.contains(SENTINEL) && !stdout.contains(SENTINEL));

    let (out, _) = child("fallback-subscriber", &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("CHILD-OK"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("skm: warning"), "{stderr}");
    assert!(stdout.contains("backend failed; using a lower layer"), "{stdout}");
    assert!(!stderr.contains(SENTINEL) && !stdout.contains(SENTINEL));
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

#[tokio::test]
async fn a_fifo_as_a_secret_file_fails_at_once_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("JWT_SECRET_KEY");
    mkfifo(&fifo);
    let started = Instant::now();
    // In the secrets directory.
    let e = Loader::new()
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .secrets_dir(dir.path())
        .load::<WithFallback>()
        .await
        .err()
        .expect("a FIFO is no secret file")
        .to_string();
    assert!(e.contains(&fifo.display().to_string()) && e.contains("FIFO"), "{e}");
    // Named by `JWT_SECRET_KEY_FILE`.
    let e = Loader::new()
        .no_dotenv()
        .no_secrets_dir()
        .env_vars([("JWT_SECRET_KEY_FILE", fifo.display().to_string())])
        .load::<WithFallback>()
        .await
        .err()
        .expect("a FIFO is no secret file")
        .to_string();
    assert!(e.contains(&fifo.display().to_string()) && e.contains("FIFO"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_directory_or_an_oversized_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("JWT_SECRET_KEY")).unwrap();
    let e = Loader::new()
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .secrets_dir(dir.path())
        .load::<WithFallback>()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("JWT_SECRET_KEY") && e.contains("directory"), "{e}");

    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; skm::MAX_FILE_BYTES as usize + 1]).unwrap();
    let e = Loader::new()
        .no_dotenv()
        .no_secrets_dir()
        .env_vars([("JWT_SECRET_KEY_FILE", big.display().to_string())])
        .load::<WithFallback>()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&big.display().to_string()) && e.contains("1024 KiB cap"),
        "{e}"
    );
    // At the cap exactly, the file is read.
    let mut value = vec![b'y'; skm::MAX_FILE_BYTES as usize];
    value[0] = b'z';
    std::fs::write(&big, &value).unwrap();
    let loaded = Loader::new()
        .no_dotenv()
        .no_secrets_dir()
        .env_vars([("JWT_SECRET_KEY_FILE", big.display().to_string())])
        .load::<WithFallback>()
        .await
        .unwrap();
    assert_eq!(loaded.jwt.expose_secret().len(), skm::MAX_FILE_BYTES as usize);
}

#[tokio::test]
async fn an_empty_value_of_a_secret_is_absent_and_of_a_plain_field_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(&dotenv, format!("API_KEY={SENTINEL}\n")).unwrap();
    // `API_KEY=` in the environment: the `.env` value is used, the plain field keeps its empty text.
    let loaded = Loader::new()
        .no_secrets_dir()
        .dotenv(&dotenv)
        .env_vars([("API_KEY", ""), ("GREETING", "")])
        .load_report::<Mixed>()
        .await
        .unwrap();
    assert_eq!(loaded.value.api_key.expose_secret(), SENTINEL);
    assert_eq!(loaded.value.greeting, "");
    assert!(loaded.provenance.get("api_key").unwrap().to_string().contains(".env"));

    // Empty everywhere: missing, saying where it was empty.
    std::fs::write(&dotenv, "API_KEY=\n").unwrap();
    let e = Loader::new()
        .no_secrets_dir()
        .dotenv(&dotenv)
        .env_vars([("API_KEY", ""), ("GREETING", "hi")])
        .load::<Mixed>()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("missing (empty in env var API_KEY)"), "{e}");
    assert!(e.contains("missing (empty in .env file") && e.contains("line 1"), "{e}");

    // Turned off: an empty value is a value.
    let loaded = Loader::new()
        .no_secrets_dir()
        .dotenv(&dotenv)
        .env_vars([("API_KEY", ""), ("GREETING", "hi")])
        .empty_is_absent(false)
        .load::<Mixed>()
        .await
        .unwrap();
    assert_eq!(loaded.api_key.expose_secret(), "");
}

#[tokio::test]
async fn a_malformed_dotenv_names_line_and_column_never_content() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(&dotenv, format!("A=1\nJWT_SECRET_KEY=\"{SENTINEL}\nB=2\n")).unwrap();
    let e = Loader::new()
        .no_secrets_dir()
        .dotenv(&dotenv)
        .env_vars(Vec::<(String, String)>::new())
        .load::<WithFallback>()
        .await
        .err()
        .unwrap();
    let shown = format!("{e}\n{e:?}");
    assert!(shown.contains("line 2 at column 16"), "{shown}");
    assert!(!shown.contains("line ?") && !shown.contains(SENTINEL), "{shown}");
}

#[test]
fn the_debug_of_an_error_is_the_report_and_the_alternate_is_structured() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(
            Loader::new()
                .no_dotenv()
                .no_secrets_dir()
                .env_vars(Vec::<(String, String)>::new())
                .load::<WithFallback>(),
        )
        .err()
        .unwrap();
    assert_eq!(format!("{e:?}"), e.to_string());
    assert!(format!("{e:?}").starts_with("could not load 1 of 1 secrets of `WithFallback`:\n  - field `jwt`"));
    assert!(format!("{e:#?}").starts_with("Load(\n    LoadError {"), "{e:#?}");
}

/// A fresh project outside this workspace whose `main.rs` is `main_rs`, depending on skm with its default
/// features only (package `name`), and `cargo build` run on it: its own target directory (`target/first-run-fixture`), this
/// workspace's lock file, no network, so that it reuses what the workspace already downloaded.
fn build_fixture(name: &str, main_rs: &str) -> (tempfile::TempDir, std::path::PathBuf, std::process::Output) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("skm-tests lives inside the repository");
    let project = tempfile::tempdir().unwrap();
    let src = project.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        project.path().join("Cargo.toml"),
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
skm-secrets = {{ path = "{}" }}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}

[workspace]
"#,
            root.display(),
        ),
    )
    .unwrap();
    std::fs::copy(root.join("Cargo.lock"), project.path().join("Cargo.lock")).unwrap();
    std::fs::write(src.join("main.rs"), main_rs).unwrap();
    let target = root.join("target").join("first-run-fixture");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet"])
        .current_dir(project.path())
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    (project, target, build)
}

/// A fresh project, outside this workspace, built with skm's default features only (no `aws`): its `main`
/// returns `Result<(), skm::Error>` and fails. Checks what its user sees: the per-field report on stderr (a
/// snapshot), and one notice that `AWS_REGION` is ignored by this build.
#[test]
fn a_main_returning_skm_error_prints_the_report_and_a_build_without_aws_says_aws_region_is_ignored() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pipeline/first_run_fixture");
    let (project, target, build) = build_fixture("first-run-app", include_str!("first_run_fixture/app.rs"));
    assert!(build.status.success(), "fixture build failed:\n{}", text(&build.stderr));
    let binary = target.join("debug").join("first-run-app");

    let run = |env: &[(&str, &str)]| {
        let out = Command::new(&binary)
            .env_clear()
            .current_dir(project.path())
            .env("HOME", project.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        text(&out.stderr)
    };
    let stderr = run(&[]);
    let mut expected = String::new();
    std::fs::File::open(fixtures.join("app.stderr"))
        .unwrap()
        .read_to_string(&mut expected)
        .unwrap();
    assert_eq!(
        stderr, expected,
        "update skm-tests/tests/pipeline/first_run_fixture/app.stderr if the change is intended"
    );

    let stderr = run(&[("AWS_REGION", "eu-west-1")]);
    let notices: Vec<&str> = stderr.lines().filter(|l| l.starts_with("skm: warning:")).collect();
    assert_eq!(notices.len(), 1, "{stderr}");
    assert!(
        notices[0].contains("AWS_REGION is set") && notices[0].contains("features = [\"aws\"]"),
        "{}",
        notices[0]
    );
}

/// `#[secret(backend = "vault")]` in a build without the `vault` feature is a compile error at that attribute's
/// value, naming the feature to enable (it used to compile and fail at startup).
#[test]
fn a_backend_whose_feature_is_off_is_a_compile_error_at_the_attribute() {
    let (_project, _target, build) = build_fixture(
        "first-run-vault",
        include_str!("first_run_fixture/vault_without_feature.rs"),
    );
    assert!(
        !build.status.success(),
        "the fixture compiled without the `vault` feature"
    );
    let stderr = text(&build.stderr);
    assert!(
        stderr.contains("error[E0277]: the `vault` backend is not compiled into this build"),
        "{stderr}"
    );
    assert!(
        stderr.contains("src/main.rs:7:46"),
        "the error points at `\"vault\"`: {stderr}"
    );
    assert!(
        stderr.contains("skm-secrets = { version = \"0.1\", features = [\"vault\"] }"),
        "{stderr}"
    );
    // The local store is compiled in by default: its field raises nothing.
    assert_eq!(stderr.matches("error[E0277]").count(), 1, "{stderr}");
}
