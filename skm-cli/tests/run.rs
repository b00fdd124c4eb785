//! `skm run` and `skm export --github-env`, end to end with the standalone binary: values come from a
//! mounted-secrets directory (`SKM_SECRETS_DIR`), the child checks them itself, and skm never prints them.
//! `--restart-on-change` runs against the local store, changed by `skm put` while the child runs, and against
//! AWS (moto behind the counting proxy), where an unchanged tick must only ask for versions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "SENTINEL-run-token-4e1f";
const MULTI: &str = "SENTINEL-line-one\nSENTINEL-line-two\nghadelimiter_not-random\nEOF";

const MANIFEST: &str = r#"skm_manifest = 1
struct = "RunApp"

[[secret]]
field = "token"
env = "APP_TOKEN"
type = "SecretString"

[[secret]]
field = "cert"
env = "APP_CERT"
type = "SecretString"

[[secret]]
field = "no_env"
path = "app/elsewhere"
type = "Option<SecretString>"
optional = true
"#;

struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/APP_TOKEN"), format!("{TOKEN}\n")).unwrap();
        std::fs::write(dir.path().join("secrets/APP_CERT"), MULTI).unwrap();
        std::fs::write(dir.path().join("skm.toml"), MANIFEST).unwrap();
        // What the child compares against, read from a file so that no value is on any argv.
        std::fs::write(dir.path().join("expected"), TOKEN).unwrap();
        std::fs::write(dir.path().join("expected_cert"), MULTI).unwrap();
        Scene { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn skm(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skm"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SKM_BACKEND", "none")
            .env("SKM_DOTENV", "")
            .env("SKM_SECRETS_DIR", self.path("secrets"))
            .env("SKM_MANIFEST", self.path("skm.toml"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .current_dir(self.dir.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.skm(args).output().unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_sentinel(what: &str, s: &str) {
    assert!(!s.contains("SENTINEL"), "a value leaked into {what}: {s}");
}

#[test]
fn the_child_sees_the_values_and_nothing_else_does() {
    let scene = Scene::new();
    let report = scene.path("report");
    let script = r#"
        test "$APP_TOKEN" = "$(cat "$1")" || { echo "APP_TOKEN wrong" >&2; exit 10; }
        test "$APP_CERT" = "$(cat "$3")" || { echo "APP_CERT wrong" >&2; exit 11; }
        tr '\0' ' ' < /proc/$$/cmdline > "$2"; echo >> "$2"
        tr '\0' ' ' < /proc/$PPID/cmdline >> "$2"
        echo child-ran
    "#;
    let out = scene.run(&[
        "run",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        scene.path("expected").to_str().unwrap(),
        report.to_str().unwrap(),
        scene.path("expected_cert").to_str().unwrap(),
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("child-ran"), "{all}");
    assert!(
        all.contains("`no_env` has no `env`"),
        "skipped declarations are listed: {all}"
    );
    assert_no_sentinel("skm's output", &all);
    let cmdlines = std::fs::read_to_string(&report).unwrap();
    assert!(cmdlines.contains("skm run -- sh -c"), "the parent is skm: {cmdlines}");
    assert_no_sentinel("/proc/<pid>/cmdline of skm and the child", &cmdlines);
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let scene = Scene::new();
    assert_eq!(scene.run(&["run", "--", "sh", "-c", "exit 0"]).status.code(), Some(0));
    assert_eq!(scene.run(&["run", "--", "sh", "-c", "exit 3"]).status.code(), Some(3));
    let killed = scene.run(&["run", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(killed.status.code(), Some(128 + 9), "{}", text(&killed));
    let missing = scene.run(&["run", "--", "/nonexistent/command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", text(&missing));
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_reaches_the_child() {
    let scene = Scene::new();
    let (ready, got) = (scene.path("ready"), scene.path("got-term"));
    let script = r#"trap 'echo term > "$2"; exit 42' TERM; echo > "$1"; while :; do sleep 0.05; done"#;
    let mut skm = scene
        .skm(&[
            "run",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            ready.to_str().unwrap(),
            got.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&ready);
    let status = Command::new("kill")
        .args(["-TERM", &skm.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = skm.wait().unwrap();
    assert_eq!(status.code(), Some(42), "the child's trap ran and its code came back");
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "term");
}

#[test]
fn a_load_failure_starts_nothing() {
    let scene = Scene::new();
    std::fs::remove_file(scene.path("secrets/APP_TOKEN")).unwrap();
    let marker = scene.path("started");
    let out = scene.run(&["run", "--", "sh", "-c", "echo > \"$1\"", "sh", marker.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("APP_TOKEN"), "the usual report names the field: {all}");
    assert!(!marker.exists(), "the command must not start");
    assert_no_sentinel("the failure report", &all);
}

#[test]
fn only_limits_the_variables() {
    let scene = Scene::new();
    let out = scene.run(&[
        "run",
        "--only",
        "token",
        "--",
        "sh",
        "-c",
        r#"test -n "$APP_TOKEN" && test -z "${APP_CERT+x}""#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let bad = scene.run(&["run", "--only", "nope", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[cfg(unix)]
#[test]
fn mount_writes_a_0600_file_removed_afterwards() {
    use std::os::unix::fs::PermissionsExt;
    let scene = Scene::new();
    let mounted = scene.path("token.mounted");
    let mode = scene.path("mode");
    let script = r#"stat -c %a "$1" > "$2"; test "$(cat "$1")" = "$(cat "$3")""#;
    let out = scene.run(&[
        "run",
        "--mount",
        &format!("APP_TOKEN={}", mounted.display()),
        "--",
        "sh",
        "-c",
        script,
        "sh",
        mounted.to_str().unwrap(),
        mode.to_str().unwrap(),
        scene.path("expected").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&mode).unwrap().trim(), "600");
    assert!(!mounted.exists(), "removed when the child exited");
    assert_no_sentinel("skm's output", &text(&out));

    // Also when the child is killed.
    let out = scene.run(&[
        "run",
        "--mount",
        &format!("token={}", mounted.display()),
        "--",
        "sh",
        "-c",
        r#"test -f "$1" && kill -KILL $$"#,
        "sh",
        mounted.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    assert!(!mounted.exists(), "removed after the child was killed");

    // An existing file is never overwritten.
    std::fs::write(&mounted, "keep").unwrap();
    std::fs::set_permissions(&mounted, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = scene.run(&[
        "run",
        "--mount",
        &format!("APP_TOKEN={}", mounted.display()),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&mounted).unwrap(), "keep");
}

/// `$GITHUB_ENV` parsed with the runner's rules: `NAME=value` lines, or `NAME<<DELIMITER`, the value's lines,
/// and a line equal to `DELIMITER`.
fn parse_github_env(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let heredoc = line.find("<<");
        let equals = line.find('=');
        match (heredoc, equals) {
            (Some(h), e) if e.is_none_or(|e| h < e) => {
                let (name, delimiter) = (&line[..h], &line[h + 2..]);
                let mut value = Vec::new();
                loop {
                    let next = lines.next().expect("the delimiter closes the value");
                    if next == delimiter {
                        break;
                    }
                    value.push(next);
                }
                out.push((name.to_string(), value.join("\n")));
            }
            (_, Some(e)) => out.push((line[..e].to_string(), line[e + 1..].to_string())),
            _ => panic!("malformed GITHUB_ENV line"),
        }
    }
    out
}

#[test]
fn github_env_round_trips_and_masks_come_first() {
    let scene = Scene::new();
    let env_file = scene.path("github_env");
    std::fs::write(&env_file, "EARLIER=kept\n").unwrap();
    let out = scene
        .skm(&["export", "--github-env"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_ENV", &env_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let masks: Vec<&str> = stdout.lines().collect();
    for line in TOKEN.lines().chain(MULTI.lines()) {
        assert!(masks.contains(&format!("::add-mask::{line}").as_str()), "{stdout}");
    }
    assert!(
        masks.iter().all(|l| l.starts_with("::add-mask::")),
        "only masks on stdout: {stdout}"
    );
    assert_no_sentinel("stderr", &String::from_utf8_lossy(&out.stderr));

    let written = std::fs::read_to_string(&env_file).unwrap();
    let parsed = parse_github_env(&written);
    assert_eq!(
        parsed,
        vec![
            ("EARLIER".to_string(), "kept".to_string()),
            ("APP_TOKEN".to_string(), TOKEN.to_string()),
            ("APP_CERT".to_string(), MULTI.to_string()),
        ]
    );

    // `skm run` in Actions: the masks precede everything the child prints.
    let out = scene
        .skm(&["run", "--", "sh", "-c", "echo child-output"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.last(), Some(&"child-output"), "{stdout}");
    assert!(
        lines[..lines.len() - 1].iter().all(|l| l.starts_with("::add-mask::")),
        "{stdout}"
    );
    assert_eq!(lines.len() - 1, 5, "one mask per line of each value: {stdout}");
}

#[test]
fn export_outside_actions_needs_a_target() {
    let scene = Scene::new();
    let out = scene.run(&["export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--github-env"));
    let no_file = scene.run(&["export", "--github-env"]);
    assert_eq!(no_file.status.code(), Some(2), "GITHUB_ENV unset: {}", text(&no_file));
}

const RESTART_MANIFEST: &str = r#"skm_manifest = 1
struct = "RestartApp"

[[secret]]
field = "token"
path = "app/token"
env = "APP_TOKEN"
type = "SecretString"
"#;

const FIRST: &str = "SENTINEL-restart-first-71c2";
const SECOND: &str = "SENTINEL-restart-second-9d0e";

impl Scene {
    /// `skm` against a local store in the scene (and an empty secrets directory, so the backend is the source).
    fn local(&self, args: &[&str]) -> Command {
        std::fs::write(self.path("restart.toml"), RESTART_MANIFEST).unwrap();
        std::fs::create_dir_all(self.path("no-secrets")).unwrap();
        let mut cmd = self.skm(args);
        cmd.env("SKM_BACKEND", "local")
            .env("SKM_LOCAL_PATH", self.path(".skm"))
            .env("SKM_LOCAL_KEY", "7f".repeat(32))
            .env("SKM_MANIFEST", self.path("restart.toml"))
            .env("SKM_SECRETS_DIR", self.path("no-secrets"));
        cmd
    }

    /// `skm put PATH` with the value on stdin.
    fn put(&self, path: &str, value: &str) {
        use std::io::Write;
        let mut put = self
            .local(&["put", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        put.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
        let out = put.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_no_sentinel("skm put's output", &text(&out));
    }
}

/// A running `skm run` whose command exits on its own once `quit` exists: a failed assertion still ends both
/// (no process outlives the test).
struct Running {
    skm: Option<std::process::Child>,
    quit: PathBuf,
}

impl Running {
    /// Lets the command exit on its own and returns skm's output.
    fn finish(mut self) -> Output {
        std::fs::write(&self.quit, "").unwrap();
        self.skm.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut skm) = self.skm.take() else { return };
        let _ = std::fs::write(&self.quit, "");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = skm.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = skm.kill();
        let _ = skm.wait();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let got = lines(path);
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} has {} lines, not {n}: {got:?}",
            path.display(),
            got.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn restart_on_change_restarts_once_after_a_put() {
    let scene = Scene::new();
    scene.put("app/token", FIRST);
    let (log, quit, mounted) = (scene.path("log"), scene.path("quit"), scene.path("token.mounted"));
    // The child records what it started with (its env value, the mounted file and its mode) and the SIGTERM
    // it gets; skm never prints any of it. It exits 5 on its own once `quit` exists.
    let script = r#"
        trap 'echo "term $APP_TOKEN" >> "$1"; exit 0' TERM
        echo "start $APP_TOKEN $(cat "$3") $(stat -c %a "$3")" >> "$1"
        while :; do
            if [ -f "$2" ]; then exit 5; fi
            sleep 0.05
        done
    "#;
    let skm = scene
        .local(&[
            "run",
            "--restart-on-change",
            "--watch-ttl",
            "1",
            "--kill-after",
            "5",
            "--mount",
            &format!("APP_TOKEN={}", mounted.display()),
            "--",
            "sh",
            "-c",
            script,
            "sh",
            log.to_str().unwrap(),
            quit.to_str().unwrap(),
            mounted.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let skm = Running {
        skm: Some(skm),
        quit: quit.clone(),
    };

    assert_eq!(wait_for_lines(&log, 1), [format!("start {FIRST} {FIRST} 600")]);
    // Several TTLs without a change: no restart.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(lines(&log).len(), 1, "restarted without a change: {:?}", lines(&log));

    scene.put("app/token", SECOND);
    let got = wait_for_lines(&log, 3);
    assert_eq!(
        got,
        [
            format!("start {FIRST} {FIRST} 600"),
            format!("term {FIRST}"),
            format!("start {SECOND} {SECOND} 600"),
        ],
        "the old child got SIGTERM, the new one the new value (env and mounted file)"
    );
    // Exactly once: a few more TTLs, nothing new.
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(lines(&log).len(), 3, "{:?}", lines(&log));

    // The command's own exit ends skm with its code.
    let out = skm.finish();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(5), "{all}");
    assert!(all.contains("`token` changed; restarting the command"), "{all}");
    assert_eq!(all.matches("restarting").count(), 1, "{all}");
    assert_no_sentinel("skm's output", &all);
    assert!(!mounted.exists(), "the mounted file is removed at the end");
}

/// Against AWS (moto behind the counting proxy): a tick without a change asks `DescribeSecret` for the
/// version and fetches no value; a put is seen and restarts the command once.
#[cfg(all(unix, feature = "aws"))]
#[test]
fn restart_on_change_probes_versions_and_fetches_values_only_on_a_change() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = runtime.block_on(skm_testing::Moto::start());
    let proxy = runtime.block_on(skm_testing::Proxy::start(&moto.endpoint()));
    let scene = Scene::new();
    std::fs::write(scene.path("restart.toml"), RESTART_MANIFEST).unwrap();
    std::fs::create_dir_all(scene.path("no-secrets")).unwrap();
    let aws = |args: &[&str]| {
        let mut cmd = scene.skm(args);
        cmd.env("SKM_BACKEND", "aws")
            .env("AWS_ENDPOINT_URL", proxy.url())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("SKM_MANIFEST", scene.path("restart.toml"))
            .env("SKM_SECRETS_DIR", scene.path("no-secrets"));
        cmd
    };
    let put = |value: &str| {
        use std::io::Write;
        let mut put = aws(&["put", "app/token"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        put.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
        let out = put.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    put(FIRST);

    let (log, quit) = (scene.path("log"), scene.path("quit"));
    let script = r#"
        trap 'exit 0' TERM
        echo "start $APP_TOKEN" >> "$1"
        while :; do
            if [ -f "$2" ]; then exit 5; fi
            sleep 0.05
        done
    "#;
    let skm = aws(&[
        "run",
        "--restart-on-change",
        "--watch-ttl",
        "1",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        log.to_str().unwrap(),
        quit.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let skm = Running {
        skm: Some(skm),
        quit: quit.clone(),
    };
    assert_eq!(wait_for_lines(&log, 1), [format!("start {FIRST}")]);

    proxy.clear();
    std::thread::sleep(Duration::from_millis(3500));
    let probes = proxy.count_of("secretsmanager.DescribeSecret");
    let values = proxy.count_of("secretsmanager.BatchGetSecretValue") + proxy.count_of("secretsmanager.GetSecretValue");
    assert!(probes >= 2, "{probes} DescribeSecret calls in 3.5 s of 1 s ticks");
    assert_eq!(values, 0, "unchanged ticks fetched values ({probes} probes)");
    assert_eq!(lines(&log).len(), 1, "restarted without a change: {:?}", lines(&log));

    put(SECOND);
    assert_eq!(
        wait_for_lines(&log, 2),
        [format!("start {FIRST}"), format!("start {SECOND}")]
    );
    let out = skm.finish();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(5), "{all}");
    assert_eq!(all.matches("restarting").count(), 1, "{all}");
    assert_no_sentinel("skm's output", &all);
}

/// Issue 28: `SIGUSR1` to `skm run --restart-on-change` reloads at once (the TTL here is an hour), and
/// `--restart-jitter` delays the restart by at most its seconds.
#[cfg(unix)]
#[test]
fn sigusr1_reloads_at_once_and_the_restart_waits_its_jitter() {
    let scene = Scene::new();
    scene.put("app/token", FIRST);
    let (log, quit) = (scene.path("log"), scene.path("quit"));
    let script = r#"
        echo "start $APP_TOKEN" >> "$1"
        while :; do
            if [ -f "$2" ]; then exit 5; fi
            sleep 0.05
        done
    "#;
    let skm = scene
        .local(&[
            "run",
            "--restart-on-change",
            "--watch-ttl",
            "3600",
            "--kill-after",
            "5",
            "--restart-jitter",
            "1",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            log.to_str().unwrap(),
            quit.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = skm.id() as libc::pid_t;
    let skm = Running {
        skm: Some(skm),
        quit: quit.clone(),
    };
    assert_eq!(wait_for_lines(&log, 1), [format!("start {FIRST}")]);

    // SIGUSR1 without a change: a reload, no restart, and skm is still running (not ended by the signal).
    // SAFETY: `pid` is our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lines(&log).len(), 1, "{:?}", lines(&log));

    scene.put("app/token", SECOND);
    let signalled = Instant::now();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
    let got = wait_for_lines(&log, 2);
    let took = signalled.elapsed();
    assert_eq!(got, [format!("start {FIRST}"), format!("start {SECOND}")]);
    // The reload is at once and the jitter at most 1 s; generous for a loaded machine, far below the TTL.
    assert!(
        took < Duration::from_secs(10),
        "the restart took {took:?} after SIGUSR1"
    );

    let out = skm.finish();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(5), "{all}");
    assert_eq!(all.matches("SIGUSR1: reloading the secrets now").count(), 2, "{all}");
    assert_eq!(all.matches("restarting the command").count(), 1, "{all}");
    assert!(
        all.contains("(--restart-jitter)") || all.contains("restarting the command (SIGTERM"),
        "{all}"
    );
    assert_no_sentinel("skm's output", &all);
}

#[test]
fn restart_flags_need_restart_on_change() {
    let scene = Scene::new();
    let out = scene.run(&["run", "--watch-ttl", "1", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = scene.run(&["run", "--restart-on-change", "--watch-ttl", "0", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = scene.run(&["run", "--restart-jitter", "5", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // With nothing to restart for, the command's code is still skm's.
    let out = scene.run(&["run", "--restart-on-change", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

#[cfg(unix)]
#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
    let scene = Scene::new();
    scene.put("app/token", FIRST);
    let (log, quit) = (scene.path("log"), scene.path("quit"));
    let script = r#"
        trap 'echo ignored >> "$1"' TERM
        echo "start $APP_TOKEN $$" >> "$1"
        while :; do
            if [ -f "$2" ]; then exit 5; fi
            sleep 0.05
        done
    "#;
    let skm = scene
        .local(&[
            "run",
            "--restart-on-change",
            "--watch-ttl",
            "1",
            "--kill-after",
            "1",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            log.to_str().unwrap(),
            quit.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let skm = Running {
        skm: Some(skm),
        quit: quit.clone(),
    };
    let first = wait_for_lines(&log, 1);
    let old_pid = first[0].rsplit(' ').next().unwrap().to_string();
    let started = Instant::now();
    scene.put("app/token", SECOND);
    let got = wait_for_lines(&log, 3);
    assert_eq!(got[1], "ignored", "{got:?}");
    assert!(got[2].starts_with(&format!("start {SECOND} ")), "{got:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the new child started before the grace period ended"
    );
    let alive = Command::new("kill")
        .args(["-0", &old_pid])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!alive.success(), "the old child survived SIGKILL");
    let out = skm.finish();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_no_sentinel("skm's output", &text(&out));
}

/// Values a mask line must not split or change: a bare `\r`, `\r\n`, and the runner's own escapes.
const MASKED: [(&str, &str); 4] = [
    ("APP_CR", "SENTINEL-cr-head-51a0\rSENTINEL-cr-tail-51a1"),
    ("APP_CRLF", "SENTINEL-crlf-head-62b0\r\nSENTINEL-crlf-tail-62b1"),
    ("APP_PCT", "SENTINEL-pct-73c0%25SENTINEL-pct-73c1"),
    ("APP_ESC_NL", "SENTINEL-escnl-84d0%0ASENTINEL-escnl-84d1%0D"),
];

const MASKED_MANIFEST: &str = r#"skm_manifest = 1
struct = "MaskApp"

[[secret]]
field = "cr"
env = "APP_CR"
type = "SecretString"

[[secret]]
field = "crlf"
env = "APP_CRLF"
type = "SecretString"

[[secret]]
field = "pct"
env = "APP_PCT"
type = "SecretString"

[[secret]]
field = "esc_nl"
env = "APP_ESC_NL"
type = "SecretString"
"#;

/// The lines the Actions runner reads from a step's output: .NET's `ReadLine` ends a line at `\n`, `\r\n`
/// or a bare `\r`.
fn runner_lines(stdout: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = stdout;
    while let Some(at) = rest.find(['\r', '\n']) {
        lines.push(&rest[..at]);
        let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[at + skip..];
    }
    if !rest.is_empty() {
        lines.push(rest);
    }
    lines
}

/// The runner's unescaping of a command's data (`ActionCommand`): `%0D`, `%0A`, then `%25`.
fn runner_unescape(data: &str) -> String {
    data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")
}

/// What the runner masks after reading `stdout`, and the lines it prints (every line that is not a mask
/// command). A registered value is masked as a whole and, since runner 2.298, line by line: every segment
/// between `\r` and `\n`.
fn runner_masks(stdout: &str) -> (Vec<String>, Vec<String>) {
    let (mut masks, mut printed) = (Vec::new(), Vec::new());
    for line in runner_lines(stdout) {
        match line.strip_prefix("::add-mask::") {
            Some(data) => {
                let value = runner_unescape(data);
                masks.extend(
                    value
                        .split(['\r', '\n'])
                        .filter(|s| !s.trim().is_empty())
                        .map(String::from),
                );
                masks.push(value);
            }
            None => printed.push(line.to_string()),
        }
    }
    (masks, printed)
}

/// Finding 1 of the second security review: every segment of every value is registered with the runner,
/// exactly as it appears in the value, and no part of a value is printed outside a mask command's escaped data.
#[test]
fn github_masks_survive_the_runners_parsing() {
    let scene = Scene::new();
    std::fs::write(scene.path("mask.toml"), MASKED_MANIFEST).unwrap();
    let env_file = scene.path("github_env");
    let runs: [&[&str]; 2] = [&["export", "--github-env"], &["run", "--", "true"]];
    for args in runs {
        let mut cmd = scene.skm(args);
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_ENV", &env_file)
            .env("SKM_MANIFEST", scene.path("mask.toml"));
        for (name, value) in MASKED {
            cmd.env(name, value);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert_no_sentinel("stderr", &String::from_utf8_lossy(&out.stderr));
        let (masks, printed) = runner_masks(&stdout);
        for (name, value) in MASKED {
            for segment in value.split(['\r', '\n']).filter(|s| !s.is_empty()) {
                assert!(
                    masks.iter().any(|m| m == segment),
                    "{args:?}: {name}'s segment {segment:?} is not registered; the runner read {masks:?} from {stdout:?}"
                );
                for line in &printed {
                    assert!(
                        !line.contains(segment),
                        "{args:?}: {name}'s segment printed in clear: {line:?}"
                    );
                }
            }
        }
        assert_no_sentinel("the lines the runner prints", &printed.join("\n"));
    }
}

/// Second review, #8: `export --github-env` creates a missing `$GITHUB_ENV` file readable by its owner only;
/// an existing file (the runner's own) keeps its mode.
#[cfg(unix)]
#[test]
fn github_env_is_created_0600_and_an_existing_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let scene = Scene::new();
    let export = |file: &Path| {
        let out = scene
            .skm(&["export", "--github-env"])
            .env("GITHUB_ENV", file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    let missing = scene.path("new_github_env");
    export(&missing);
    let mode = std::fs::metadata(&missing).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a created $GITHUB_ENV is mode {mode:o}");
    assert!(std::fs::read_to_string(&missing).unwrap().contains(TOKEN));

    let existing = scene.path("runner_github_env");
    std::fs::write(&existing, "").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
    export(&existing);
    let mode = std::fs::metadata(&existing).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "an existing $GITHUB_ENV changed to mode {mode:o}");
}

const REFERENCED: &str = "SENTINEL-referenced-db-url-3b7a";

/// An environment variable holding `ref+local://...` reaches the command resolved (as `op run` does with
/// `op://`), beside the declared secrets; skm prints neither.
#[test]
fn references_in_the_environment_reach_the_command_resolved() {
    let scene = Scene::new();
    scene.put("app/db", REFERENCED);
    std::fs::write(scene.path("expected_ref"), REFERENCED).unwrap();
    let script = r#"
        test "$DATABASE_URL" = "$(cat "$1")" || { echo "DATABASE_URL wrong" >&2; exit 10; }
        test "$APP_TOKEN" = "$(cat "$2")" || { echo "APP_TOKEN wrong" >&2; exit 11; }
        test "$PLAIN" = "not-a-reference" || { echo "PLAIN wrong" >&2; exit 12; }
        echo child-ran
    "#;
    let out = scene
        .skm(&[
            "run",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            scene.path("expected_ref").to_str().unwrap(),
            scene.path("expected").to_str().unwrap(),
        ])
        .env("SKM_LOCAL_PATH", scene.path(".skm"))
        .env("SKM_LOCAL_KEY", "7f".repeat(32))
        .env("DATABASE_URL", "ref+local://app/db")
        .env("PLAIN", "not-a-reference")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("child-ran"), "{all}");
    assert_no_sentinel("skm's output", &all);
}

/// A missing secret and an unknown backend are reported together, by variable and reference, and nothing
/// starts.
#[test]
fn failed_references_start_nothing_and_are_reported_together() {
    let scene = Scene::new();
    scene.put("app/db", REFERENCED);
    let out = scene
        .skm(&["run", "--", "sh", "-c", "echo child-ran"])
        .env("SKM_LOCAL_PATH", scene.path(".skm"))
        .env("SKM_LOCAL_KEY", "7f".repeat(32))
        .env("DATABASE_URL", "ref+local://app/db")
        .env("GONE_URL", "ref+local://app/gone")
        .env("CACHE_URL", "ref+nope://cache")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains("child-ran"), "{all}");
    for needle in [
        "could not load 2 of 3 secrets of `environment references`",
        "field `CACHE_URL`",
        "unknown backend `nope`",
        "field `GONE_URL`",
        "ref+local://app/gone",
    ] {
        assert!(all.contains(needle), "{needle}: {all}");
    }
    assert_no_sentinel("skm's output", &all);
}

/// References to two real backends in the environment, configured by their own variables only: Vault in
/// vals's mount-first form (an OpenBao dev server, written by the bao CLI) and AWS Secrets Manager (moto,
/// written by boto3). The command gets both resolved; skm prints neither.
#[cfg(all(unix, feature = "aws", feature = "vault"))]
#[test]
fn references_to_vault_and_aws_in_the_environment_reach_the_command_resolved() {
    const FROM_VAULT: &str = "SENTINEL-run-ref-vault-61d0";
    const FROM_AWS: &str = "SENTINEL-run-ref-aws-2c95";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bao = runtime.block_on(skm_testing::Bao::start());
    let moto = runtime.block_on(skm_testing::Moto::start());
    let url = format!("url={FROM_VAULT}");
    runtime.block_on(bao.bao(&["kv", "put", "secret/app/db", &url]));
    let seeded = Command::new(skm_testing::venv_bin("python"))
        .args([
            "-c",
            r#"
import json, os, boto3
sm = boto3.client("secretsmanager", endpoint_url=os.environ["MOTO"], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
sm.create_secret(Name="app/api", SecretString=json.dumps({"key": os.environ["VALUE"]}))
"#,
        ])
        .env("MOTO", moto.endpoint())
        .env("VALUE", FROM_AWS)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "boto3 (is .venv installed? run ./scripts/test): {}",
        text(&seeded)
    );

    let scene = Scene::new();
    std::fs::write(scene.path("expected_vault"), FROM_VAULT).unwrap();
    std::fs::write(scene.path("expected_aws"), FROM_AWS).unwrap();
    let script = r#"
        test "$DATABASE_URL" = "$(cat "$1")" || { echo "DATABASE_URL wrong" >&2; exit 10; }
        test "$API_KEY" = "$(cat "$2")" || { echo "API_KEY wrong" >&2; exit 11; }
        echo child-ran
    "#;
    let out = scene
        .skm(&[
            "run",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            scene.path("expected_vault").to_str().unwrap(),
            scene.path("expected_aws").to_str().unwrap(),
        ])
        .env("DATABASE_URL", "ref+vault://secret/app/db#url")
        .env("API_KEY", "ref+aws://app/api#key")
        .env("VAULT_ADDR", bao.addr())
        .env("VAULT_TOKEN", bao.root_token())
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("child-ran"), "{all}");
    assert_no_sentinel("skm's output", &all);
}
