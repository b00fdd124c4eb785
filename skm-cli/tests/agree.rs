//! The embedded tool and the standalone tool agree (issue 23): on one struct, a `plain` `u16` with a default
//! and a secret with `min_len`, `not` and `pattern`, the application's own `secrets` binary and
//! `skm --manifest` (with the manifest that binary exported) give the same `run` environment, the same
//! `export --github-env` file and masks, and the same `check` verdict, including a validator failure.
//!
//! This test binary has its own `main` (`harness = false`): started with `SKM_AGREE_AS_APP=agree` (or
//! `defaulted`), it *is* the application's `secrets` binary, `skm::cli::run::<T>()`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use skm::{SecretString, Secrets};

const AS_APP: &str = "SKM_AGREE_AS_APP";

/// The struct both tools work on.
#[derive(Secrets)]
#[allow(dead_code)]
struct AgreeSecrets {
    #[secret(env = "PORT", default = "8080", plain)]
    port: u16,
    #[secret(env = "SIGNING_KEY", min_len = 24, not = ["changeme"], pattern = "^sk-")]
    signing_key: SecretString,
}

/// A secret-typed field with a default: compiled into the application, never into a manifest.
#[derive(Secrets)]
#[allow(dead_code)]
struct DefaultedSecrets {
    #[secret(env = "API_TOKEN", default = "SENTINEL-compiled-default-5b5b")]
    api_token: SecretString,
}

const KEY: &str = "sk-SENTINEL-agree-key-0123456789";

struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    /// A scratch directory with the manifest `app` exported (`secrets manifest -o skm.toml`).
    fn new(app: &str) -> Scene {
        let scene = Scene {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = scene.embedded(app, &["manifest", "-o", "skm.toml"], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        scene
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env("SKM_BACKEND", "none")
            .env("SKM_DOTENV", "")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .current_dir(self.dir.path());
        cmd
    }

    /// The application's `secrets` binary (this test binary in its other part).
    fn embedded(&self, app: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let exe = std::env::current_exe().unwrap();
        self.command(&exe, args, env).env(AS_APP, app).output().unwrap()
    }

    /// The standalone `skm --manifest skm.toml`.
    fn standalone(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut argv = vec!["--manifest", "skm.toml"];
        argv.extend(args);
        self.command(Path::new(env!("CARGO_BIN_EXE_skm")), &argv, env)
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `$GITHUB_ENV` parsed with the runner's rules: `NAME<<DELIMITER`, the value's lines, the delimiter.
fn parse_github_env(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let (name, delimiter) = line.split_once("<<").expect("skm writes heredocs only");
        let mut value = Vec::new();
        for next in lines.by_ref() {
            if next == delimiter {
                break;
            }
            value.push(next);
        }
        out.push((name.to_string(), value.join("\n")));
    }
    out
}

/// What one tool did with one environment: `run`'s child environment, `export`'s file and masks, `check`.
#[derive(Debug, PartialEq)]
struct Outcome {
    run_code: Option<i32>,
    /// The child's environment, sorted, without the variable that selects the tool.
    run_env: Option<Vec<String>>,
    export_code: Option<i32>,
    export_file: Vec<(String, String)>,
    masks: Vec<String>,
    check_code: Option<i32>,
    /// Each field's `check --json` status.
    check_status: Vec<(String, String)>,
}

fn outcome(scene: &Scene, embedded: bool, env: &[(&str, &str)]) -> Outcome {
    let tag = if embedded { "embedded" } else { "standalone" };
    let exec = |args: &[&str], extra: &[(&str, &str)]| {
        let mut all = env.to_vec();
        all.extend_from_slice(extra);
        if embedded {
            scene.embedded("agree", args, &all)
        } else {
            scene.standalone(args, &all)
        }
    };
    let child_env = scene.path(format!("{tag}.env").as_str());
    let _ = std::fs::remove_file(&child_env);
    let run = exec(
        &[
            "run",
            "--",
            "sh",
            "-c",
            "env > \"$1\"",
            "sh",
            child_env.to_str().unwrap(),
        ],
        &[],
    );
    let run_env = std::fs::read_to_string(&child_env).ok().map(|t| {
        let mut vars: Vec<String> = t.lines().filter(|l| !l.starts_with(AS_APP)).map(String::from).collect();
        vars.sort();
        vars
    });

    let github_env = scene.path(format!("{tag}.github_env").as_str());
    let _ = std::fs::remove_file(&github_env);
    let export = exec(
        &["export", "--github-env"],
        &[("GITHUB_ACTIONS", "true"), ("GITHUB_ENV", github_env.to_str().unwrap())],
    );
    let export_file = std::fs::read_to_string(&github_env)
        .map(|t| parse_github_env(&t))
        .unwrap_or_default();
    let masks = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter(|l| l.starts_with("::add-mask::"))
        .map(String::from)
        .collect();

    let check = exec(&["check", "--json"], &[]);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout)
        .unwrap_or_else(|e| panic!("{tag} check --json is not JSON ({e}): {}", text(&check)));
    let check_status = report["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for out in [&run, &export, &check] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("SENTINEL"), "{tag}: a value on stderr: {stderr}");
    }
    Outcome {
        run_code: run.status.code(),
        run_env,
        export_code: export.status.code(),
        export_file,
        masks,
        check_code: check.status.code(),
        check_status,
    }
}

fn both_agree() {
    let scene = Scene::new("agree");
    let manifest = std::fs::read_to_string(scene.path("skm.toml")).unwrap();
    assert!(
        manifest.contains("default = \"8080\""),
        "a plain default is exported:\n{manifest}"
    );
    assert!(
        manifest.contains("min_len = 24") && manifest.contains("changeme") && manifest.contains("pattern = \"^sk-\""),
        "the validators are exported:\n{manifest}"
    );

    // A good key, PORT from its default: both run, export and check alike.
    let good = [("SIGNING_KEY", KEY)];
    let embedded = outcome(&scene, true, &good);
    let standalone = outcome(&scene, false, &good);
    assert_eq!(embedded, standalone);
    assert_eq!(embedded.run_code, Some(0), "{embedded:#?}");
    let run_env = embedded.run_env.as_ref().unwrap();
    assert!(run_env.contains(&"PORT=8080".to_string()), "{run_env:#?}");
    assert!(run_env.contains(&format!("SIGNING_KEY={KEY}")), "{run_env:#?}");
    assert_eq!(embedded.export_code, Some(0), "{embedded:#?}");
    assert_eq!(
        embedded.export_file,
        vec![
            ("PORT".to_string(), "8080".to_string()),
            ("SIGNING_KEY".to_string(), KEY.to_string()),
        ]
    );
    // The secret is masked; the plain port is not (it would become `***` in every later log line).
    assert_eq!(embedded.masks, vec![format!("::add-mask::{KEY}")], "{embedded:#?}");
    assert_eq!(embedded.check_code, Some(0), "{embedded:#?}");

    // PORT from the environment wins over the default, in both.
    let port = [("SIGNING_KEY", KEY), ("PORT", "9090")];
    let embedded = outcome(&scene, true, &port);
    assert_eq!(embedded, outcome(&scene, false, &port));
    assert!(embedded.run_env.unwrap().contains(&"PORT=9090".to_string()));

    // Every validator failure fails both, the same way: nothing runs, nothing is exported, check exits 1.
    for bad in ["changeme", "sk-short", "pk-SENTINEL-agree-0123456789abcdef"] {
        let env = [("SIGNING_KEY", bad)];
        let embedded = outcome(&scene, true, &env);
        let standalone = outcome(&scene, false, &env);
        assert_eq!(embedded, standalone, "SIGNING_KEY={bad}");
        assert_eq!(embedded.run_code, Some(1), "SIGNING_KEY={bad}: {embedded:#?}");
        assert_eq!(embedded.run_env, None, "the command ran with SIGNING_KEY={bad}");
        assert_eq!(embedded.export_code, Some(1), "{embedded:#?}");
        assert!(embedded.export_file.is_empty(), "{embedded:#?}");
        assert_eq!(embedded.check_code, Some(1), "{embedded:#?}");
        assert!(
            embedded.check_status.contains(&("port".into(), "ok".into())),
            "{embedded:#?}"
        );
        assert!(
            !embedded.check_status.contains(&("signing_key".into(), "ok".into())),
            "{embedded:#?}"
        );
    }
}

/// A secret-typed default stays in the application: the manifest only flags it, and the standalone tool
/// says it cannot supply it instead of passing an empty value.
fn secret_defaults_are_not_supplied() {
    let scene = Scene::new("defaulted");
    let manifest = std::fs::read_to_string(scene.path("skm.toml")).unwrap();
    assert!(
        !manifest.contains("SENTINEL"),
        "a secret default in the manifest:\n{manifest}"
    );
    assert!(manifest.contains("has_default = true"), "{manifest}");

    let child_env = scene.path("child.env");
    let run = [
        "run",
        "--",
        "sh",
        "-c",
        "env > \"$1\"",
        "sh",
        child_env.to_str().unwrap(),
    ];
    let embedded = scene.embedded("defaulted", &run, &[]);
    assert_eq!(embedded.status.code(), Some(0), "{}", text(&embedded));
    std::fs::remove_file(&child_env).unwrap();

    let standalone = scene.standalone(&run, &[]);
    assert_eq!(standalone.status.code(), Some(1), "{}", text(&standalone));
    assert!(!child_env.exists(), "the command ran without API_TOKEN's default");
    let stderr = String::from_utf8_lossy(&standalone.stderr);
    assert!(
        stderr.contains("`api_token`") && stderr.contains("cannot supply") && stderr.contains("set API_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("SENTINEL"), "{stderr}");

    let check = scene.standalone(&["check"], &[]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("cannot supply"),
        "{}",
        text(&check)
    );
    // Given the value, the standalone tool runs as the application would.
    let given = scene.standalone(&run, &[("API_TOKEN", "SENTINEL-given-6c6c")]);
    assert_eq!(given.status.code(), Some(0), "{}", text(&given));
}

fn main() -> ExitCode {
    match std::env::var(AS_APP).as_deref() {
        Ok("agree") => return skm::cli::run::<AgreeSecrets>(),
        Ok("defaulted") => return skm::cli::run::<DefaultedSecrets>(),
        _ => {}
    }
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let tests: [(&str, fn()); 2] = [
        ("both_agree", both_agree),
        ("secret_defaults_are_not_supplied", secret_defaults_are_not_supplied),
    ];
    let mut failed = Vec::new();
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok");
        ExitCode::SUCCESS
    } else {
        println!("\nfailures: {}\ntest result: FAILED", failed.join(", "));
        ExitCode::FAILURE
    }
}
