//! Mounted secret files (`Layer::Files`, `SKM_SECRETS_DIR`) and Docker's `NAME_FILE` convention.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use skm::{ExposeSecret, Layer, Loader, SecretBox, SecretString, Secrets, WatchOptions};

#[derive(Secrets)]
struct App {
    #[secret(path = "db", key = "password", env = "DB_PASSWORD")]
    db_password: SecretString,
}

const SENTINEL: &str = "S3NT1NEL-files-7c1d";

fn dotenv(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join(".env");
    std::fs::write(&p, body).unwrap();
    p
}

/// The layout of a Kubernetes secret volume: `NAME -> ..data/NAME`, `..data -> ..<timestamp>`.
fn kube_volume(dir: &Path, version: &str, value: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("DB_PASSWORD"), value).unwrap();
    // Kubernetes swaps `..data` atomically: a new symlink, renamed over the old one.
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if std::fs::symlink_metadata(dir.join("DB_PASSWORD")).is_err() {
        symlink("..data/DB_PASSWORD", dir.join("DB_PASSWORD")).unwrap();
    }
}

#[tokio::test]
async fn files_sit_between_the_backend_and_env_and_the_order_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("DB_PASSWORD"), "from-file\n").unwrap();
    let env_file = dotenv(dir.path(), "DB_PASSWORD=from-dotenv\n");
    let base = Loader::new().dotenv(&env_file).env_vars([("DB_PASSWORD", "from-env")]);

    // Default order: files beat env and `.env`; the directory comes from SKM_SECRETS_DIR.
    let loader = base.clone().env_vars([
        ("DB_PASSWORD", "from-env"),
        ("SKM_SECRETS_DIR", secrets.to_str().unwrap()),
    ]);
    let loaded = loader.load_report::<App>().await.unwrap();
    assert_eq!(
        loaded.value.db_password.expose_secret(),
        "from-file",
        "one trailing newline trimmed"
    );
    let origin = loaded.provenance.get("db_password").unwrap();
    assert_eq!(origin.layer, Some(Layer::Files));
    assert_eq!(
        origin.to_string(),
        format!("file: {}", secrets.join("DB_PASSWORD").display())
    );

    // Configurable like the other layers: env above files.
    let env_first = base
        .clone()
        .secrets_dir(&secrets)
        .precedence([Layer::Env, Layer::Files, Layer::Dotenv]);
    let app: App = env_first.load().await.unwrap();
    assert_eq!(app.db_password.expose_secret(), "from-env");

    // `.env` above files, env left out.
    let dotenv_first = base
        .clone()
        .secrets_dir(&secrets)
        .precedence([Layer::Dotenv, Layer::Files]);
    let app: App = dotenv_first.load().await.unwrap();
    assert_eq!(app.db_password.expose_secret(), "from-dotenv");

    // A missing file falls through to env; `\r\n` is trimmed once, a second newline kept.
    std::fs::remove_file(secrets.join("DB_PASSWORD")).unwrap();
    let app: App = base.clone().secrets_dir(&secrets).load().await.unwrap();
    assert_eq!(app.db_password.expose_secret(), "from-env");
    std::fs::write(secrets.join("DB_PASSWORD"), "two\n\r\n").unwrap();
    let app: App = base.clone().secrets_dir(&secrets).load().await.unwrap();
    assert_eq!(app.db_password.expose_secret(), "two\n");

    // Disabled: SKM_SECRETS_DIR empty, or `no_secrets_dir`.
    let off = base
        .clone()
        .env_vars([("DB_PASSWORD", "from-env"), ("SKM_SECRETS_DIR", "")]);
    assert_eq!(off.load::<App>().await.unwrap().db_password.expose_secret(), "from-env");
    let off = base.secrets_dir(&secrets).no_secrets_dir();
    assert_eq!(off.load::<App>().await.unwrap().db_password.expose_secret(), "from-env");
}

