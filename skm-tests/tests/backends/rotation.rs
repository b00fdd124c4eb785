//! The AWS rotation protocol against real peers: moto (Secrets Manager) as the store and a real PostgreSQL
//! cluster as the target, the four steps driven the way the rotation service drives a rotation Lambda.
//!
//! Each test starts its own moto and PostgreSQL; they fail, never skip, when a peer is missing.
#![cfg(all(feature = "aws", feature = "postgres"))]

use std::collections::HashMap;

use serde_json::json;
use skm::backend::aws::AwsBackend;
use skm::rotation::aws::{AwsRotation, RotationEvent, Step, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use skm::rotation::postgres::{PgAdmin, PostgresRotator};
use skm::rotation::RotationErrorKind;
use skm::SecretString;
use skm_testing::{Moto, Postgres};

const INITIAL: &str = "SENTINEL-initial-password-7c1e";
const TOKEN: &str = "3b1f6a52-6f0e-4c53-9d5e-2a1c0b9e8f71";
const SECRET: &str = "db/app";

use crate::support::logs;

struct Peers {
    _moto: Moto,
    pg: Postgres,
    aws: AwsBackend,
}

async fn peers() -> Peers {
    logs();
    crate::support::no_instance_metadata();
    let (moto, pg) = tokio::join!(Moto::start(), Postgres::start());
    let aws = AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(moto.endpoint())
        .static_credentials("test", "test")
        .build()
        .await
        .unwrap();
    pg.execute(&format!("CREATE ROLE app LOGIN PASSWORD '{INITIAL}'")).await;
    let secret = json!({"engine": "postgres", "host": "127.0.0.1", "port": pg.port(), "username": "app",
        "password": INITIAL, "dbname": "postgres"});
    aws.client()
        .create_secret()
        .name(SECRET)
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap();
    // The admin credentials are another secret, in the shape of AWS's database secrets.
    let admin = json!({"engine": "postgres", "host": "127.0.0.1", "port": pg.port().to_string(),
        "username": pg.admin_user(), "password": pg.admin_password()});
    aws.client()
        .create_secret()
        .name("db/admin")
        .secret_string(admin.to_string())
        .send()
        .await
        .unwrap();
    Peers { _moto: moto, pg, aws }
}

impl Peers {
    async fn rotation(&self) -> AwsRotation<PostgresRotator> {
        let admin = self.value("db/admin", AWSCURRENT).await.unwrap();
        let admin = PgAdmin::from_secret(&SecretString::from(admin)).unwrap();
        AwsRotation::from_backend(&self.aws, PostgresRotator::new(admin, "app"))
    }

    async fn stages(&self) -> HashMap<String, Vec<String>> {
        let described = self
            .aws
            .client()
            .describe_secret()
            .secret_id(SECRET)
            .send()
            .await
            .unwrap();
        let mut map = described.version_ids_to_stages().cloned().unwrap_or_default();
        map.retain(|_, stages| !stages.is_empty());
        map
    }

    async fn version_with(&self, stage: &str) -> Option<String> {
        self.stages()
            .await
            .into_iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(v, _)| v)
    }

    async fn value(&self, secret: &str, stage: &str) -> Option<String> {
        let answer = self
            .aws
            .client()
            .get_secret_value()
            .secret_id(secret)
            .version_stage(stage)
            .send()
            .await
            .ok()?;
        answer.secret_string().map(str::to_string)
    }

    async fn password(&self, stage: &str) -> Option<String> {
        let text = self.value(SECRET, stage).await?;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        Some(json["password"].as_str().unwrap().to_string())
    }

    async fn step(
        &self,
        rotation: &AwsRotation<PostgresRotator>,
        step: Step,
    ) -> Result<(), skm::rotation::RotationError> {
        // Exactly what the service sends.
        let event: RotationEvent = serde_json::from_value(json!({
            "SecretId": SECRET, "ClientRequestToken": TOKEN, "Step": step.name(),
        }))
        .unwrap();
        rotation.handle(&event).await
    }
}

