//! The checks through the [`Loader`]: a struct's declarations read from the backend.

use std::borrow::Cow;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretBox, SecretString};

use super::store::put_ok;
use super::Outcome;
use crate::backend::{AdminBackend, PutRequest, SecretValue};
use crate::spec::{FieldKind, FieldSpec, SecretSpec, StructSpec, Validators, VersionPin};
use crate::values::{Secrets, Values};
use crate::Loader;

struct Conf {
    user: SecretString,
    port: SecretBox<u16>,
    whole: SecretString,
}

static CONF_FIELDS: [FieldSpec; 3] = [
    secret_field("user", "conformance/db", Some("user"), "SecretString"),
    secret_field("port", "conformance/db", Some("port"), "SecretBox<u16>"),
    secret_field("whole", "conformance/plain", None, "SecretString"),
];

const fn secret_field(
    name: &'static str,
    path: &'static str,
    key: Option<&'static str>,
    type_name: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Secret(SecretSpec {
            path: Some(Cow::Borrowed(path)),
            key: match key {
                Some(k) => Some(Cow::Borrowed(k)),
                None => None,
            },
            env: None,
            default: None,
            optional: false,
            plain: false,
            type_name: Cow::Borrowed(type_name),
            version: VersionPin::Current,
            validate: Validators::NONE,
            rotating: false,
            backend: None,
        }),
    }
}

static CONF_SPEC: StructSpec = StructSpec {
    name: "Conf",
    prefix: Some("{profile}"),
    fields: &CONF_FIELDS,
};

impl Secrets for Conf {
    fn spec() -> &'static StructSpec {
        &CONF_SPEC
    }

    fn from_values(values: &mut Values<'_>) -> Option<Self> {
        let user = values.take("user");
        let port = values.take("port");
        let whole = values.take("whole");
        Some(Conf {
            user: user?,
            port: port?,
            whole: whole?,
        })
    }
}

/// The profile a loader check runs under: `prefix` as one path segment (profiles cannot hold `/`).
fn profile_of(prefix: &str) -> String {
    prefix.replace('/', "-")
}

/// Through the loader: keys of a JSON object secret, a number converted to `u16`, a whole value.
pub async fn loads_keys_and_types<B: AdminBackend + 'static>(backend: Arc<B>, prefix: &str) -> Outcome {
    // The declarations use the prefix `{profile}`, so the secrets go under this run's profile.
    let profile = profile_of(prefix);
    put_ok(
        &*backend,
        PutRequest::new(
            format!("{profile}/conformance/db"),
            SecretValue::map([("user", "app"), ("port", "5432")]),
        ),
    )
    .await;
    put_ok(
        &*backend,
        PutRequest::new(
            format!("{profile}/conformance/plain"),
            SecretValue::text("conformance-sentinel-whole"),
        ),
    )
    .await;
    let loader = Loader::new()
        .backend_arc(backend)
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .profile(profile);
    let conf: Conf = loader.load().await.unwrap_or_else(|e| panic!("load failed:\n{e}"));
    assert_eq!(conf.user.expose_secret(), "app");
    assert_eq!(*conf.port.expose_secret(), 5432);
    assert_eq!(conf.whole.expose_secret(), "conformance-sentinel-whole");
    Outcome::Passed
}

struct KeyOnText {
    _user: SecretString,
}

static KEY_ON_TEXT_FIELDS: [FieldSpec; 1] = [secret_field("user", "conformance/plain", Some("user"), "SecretString")];

static KEY_ON_TEXT_SPEC: StructSpec = StructSpec {
    name: "KeyOnText",
    prefix: Some("{profile}"),
    fields: &KEY_ON_TEXT_FIELDS,
};

impl Secrets for KeyOnText {
    fn spec() -> &'static StructSpec {
        &KEY_ON_TEXT_SPEC
    }

    fn from_values(values: &mut Values<'_>) -> Option<Self> {
        Some(KeyOnText {
            _user: values.take("user")?,
        })
    }
}

/// Through the loader: a `key` on a value that is not a JSON object is an invalid secret (no fallback),
/// and the error names the field and path, never the value. Runs after [`loads_keys_and_types`].
pub async fn key_on_text_is_invalid<B: AdminBackend + 'static>(backend: Arc<B>, prefix: &str) -> Outcome {
    let profile = profile_of(prefix);
    let loader = Loader::new()
        .backend_arc(backend)
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .profile(profile);
    let err = match loader.load::<KeyOnText>().await {
        Ok(_) => panic!("a key on a text value must not load"),
        Err(crate::Error::Load(e)) => e,
        Err(e) => panic!("expected a load error, got: {e}"),
    };
    assert_eq!(err.fields.len(), 1, "{err}");
    assert!(
        matches!(err.fields[0].reason, crate::error::FieldProblem::Invalid(_)),
        "{err}"
    );
    let shown = err.to_string();
    assert!(shown.contains("conformance/plain"), "the path is named: {shown}");
    assert!(
        !shown.contains("conformance-sentinel-whole"),
        "the value leaked: {shown}"
    );
    Outcome::Passed
}
