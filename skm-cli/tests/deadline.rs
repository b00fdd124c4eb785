//! `--deadline` / `SKM_DEADLINE` on the tool (issue 23): against an endpoint that accepts connections and
//! never answers, `skm check` and `skm doctor` say what they are doing before they wait, and end within the
//! deadline, naming the backend.
#![cfg(feature = "aws")]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MANIFEST: &str = r#"skm_manifest = 2
struct = "SilentApp"

[[secret]]
field = "token"
path = "app/token"
env = "APP_TOKEN"
type = "SecretString"
"#;

/// A listener that accepts every connection and never answers; the connections stay open while it lives.
fn silent_endpoint() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    });
    (addr, handle)
}

struct Seen {
    /// The first line on stderr, and how long after the start it came.
    first_line: String,
    first_after: Duration,
    /// Whether the command was still running when that line came.
    running_then: bool,
    elapsed: Duration,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("skm.toml"), MANIFEST).unwrap();
    let (endpoint, _listener) = silent_endpoint();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_skm"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .env("SKM_MANIFEST", dir.path().join("skm.toml"))
        .env("SKM_BACKEND", "aws")
        .env("SKM_DOTENV", "")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first_line = String::new();
    stderr.read_line(&mut first_line).unwrap();
    let first_after = started.elapsed();
    let running_then = child.try_wait().unwrap().is_none();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    Seen {
        first_line,
        first_after,
        running_then,
        elapsed: started.elapsed(),
        code: status.code(),
        stdout,
        stderr: rest,
    }
}

fn assert_bounded(what: &str, seen: &Seen, progress: &str) {
    let all = format!(
        "{what}: exit {:?} after {:?}\n--- first stderr line after {:?}\n{}--- stderr\n{}--- stdout\n{}",
        seen.code, seen.elapsed, seen.first_after, seen.first_line, seen.stderr, seen.stdout
    );
    assert!(seen.first_line.contains(progress), "{all}");
    assert!(seen.first_line.contains("deadline 2s"), "{all}");
    assert!(
        seen.running_then && seen.first_after < Duration::from_millis(1500),
        "the progress line must come before the wait: {all}"
    );
    assert_eq!(seen.code, Some(1), "{all}");
    assert!(
        seen.elapsed < Duration::from_secs(3),
        "a 2 s deadline took {:?}: {all}",
        seen.elapsed
    );
    assert!(
        format!("{}{}", seen.stdout, seen.stderr).contains("AWS Secrets Manager"),
        "the backend is named: {all}"
    );
}

#[test]
fn check_ends_within_the_deadline_and_says_so_first() {
    let seen = run(&["--deadline", "2", "check"], &[]);
    assert_bounded("check --deadline 2", &seen, "checking 1 declared secrets against aws");
    let seen = run(&["check"], &[("SKM_DEADLINE", "2")]);
    assert_bounded("SKM_DEADLINE=2 check", &seen, "checking 1 declared secrets against aws");
}

#[test]
fn doctor_ends_within_the_deadline_and_says_so_first() {
    let seen = run(&["--deadline", "2", "doctor"], &[]);
    assert_bounded("doctor --deadline 2", &seen, "doctor: asking aws");
    // Each row once: the failure is the `reachable` row's, not repeated by the backend's own probe.
    let rows: Vec<&str> = seen.stdout.lines().collect();
    for (i, row) in rows.iter().enumerate() {
        assert!(!rows[..i].contains(row), "a duplicated row: {row}\n{}", seen.stdout);
    }
    assert_eq!(
        rows.iter().filter(|r| r.contains("fail")).count(),
        1,
        "one failure row: {}",
        seen.stdout
    );
}

#[test]
fn a_bad_deadline_is_a_usage_error() {
    let seen = run(&["--deadline", "soon", "check"], &[]);
    assert_eq!(seen.code, Some(2), "{}{}", seen.first_line, seen.stderr);
}