#[tokio::test]
async fn the_four_steps_driven_as_the_service_does_are_idempotent_and_rotate_the_password() {
    let p = peers().await;
    let rotation = p.rotation().await;
    let original = p.version_with(AWSCURRENT).await.unwrap();

    // createSecret: a new AWSPENDING version; the database is not touched yet.
    p.step(&rotation, Step::CreateSecret).await.unwrap();
    let pending = p.password(AWSPENDING).await.expect("a pending version");
    assert_ne!(pending, INITIAL);
    assert_eq!(pending.len(), 32);
    assert!(!pending.contains(['/', '@', '"', '\'', '\\']), "excluded characters");
    assert_eq!(p.stages().await[TOKEN], vec![AWSPENDING.to_string()]);
    p.pg.login("app", INITIAL).await.unwrap();
    // Repeated, it is a no-op: same pending password, no other version.
    p.step(&rotation, Step::CreateSecret).await.unwrap();
    assert_eq!(p.password(AWSPENDING).await.unwrap(), pending);
    assert_eq!(p.stages().await.len(), 2);

    // setSecret: the database now takes the pending password.
    p.step(&rotation, Step::SetSecret).await.unwrap();
    p.pg.login("app", &pending).await.unwrap();
    assert!(p.pg.login("app", INITIAL).await.is_err());
    p.step(&rotation, Step::SetSecret).await.unwrap();
    p.pg.login("app", &pending).await.unwrap();

    // testSecret, twice.
    p.step(&rotation, Step::TestSecret).await.unwrap();
    p.step(&rotation, Step::TestSecret).await.unwrap();
    assert_eq!(
        p.version_with(AWSCURRENT).await.unwrap(),
        original,
        "not moved before finishSecret"
    );

    // finishSecret: AWSCURRENT moves to the token, AWSPREVIOUS to the old version.
    p.step(&rotation, Step::FinishSecret).await.unwrap();
    assert_eq!(p.version_with(AWSCURRENT).await.unwrap(), TOKEN);
    assert_eq!(p.version_with(AWSPREVIOUS).await.unwrap(), original);
    p.step(&rotation, Step::FinishSecret).await.unwrap();
    assert_eq!(p.version_with(AWSCURRENT).await.unwrap(), TOKEN);
    assert_eq!(p.version_with(AWSPREVIOUS).await.unwrap(), original);
    // Any step of a finished rotation is a no-op.
    for step in Step::ALL {
        p.step(&rotation, step).await.unwrap();
    }
    p.pg.login("app", &pending).await.unwrap();

    // What an application's `Rotating` field reads: AWSCURRENT and AWSPREVIOUS by label. (Not through
    // `Loader`: moto's UpdateSecretVersionStage does not move its default version, so a read without a stage,
    // and BatchGetSecretValue, still return the old value there; AWS returns the AWSCURRENT one.)
    assert_eq!(p.password(AWSCURRENT).await.unwrap(), pending);
    assert_eq!(p.password(AWSPREVIOUS).await.unwrap(), INITIAL);
}

