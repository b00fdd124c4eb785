//! `skm completions SHELL`: each script names the real commands and flags, and the shells that are installed
//! here parse it (bash always; zsh and fish when present). The bash script is also run: completing `mi`
//! yields `migrate`. The embedded binary writes a script for its own name.

use std::io::Write;
use std::process::{Command, Stdio};

use skm::cli::{exit, Cli, Io};
use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[allow(dead_code)]
struct AppSecrets {
    #[secret(path = "app/jwt", key = "secret", env = "JWT_SECRET")]
    jwt: SecretString,
}

const SHELLS: [&str; 4] = ["bash", "zsh", "fish", "powershell"];

fn skm_completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skm"))
        .args(["completions", shell])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs `shell -n` (parse only) on `script`, fed on stdin.
fn parses(shell: &str, script: &str) -> Result<(), String> {
    let mut child = Command::new(shell)
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What the bash script offers after `words` (the last one being completed).
fn bash_complete(script: &str, function: &str, words: &[&str]) -> Vec<String> {
    let words_quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let driver = format!(
        "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
         {function} '{cmd}' '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = words_quoted.join(" "),
        cword = words.len() - 1,
        line = words.join(" "),
        cmd = words[0],
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash").arg("-c").arg(driver).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_shell_gets_a_script_naming_the_real_commands() {
    for shell in SHELLS {
        let script = skm_completions(shell);
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for word in [
            "migrate",
            "run",
            "policy",
            "completions",
            "manifest",
            "external-secret",
            "schema",
        ] {
            assert!(script.contains(word), "{shell}: `{word}` is not in the script");
        }
        assert!(script.contains("skm"), "{shell}: the script does not name `skm`");
    }
    assert!(skm_completions("powershell").contains("Register-ArgumentCompleter"));
    assert!(skm_completions("fish").contains("complete -c skm"));
    assert!(skm_completions("zsh").starts_with("#compdef skm"));

    let bad = Command::new(env!("CARGO_BIN_EXE_skm"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn the_installed_shells_parse_their_scripts() {
    assert!(installed("bash"), "bash is needed for this test");
    let bash = skm_completions("bash");
    parses("bash", &bash).unwrap_or_else(|e| panic!("bash -n refused the script: {e}"));
    // A script that parses but is garbage fails here: it must really complete.
    assert_eq!(bash_complete(&bash, "_skm", &["skm", "mi"]), ["migrate"]);
    let flags = bash_complete(&bash, "_skm", &["skm", "manifest", "--sch"]);
    assert_eq!(flags, ["--schema"]);
    // zsh and fish are checked where they are installed (this repository does not install shells).
    for shell in ["zsh", "fish"] {
        if installed(shell) {
            let script = skm_completions(shell);
            parses(shell, &script).unwrap_or_else(|e| panic!("{shell} -n refused the script: {e}"));
        }
    }
}

#[tokio::test]
async fn the_embedded_binary_completes_its_own_name() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        stdin: &mut std::io::empty(),
        stdout: &mut out,
        stderr: &mut err,
        stdin_tty: false,
        stdout_tty: false,
        stderr_tty: false,
    };
    let code = Cli::embedded::<AppSecrets>()
        .execute(["/path/to/target/debug/secrets", "completions", "bash"], &mut io)
        .await;
    assert_eq!(code, exit::OK, "{}", String::from_utf8_lossy(&err));
    let script = String::from_utf8(out).unwrap();
    assert!(script.contains("complete -F _secrets"), "{script}");
    assert!(!script.contains("_skm"), "the embedded binary is not `skm`");
    parses("bash", &script).unwrap_or_else(|e| panic!("bash -n refused the script: {e}"));
    assert_eq!(bash_complete(&script, "_secrets", &["secrets", "po"]), ["policy"]);
}