#[tokio::test]
async fn a_kubernetes_data_swap_is_picked_up_by_a_watch() {
    let dir = tempfile::tempdir().unwrap();
    kube_volume(dir.path(), "2026_11_29_21_00_00.1", "password-v1");
    let loader = Loader::new()
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .secrets_dir(dir.path());
    let mut watch = loader
        .watch::<App>(WatchOptions::ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(watch.get().unwrap().db_password.expose_secret(), "password-v1");

    // An unchanged volume is not a change.
    watch.request_refresh();
    watch.wait_ticks(1).await;
    assert_eq!(watch.stats().changes, 0);

    kube_volume(dir.path(), "2026_11_29_21_05_00.2", "password-v2");
    std::fs::remove_dir_all(dir.path().join("..2026_11_29_21_00_00.1")).unwrap();
    watch.request_refresh();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the swap is seen")
        .unwrap();
    assert_eq!(watch.get().unwrap().db_password.expose_secret(), "password-v2");
    assert_eq!(
        watch.provenance().get("db_password").unwrap().location,
        dir.path().join("DB_PASSWORD").display().to_string(),
        "provenance names the file through the volume's name, not the versioned directory"
    );
}

#[tokio::test]
async fn an_unreadable_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: unreadable as a file even for root.
    std::fs::create_dir(dir.path().join("DB_PASSWORD")).unwrap();
    let loader = Loader::new()
        .no_dotenv()
        .env_vars([("DB_PASSWORD", SENTINEL)])
        .secrets_dir(dir.path());
    let err = loader
        .load::<App>()
        .await
        .err()
        .expect("an unreadable file fails the field");
    let text = format!("{err}\n{err:?}");
    assert!(
        text.contains(&format!(
            "cannot read file {}",
            dir.path().join("DB_PASSWORD").display()
        )),
        "{text}"
    );
    assert!(!text.contains(SENTINEL), "{text}");
}

#[derive(Secrets)]
#[allow(dead_code)] // only the load's error is looked at
struct Port {
    #[secret(env = "PORT", plain)]
    port: SecretBox<u16>,
    #[secret(env = "TOKEN", min_len = 64)]
    token: SecretString,
}

#[tokio::test]
async fn a_file_value_never_reaches_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("PORT"), SENTINEL).unwrap();
    std::fs::write(dir.path().join("TOKEN"), format!("{SENTINEL}\n")).unwrap();
    let loader = Loader::new()
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .secrets_dir(dir.path());
    let err = loader
        .load::<Port>()
        .await
        .err()
        .expect("bad port and short token fail");
    let text = format!("{err}\n{err:?}");
    assert!(text.contains("PORT") && text.contains("TOKEN"), "{text}");
    for part in [SENTINEL, "S3NT1NEL", "7c1d"] {
        assert!(!text.contains(part), "{part} leaked: {text}");
    }
}

#[tokio::test]
async fn name_file_reads_the_value_from_the_named_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db_password.txt");
    std::fs::write(&file, "from-name-file\n").unwrap();
    let path = file.to_str().unwrap();
    let base = Loader::new().no_dotenv().no_secrets_dir();

    let loaded = base
        .clone()
        .env_vars([("DB_PASSWORD_FILE", path)])
        .load_report::<App>()
        .await
        .unwrap();
    assert_eq!(loaded.value.db_password.expose_secret(), "from-name-file");
    let origin = loaded.provenance.get("db_password").unwrap();
    assert_eq!(origin.layer, Some(Layer::Env));
    assert_eq!(origin.location, format!("DB_PASSWORD_FILE {path}"));

    // `NAME` itself wins over `NAME_FILE`.
    let app: App = base
        .clone()
        .env_vars([("DB_PASSWORD_FILE", path), ("DB_PASSWORD", "direct")])
        .load()
        .await
        .unwrap();
    assert_eq!(app.db_password.expose_secret(), "direct");

    // A `NAME_FILE` naming a missing file is an error naming the path, not a silent miss.
    let missing = dir.path().join("nope");
    let err = base
        .clone()
        .env_vars([("DB_PASSWORD_FILE", missing.to_str().unwrap())])
        .load::<App>()
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    // Through the real process environment too (the variable is unique to this test).
    #[derive(Secrets)]
    struct Proc {
        #[secret(env = "SKM_TEST_FILES_PROC_SECRET")]
        value: SecretString,
    }
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("SKM_TEST_FILES_PROC_SECRET_FILE", path) };
    let p: Proc = Loader::new().no_dotenv().no_secrets_dir().load().await.unwrap();
    assert_eq!(p.value.expose_secret(), "from-name-file");
}