#[tokio::test]
async fn a_failing_test_leaves_awscurrent_untouched_and_the_database_on_its_password() {
    let p = peers().await;
    let rotation = p.rotation().await;
    let original = p.version_with(AWSCURRENT).await.unwrap();
    // The role may no longer connect to the database: the new password is set but the test login fails.
    p.pg.execute("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC").await;

    // As the service drives a Lambda: testSecret fails, and is retried.
    p.step(&rotation, Step::CreateSecret).await.unwrap();
    p.step(&rotation, Step::SetSecret).await.unwrap();
    for _ in 0..2 {
        let failed = p.step(&rotation, Step::TestSecret).await.unwrap_err();
        assert_eq!(failed.kind(), RotationErrorKind::Test);
        let text = failed.to_string();
        assert!(
            text.starts_with("testSecret of db/app: PostgreSQL role \"app\" on 127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains("permission denied for database"), "{text}");
    }
    assert_eq!(p.version_with(AWSCURRENT).await.unwrap(), original);
    assert_eq!(p.password(AWSCURRENT).await.unwrap(), INITIAL);
    assert_eq!(p.version_with(AWSPENDING).await.unwrap(), TOKEN);

    // `rotate` (the tool's driver) also stops there, and puts the database back on AWSCURRENT's password.
    let failed = rotation.rotate(SECRET).await.unwrap_err();
    let text = failed.to_string();
    assert_eq!(failed.kind(), RotationErrorKind::Test, "{text}");
    assert!(text.contains("AWSCURRENT is unchanged"), "{text}");
    assert!(text.contains("was set back to its password"), "{text}");
    assert!(!text.contains(INITIAL), "{text}");
    assert_eq!(p.version_with(AWSCURRENT).await.unwrap(), original);
    assert_eq!(p.password(AWSCURRENT).await.unwrap(), INITIAL);
    let pending = p.password(AWSPENDING).await.unwrap();
    assert!(!text.contains(&pending), "{text}");

    p.pg.execute("GRANT CONNECT ON DATABASE postgres TO PUBLIC").await;
    p.pg.login("app", INITIAL).await.unwrap();
    assert!(p.pg.login("app", &pending).await.is_err());
}

#[tokio::test]
async fn rotate_runs_the_whole_rotation_and_keeps_passwords_out_of_logs() {
    let p = peers().await;
    let rotation = p.rotation().await;
    let original = p.version_with(AWSCURRENT).await.unwrap();

    let first = rotation.rotate(SECRET).await.unwrap();
    assert_eq!(first.previous_version_id.as_deref(), Some(original.as_str()));
    assert_eq!(p.version_with(AWSCURRENT).await.unwrap(), first.version_id);
    assert_eq!(
        p.version_with(AWSPENDING).await,
        None,
        "the AWSPENDING label is removed"
    );
    let second_password = p.password(AWSCURRENT).await.unwrap();
    p.pg.login("app", &second_password).await.unwrap();
    assert!(p.pg.login("app", INITIAL).await.is_err());

    let second = rotation.rotate(SECRET).await.unwrap();
    assert_ne!(second.version_id, first.version_id);
    assert_eq!(second.previous_version_id.as_deref(), Some(first.version_id.as_str()));
    assert_eq!(p.password(AWSPREVIOUS).await.unwrap(), second_password);
    let third_password = p.password(AWSCURRENT).await.unwrap();
    p.pg.login("app", &third_password).await.unwrap();
    // The other entries of the secret are kept.
    let text = p.value(SECRET, AWSCURRENT).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["username"], "app");
    assert_eq!(json["port"], p.pg.port());

    let logs = logs().text();
    assert!(logs.contains("changed the PostgreSQL role's password"), "{logs}");
    // The rotator's statement reaches the server (and tokio-postgres's debug log) as a SCRAM verifier only.
    assert!(
        logs.contains("ALTER ROLE \"app\" PASSWORD 'SCRAM-SHA-256$4096:"),
        "{logs}"
    );
    for (i, password) in [INITIAL, &second_password, &third_password, p.pg.admin_password()]
        .iter()
        .enumerate()
    {
        let lines: Vec<String> = logs
            .lines()
            // tokio-postgres logs each statement: the test's own setup (`peers`) sets the first password so.
            .filter(|l| !l.contains("CREATE ROLE app LOGIN PASSWORD"))
            .filter(|l| l.contains(*password))
            .map(|l| l.replace(*password, "<PASSWORD>"))
            .collect();
        assert!(lines.is_empty(), "password {i} in the logs:\n{}", lines.join("\n"));
    }
    let debug = format!("{rotation:?} {:?}", rotation.rotator());
    assert!(!debug.contains(p.pg.admin_password()), "{debug}");
}

#[tokio::test]
async fn a_token_not_being_rotated_in_and_a_database_refusing_the_change_are_clear_errors() {
    let p = peers().await;
    let rotation = p.rotation().await;
    let failed = p.step(&rotation, Step::SetSecret).await.unwrap_err();
    assert_eq!(failed.kind(), RotationErrorKind::NotPending);
    assert!(failed.to_string().contains("does not exist"), "{failed}");

    // Admin credentials the database refuses: setSecret fails, nothing moves, AWSCURRENT still works.
    let wrong = PgAdmin::new(
        "127.0.0.1",
        p.pg.port(),
        "postgres",
        SecretString::from("wrong-admin-password"),
    );
    let refused = AwsRotation::from_backend(&p.aws, PostgresRotator::new(wrong, "app"));
    let original = p.version_with(AWSCURRENT).await.unwrap();
    let failed = refused.rotate(SECRET).await.unwrap_err();
    let text = failed.to_string();
    assert_eq!(failed.kind(), RotationErrorKind::Set, "{text}");
    assert!(text.starts_with("setSecret of db/app: "), "{text}");
    assert!(
        text.contains("password authentication failed for user \"postgres\""),
        "{text}"
    );
    assert!(text.contains("AWSCURRENT is unchanged and still valid"), "{text}");
    assert!(!text.contains("wrong-admin-password"), "{text}");
    assert_eq!(p.version_with(AWSCURRENT).await.unwrap(), original);
    p.pg.login("app", INITIAL).await.unwrap();

    // A role that does not exist.
    let admin = PgAdmin::new("127.0.0.1", p.pg.port(), "postgres", p.pg.admin_password().into());
    let missing = AwsRotation::from_backend(&p.aws, PostgresRotator::new(admin, "nobody"));
    let failed = missing.rotate(SECRET).await.unwrap_err();
    assert!(
        failed.to_string().contains("role \"nobody\" does not exist"),
        "{failed}"
    );
    assert_eq!(p.version_with(AWSCURRENT).await.unwrap(), original);
}
