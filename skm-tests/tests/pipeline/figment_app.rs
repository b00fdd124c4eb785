//! `skm::figment`: an app config merging a Rocket-style TOML file and skm's secrets (examples/figment_app.rs).

#[path = "../../../examples/figment_app.rs"]
#[allow(dead_code)] // the example's `main` is not run here
mod app;

use skm::Loader;

fn rocket_toml(dir: &std::path::Path) -> std::path::PathBuf {
    let toml = dir.join("Rocket.toml");
    std::fs::write(
        &toml,
        "[default]\naddress = \"127.0.0.1\"\nworkers = 4\n\n[release]\naddress = \"0.0.0.0\"\nworkers = 16\n",
    )
    .unwrap();
    toml
}

#[tokio::test]
async fn toml_and_secrets_extract_into_a_typed_config() {
    let dir = tempfile::tempdir().unwrap();
    let toml = rocket_toml(dir.path());
    std::fs::write(dir.path().join("DB_PASSWORD"), "from-mounted-file\n").unwrap();
    let loader = Loader::new()
        .no_dotenv()
        .secrets_dir(dir.path())
        .env_vars([("API_PORT", "9000")]);
    let figment = app::figment(&toml, &loader, "release").await.unwrap();
    let config: app::Config = figment.extract_lossy().unwrap();
    assert_eq!(config.address, "0.0.0.0");
    assert_eq!(config.workers, 16);
    assert_eq!(config.api_port, 9000);
    assert_eq!(config.db_password, "from-mounted-file");
    // figment knows where each value came from.
    let md = figment.find_metadata("db_password").unwrap();
    assert_eq!(md.name, skm::figment::NAME);
    assert_eq!(
        md.interpolate(&figment::Profile::Default, &["db_password"]),
        format!("db_password (file: {})", dir.path().join("DB_PASSWORD").display())
    );
    assert_eq!(figment.find_metadata("workers").unwrap().name, "TOML file");
}

#[tokio::test]
async fn a_type_error_names_skms_source() {
    let dir = tempfile::tempdir().unwrap();
    let toml = rocket_toml(dir.path());
    let loader = Loader::new()
        .no_dotenv()
        .no_secrets_dir()
        .env_vars([("DB_PASSWORD", "pw"), ("API_PORT", "not-a-port")]);
    // skm's own typed load rejects the port without quoting it ...
    let err = loader.load::<app::AppSecrets>().await.err().unwrap().to_string();
    assert!(err.contains("API_PORT") && !err.contains("not-a-port"), "{err}");
    // ... and the figment extraction reports skm's metadata for the key.
    let figment = app::figment(&toml, &loader, "default").await.unwrap();
    let err = figment.extract_lossy::<app::Config>().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(r#"for key "api_port (env var: API_PORT)" in skm secrets"#),
        "{text}"
    );
    assert_eq!(err.metadata.as_ref().unwrap().name, skm::figment::NAME);
}

#[tokio::test]
async fn a_missing_secret_fails_before_figment() {
    let dir = tempfile::tempdir().unwrap();
    let loader = Loader::new()
        .no_dotenv()
        .no_secrets_dir()
        .env_vars(Vec::<(String, String)>::new());
    let err = app::figment(&rocket_toml(dir.path()), &loader, "default")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DB_PASSWORD"), "{err}");
}

/// The README's figment block is `skm::figment`'s doc example (which `cargo test --doc` runs), line for line,
/// inside a `main` (the README block is a doctest too, so it spells out the async scaffolding the doc example
/// hides behind `# ` lines).
#[test]
fn the_readme_block_is_the_tested_doc_example() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## figment apps")
        .nth(1)
        .expect("README has the figment section");
    let block = section.split("```rust\n").nth(1).unwrap().split("```").next().unwrap();
    let docs: String = include_str!("../../../src/figment.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let example = docs.split("```\n").nth(1).expect("the module docs have an example");
    // The doc example hides its async scaffolding behind `# ` lines.
    let shown: Vec<&str> = example
        .lines()
        .filter(|l| !l.starts_with("# ") && !l.starts_with("```"))
        .collect();
    // Each line of the example, in order, in the README block (indented there inside `main`), which adds only
    // the lines of `main` itself (its closing brace matches the example's own).
    let readme: Vec<&str> = block.trim_end().lines().collect();
    let mut at = 0;
    for line in &shown {
        let found = readme[at..]
            .iter()
            .position(|r| r.trim() == line.trim())
            .unwrap_or_else(|| panic!("the README's figment block lacks `{line}` (in order): {readme:#?}"));
        at += found + 1;
    }
    let scaffolding: Vec<&str> = readme
        .iter()
        .map(|r| r.trim())
        .filter(|r| !shown.iter().any(|l| l.trim() == *r))
        .collect();
    assert_eq!(
        scaffolding,
        [
            "#[tokio::main]",
            "async fn main() -> Result<(), skm::Error> {",
            "Ok(())"
        ]
    );
}
