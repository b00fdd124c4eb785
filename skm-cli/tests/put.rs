//! `skm put` (issue 23): a value piped in loses exactly one trailing newline (`--keep-newline` keeps it), and
//! the first `put` in a project with no backend configured writes to the local store, saying so.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use skm::backend::{Backend, FetchRequest, MemoryBackend, SecretValue};
use skm::cli::{exit, Cli, Io};
use skm::ExposeSecret;

async fn put(memory: &MemoryBackend, args: &[&str], stdin: &str) -> (u8, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = stdin.as_bytes();
    let mut io = Io {
        stdin: &mut input,
        stdout: &mut out,
        stderr: &mut err,
        stdin_tty: false,
        stdout_tty: false,
        stderr_tty: false,
    };
    let mut argv = vec!["skm", "put"];
    argv.extend(args);
    let code = Cli::standalone()
        .backend(Arc::new(memory.clone()))
        .execute(argv, &mut io)
        .await;
    let all = format!("{}{}", String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
    assert!(!all.contains("SENTINEL"), "a value was printed: {all}");
    (code, all)
}

async fn stored(memory: &MemoryBackend, path: &str) -> String {
    match memory
        .fetch(&[FetchRequest::current(path)])
        .await
        .remove(0)
        .unwrap()
        .value
    {
        SecretValue::Text(t) => t.expose_secret().to_string(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn one_trailing_newline_from_stdin_is_removed_unless_kept() {
    let memory = MemoryBackend::new();
    let cases = [
        (&["app/echo"][..], "SENTINEL-echo-1a1a\n", "SENTINEL-echo-1a1a"),
        (&["app/crlf"][..], "SENTINEL-crlf-2b2b\r\n", "SENTINEL-crlf-2b2b"),
        (&["app/none"][..], "SENTINEL-none-3c3c", "SENTINEL-none-3c3c"),
        // Exactly one: a blank last line is part of the value.
        (&["app/two"][..], "SENTINEL-two-4d4d\n\n", "SENTINEL-two-4d4d\n"),
        (
            &["app/multi"][..],
            "SENTINEL-l1-5e5e\nSENTINEL-l2\n",
            "SENTINEL-l1-5e5e\nSENTINEL-l2",
        ),
        (
            &["app/keep", "--keep-newline"][..],
            "SENTINEL-keep-6f6f\n",
            "SENTINEL-keep-6f6f\n",
        ),
    ];
    for (args, input, want) in cases {
        let (code, all) = put(&memory, args, input).await;
        assert_eq!(code, exit::OK, "{args:?}: {all}");
        assert_eq!(stored(&memory, args[0]).await, want, "{args:?} with {input:?}");
    }
    // The same rule for a key inside an object.
    let (code, all) = put(&memory, &["app/obj", "--key", "token"], "SENTINEL-key-7a7a\n").await;
    assert_eq!(code, exit::OK, "{all}");
    assert_eq!(stored(&memory, "app/obj").await, r#"{"token":"SENTINEL-key-7a7a"}"#);
}

#[test]
fn put_help_documents_the_newline() {
    let out = Command::new(env!("CARGO_BIN_EXE_skm"))
        .args(["put", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--keep-newline") && help.contains("trailing newline"),
        "{help}"
    );
}

/// A fresh project: no SKM_BACKEND, no backend's signal, no `.skm` yet.
fn skm(dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skm"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_first_put_without_a_backend_uses_the_local_store_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = skm(dir.path(), &["put", "app/first"], "SENTINEL-first-8b8b\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(
        lines[0].contains("local store") && lines[0].contains(".skm"),
        "{stderr}"
    );
    assert!(!stderr.contains("SENTINEL"), "{stderr}");
    assert!(dir.path().join(".skm").is_dir());

    // The store now exists, so detection finds it: later commands need no flag, and `put` says nothing more.
    let out = skm(dir.path(), &["get", "app/first", "--reveal"], "");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SENTINEL-first-8b8b\n");
    let out = skm(dir.path(), &["put", "app/second"], "SENTINEL-second-9c9c\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("local store"));

    // `none` still means none.
    let other = tempfile::tempdir().unwrap();
    let out = skm(
        other.path(),
        &["--backend", "none", "put", "app/x"],
        "SENTINEL-none-0d0d\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!other.path().join(".skm").exists());
}
