//! `#[secret(min_len = ..., not = [...], pattern = "...")]`: checked at load on the winning source's text,
//! reported together with other failing fields, never showing the value.

use skm::backend::{MemoryBackend, SecretValue};
use skm::{ExposeSecret, FieldProblem, Loader, SecretBox, SecretString, Secrets};

/// Looks like a real key (long enough, right prefix) but is a listed placeholder in one test and too short
/// in none: every test that expects a failure checks that this text never shows.
const SENTINEL: &str = "sk-SENTINEL-4f2a-do-not-leak";

#[derive(Secrets)]
struct Api {
    #[secret(env = "API_KEY", min_len = 12, not = ["changeme", "dummy"], pattern = "^sk-")]
    key: SecretString,
}

fn env_loader<const N: usize>(vars: [(&str, &str); N]) -> Loader {
    Loader::new().no_dotenv().env_vars(vars)
}

fn field_errors(err: &skm::Error) -> Vec<(String, FieldProblem)> {
    let load = err.as_load().unwrap_or_else(|| panic!("a load error: {err}"));
    load.fields
        .iter()
        .map(|f| (f.field.clone(), f.reason.clone()))
        .collect()
}

fn validation(problem: &FieldProblem) -> &str {
    match problem {
        FieldProblem::Validation(why) => why,
        other => panic!("expected a validation failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_value_passing_every_validator_loads() {
    let api: Api = env_loader([("API_KEY", SENTINEL)]).load().await.unwrap();
    assert_eq!(api.key.expose_secret(), SENTINEL);
}

#[tokio::test]
async fn min_len_rejects_a_short_value() {
    let err = env_loader([("API_KEY", "sk-short")]).load::<Api>().await.err().unwrap();
    let errors = field_errors(&err);
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(
        validation(&errors[0].1),
        "the value from env var: API_KEY is shorter than the minimum of 12 characters"
    );
    assert!(!err.to_string().contains("sk-short"), "{err}");
}

#[tokio::test]
async fn not_rejects_a_placeholder_ignoring_case_and_whitespace() {
    #[derive(Secrets)]
    struct Db {
        #[secret(env = "DB_PASSWORD", not = ["changeme", "dummy"])]
        password: SecretString,
    }
    for placeholder in ["changeme", " CHANGEME\n", "Dummy"] {
        let err = env_loader([("DB_PASSWORD", placeholder)])
            .load::<Db>()
            .await
            .err()
            .unwrap_or_else(|| panic!("{placeholder:?} must be rejected"));
        let errors = field_errors(&err);
        assert_eq!(
            validation(&errors[0].1),
            "the value from env var: DB_PASSWORD is a placeholder listed in `not`"
        );
    }
    let ok: Db = env_loader([("DB_PASSWORD", "changeme-not")]).load().await.unwrap();
    assert_eq!(ok.password.expose_secret(), "changeme-not");
}

#[tokio::test]
async fn pattern_rejects_a_value_that_does_not_match() {
    let err = env_loader([("API_KEY", "pk-0123456789abc")])
        .load::<Api>()
        .await
        .err()
        .unwrap();
    assert_eq!(
        validation(&field_errors(&err)[0].1),
        "the value from env var: API_KEY does not match `pattern` ^sk-"
    );
    assert!(!err.to_string().contains("pk-0123456789abc"), "{err}");
}

#[tokio::test]
async fn every_failed_check_of_a_field_is_listed() {
    let err = env_loader([("API_KEY", "dummy")]).load::<Api>().await.err().unwrap();
    assert_eq!(
        validation(&field_errors(&err)[0].1),
        "the value from env var: API_KEY is shorter than the minimum of 12 characters; is a placeholder listed in \
         `not`; does not match `pattern` ^sk-"
    );
}

/// Validators see the raw text, so they apply to `plain` non-string fields too.
#[tokio::test]
async fn validators_check_the_text_of_a_plain_number() {
    #[derive(Secrets)]
    struct Port {
        #[secret(env = "PORT", plain, pattern = "^[0-9]{4,5}$")]
        port: u16,
    }
    let ok: Port = env_loader([("PORT", "8080")]).load().await.unwrap();
    assert_eq!(ok.port, 8080);
    // `80` is a valid u16 but fails the pattern: validation runs before type conversion.
    let err = env_loader([("PORT", "80")]).load::<Port>().await.err().unwrap();
    assert_eq!(
        validation(&field_errors(&err)[0].1),
        "the value from env var: PORT does not match `pattern` ^[0-9]{4,5}$"
    );
}

// Only ever loaded to fail.
#[allow(dead_code)]
#[derive(Secrets)]
struct Service {
    #[secret(path = "svc/api", key = "token", env = "API_TOKEN", min_len = 16, not = ["changeme"])]
    token: SecretString,
    #[secret(env = "SIGNING_KEY", pattern = "^[0-9a-f]{64}$")]
    signing_key: SecretString,
    #[secret(env = "DB_URL")]
    db_url: SecretString,
    #[secret(env = "WORKERS", plain, min_len = 1)]
    workers: u8,
    #[secret(env = "OPTIONAL_KEY", min_len = 8)]
    optional: Option<SecretBox<String>>,
}

/// One load reports every failing field: validation failures next to a missing field and a wrong type.
#[tokio::test]
async fn all_failures_are_reported_at_once_and_the_value_never_shows() {
    let backend = MemoryBackend::new();
    backend.insert("svc/api", SecretValue::map([("token", "changeme")]));
    let loader = Loader::new().backend(backend).no_dotenv().env_vars([
        // A valid token in env must not rescue the placeholder in the backend: no fallback.
        ("API_TOKEN", "a-perfectly-valid-token"),
        ("SIGNING_KEY", SENTINEL),
        ("WORKERS", "many"),
    ]);
    let (logs, _guard) = capture();
    let err = loader.load::<Service>().await.err().unwrap();
    let errors = field_errors(&err);
    let names: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["token", "signing_key", "db_url", "workers"], "{err}");
    assert_eq!(
        validation(&errors[0].1),
        "the value from memory: secret svc/api key token is shorter than the minimum of 16 characters; is a \
         placeholder listed in `not`"
    );
    assert_eq!(
        validation(&errors[1].1),
        "the value from env var: SIGNING_KEY does not match `pattern` ^[0-9a-f]{64}$"
    );
    assert_eq!(errors[2].1, FieldProblem::Missing);
    assert!(
        matches!(errors[3].1, FieldProblem::WrongType { .. }),
        "{:?}",
        errors[3].1
    );

    let shown = format!("{err}\n{err:?}");
    assert!(shown.contains("failed validation"), "{shown}");
    for secret in [SENTINEL, "changeme\"", "a-perfectly-valid-token", "many"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    let logs = logs.text();
    assert!(logs.contains("skm::audit"), "the audit events were captured: {logs}");
    assert!(
        !logs.contains(SENTINEL) && !logs.contains("a-perfectly-valid-token"),
        "{logs}"
    );
}

/// `skm check` and other tools see validation failures through `check_fields` too.
#[tokio::test]
async fn check_fields_reports_validation_failures() {
    let loader = env_loader([("API_KEY", "changeme")]);
    let fields = Api::spec().resolve(None).unwrap();
    let check = loader.check_fields(&fields).await.unwrap();
    assert!(!check.is_ok());
    let (id, result) = &check.fields[0];
    assert_eq!(id, "key");
    let err = result.as_ref().err().unwrap();
    assert!(matches!(err.reason, FieldProblem::Validation(_)), "{err}");
}

#[test]
fn validators_are_in_the_spec() {
    let skm::FieldKind::Secret(spec) = &Api::spec().fields[0].kind else {
        panic!("a secret field");
    };
    assert_eq!(
        spec.validate,
        skm::Validators {
            min_len: Some(12),
            not: vec!["changeme".into(), "dummy".into()].into(),
            pattern: Some(skm::Pattern::regex("^sk-")),
        }
    );
    let debug = format!("{spec:?}");
    assert!(debug.contains("min_len: Some(12)"), "{debug}");
}

use skm_testing::logs::capture;
