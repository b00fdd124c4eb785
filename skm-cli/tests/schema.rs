//! `skm manifest --schema`: the JSON Schema editors use for `skm.toml`, judged by a third-party validator
//! (Python's `jsonschema`, from `.venv`, which `scripts/test` installs): the schema itself is valid draft
//! 2020-12, every manifest the repository holds and every manifest `skm manifest` writes validates against it,
//! and a manifest with an unknown key or a wrong type does not.

use std::path::{Path, PathBuf};
use std::process::Command;

use skm::cli::{exit, Cli, Io};
use skm::{SecretString, Secrets};

/// A struct using every kind of declaration a manifest records: keys, env names, defaults, plain and optional
/// fields, and each version pin.
#[derive(Secrets)]
#[secrets(prefix = "app/{profile}")]
#[allow(dead_code)]
struct SchemaApp {
    #[secret(path = "jwt", key = "secret", env = "JWT_SECRET")]
    jwt: SecretString,
    #[secret(path = "db", key = "port", env = "DB_PORT", plain)]
    port: u16,
    #[secret(env = "LOG_LEVEL", default = "info", plain)]
    log_level: String,
    #[secret(path = "optional", env = "OPTIONAL_TOKEN")]
    optional: Option<SecretString>,
    #[secret(path = "old", version_stage = "AWSPREVIOUS")]
    staged: SecretString,
    #[secret(path = "pinned", version = 3)]
    numbered: SecretString,
    #[secret(path = "by-id", version_id = "v-1234")]
    by_id: SecretString,
    #[secret(path = "api", env = "API_KEY", min_len = 16, not = ["changeme", "dummy"], pattern = "^sk-")]
    api_key: SecretString,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn schema_text() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skm"))
        .args(["manifest", "--schema"])
        .env_remove("SKM_MANIFEST")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Validates each file (`.toml` read by Python's `tomllib`, else JSON) against `schema` with `jsonschema`;
/// returns, per file, `None` when it is valid, else the validator's messages.
fn validate(dir: &Path, schema: &str, files: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test once, which installs the test peers (jsonschema among them)",
        python.display()
    );
    std::fs::write(dir.join("schema.json"), schema).unwrap();
    let mut paths = Vec::new();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
        paths.push(dir.join(name));
    }
    let script = r#"
import json, sys, tomllib
try:
    import jsonschema
except ImportError:
    sys.exit("the Python package jsonschema is missing from .venv: run ./scripts/test once")
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
assert cls.__name__ == "Draft202012Validator", cls.__name__
cls.check_schema(schema)
validator = cls(schema)
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        doc = tomllib.load(f) if path.endswith(".toml") else json.load(f)
    errors = sorted(e.message for e in validator.iter_errors(doc))
    print(json.dumps([path, errors]))
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir.join("schema.json"))
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let results: Vec<(String, Option<String>)> = stdout
        .lines()
        .map(|l| {
            let (path, errors): (PathBuf, Vec<String>) = serde_json::from_str(l).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, (!errors.is_empty()).then(|| errors.join("; ")))
        })
        .collect();
    assert_eq!(results.len(), files.len(), "{stdout}");
    results
}

/// Every manifest written out in the repository's tests and README: raw strings starting with
/// `skm_manifest = 1` in `*.rs` files, and ```toml blocks of the README holding one.
fn repository_manifests() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut sources = Vec::new();
    let mut dirs = vec![root().join("skm-cli/tests"), root().join("skm-tests/tests")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    sources.sort();
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for (i, (start, _)) in text.match_indices("r#\"skm_manifest = 1").enumerate() {
            let body = &text[start + 3..];
            let end = body.find("\"#").unwrap();
            out.push((format!("{stem}-{i}.toml"), body[..end].to_string()));
        }
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (i, block) in readme.split("```toml\n").skip(1).enumerate() {
        let block = &block[..block.find("```").unwrap()];
        if block.contains("skm_manifest") {
            out.push((format!("readme-{i}.toml"), block.to_string()));
        }
    }
    out
}

/// What `manifest` prints in the embedded binary of [`SchemaApp`], in `format`.
async fn exported(format: &str) -> String {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        stdin: &mut std::io::empty(),
        stdout: &mut out,
        stderr: &mut err,
        stdin_tty: false,
        stdout_tty: false,
        stderr_tty: false,
    };
    let code = Cli::embedded::<SchemaApp>()
        .execute(
            ["secrets", "--profile", "prod", "manifest", "--format", format],
            &mut io,
        )
        .await;
    assert_eq!(code, exit::OK, "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn every_manifest_validates_and_broken_ones_do_not() {
    let schema = schema_text();
    let parsed: serde_json::Value = serde_json::from_str(&schema).expect("the schema is JSON");
    assert_eq!(parsed["$schema"], "https://json-schema.org/draft/2020-12/schema");
    // The schema the binary prints is the library's.
    assert_eq!(parsed, skm::cli::Manifest::json_schema());

    let dir = tempfile::tempdir().unwrap();
    let mut good = repository_manifests();
    assert!(
        good.iter().any(|(n, _)| n.starts_with("run-")) && good.iter().any(|(n, _)| n.starts_with("readme-")),
        "the repository's manifests were not found: {:?}",
        good.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let toml_export = exported("toml").await;
    let json_export = exported("json").await;
    // The export does use every pin, so the schema's version forms are all exercised.
    for pin in [
        "AWSPREVIOUS",
        "v-1234",
        "number = 3",
        "has_default = true",
        "optional = true",
        "default = \"info\"",
        "min_len = 16",
        "not = [\"changeme\", \"dummy\"]",
        "pattern = \"^sk-\"",
    ] {
        assert!(toml_export.contains(pin), "{pin} not in:\n{toml_export}");
    }
    good.push(("exported.toml".into(), toml_export));
    good.push(("exported.json".into(), json_export));
    let files: Vec<(&str, &str)> = good.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    for (name, problem) in validate(dir.path(), &schema, &files) {
        assert_eq!(problem, None, "{name} should validate");
    }

    let head = "skm_manifest = 1\nstruct = \"App\"\n\n[[secret]]\nfield = \"jwt\"\npath = \"app/jwt\"\n";
    let bad = [
        (
            "unknown-field.toml",
            format!("{head}type = \"SecretString\"\nnope = 1\n"),
        ),
        (
            "unknown-top.toml",
            format!("owner = \"x\"\n{head}type = \"SecretString\"\n"),
        ),
        (
            "type-optional.toml",
            format!("{head}type = \"SecretString\"\noptional = \"yes\"\n"),
        ),
        (
            "type-format.toml",
            "skm_manifest = \"1\"\nstruct = \"App\"\n".to_string(),
        ),
        ("format-3.toml", "skm_manifest = 3\nstruct = \"App\"\n".to_string()),
        (
            "type-version.toml",
            format!("{head}type = \"SecretString\"\nversion = {{ stage = 3 }}\n"),
        ),
        (
            "unknown-pin.toml",
            format!("{head}type = \"SecretString\"\nversion = \"latest\"\n"),
        ),
        ("no-type.toml", head.to_string()),
        ("no-struct.json", "{\"skm_manifest\": 1}".to_string()),
    ];
    let files: Vec<(&str, &str)> = bad.iter().map(|(n, t)| (*n, t.as_str())).collect();
    for (name, problem) in validate(dir.path(), &schema, &files) {
        assert!(problem.is_some(), "{name} should be rejected");
    }
}
