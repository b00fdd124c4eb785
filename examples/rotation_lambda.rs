//! A rotation Lambda in Rust for a PostgreSQL password kept in AWS Secrets Manager: the handler plus one call.
//!
//! The AWS rotation service invokes the Lambda four times per rotation with an event such as
//! `{"SecretId": "arn:...:secret:db/app-a1b2c3", "ClientRequestToken": "...", "Step": "createSecret"}`
//! (then `setSecret`, `testSecret`, `finishSecret`). [`handler`] is the whole function; with the
//! `lambda_runtime` crate, `main` would be
//! `lambda_runtime::run(service_fn(|e: LambdaEvent<Value>| handler(e.payload))).await`.
//!
//! The rotated secret is `{"username": "app", "password": "...", ...}`; the admin credentials that may
//! `ALTER ROLE` it are another secret (`ADMIN_SECRET_ID`, AWS's RDS shape: `host`, `port`, `username`,
//! `password`, `dbname`).
//!
//! To try it by hand, pass the event on stdin:
//! `echo '{"SecretId":"db/app","ClientRequestToken":"...","Step":"createSecret"}' |
//!  ADMIN_SECRET_ID=db/admin DB_ROLE=app cargo run --example rotation_lambda --features aws,postgres`

use std::error::Error;
use std::io::Read;

use serde_json::Value;
use skm::backend::aws::AwsBackend;
use skm::backend::{Backend, FetchRequest, SecretValue};
use skm::rotation::aws::{AwsRotation, RotationEvent};
use skm::rotation::postgres::{PgAdmin, PostgresRotator};

/// The Lambda's handler: one rotation step.
async fn handler(event: Value) -> Result<(), Box<dyn Error + Send + Sync>> {
    let event: RotationEvent = serde_json::from_value(event)?;
    let aws = AwsBackend::from_env().await?;
    // The admin credentials: another secret, read through the same backend.
    let admin_id = std::env::var("ADMIN_SECRET_ID")?;
    let SecretValue::Text(admin) = aws.fetch(&[FetchRequest::current(admin_id)]).await.remove(0)?.value else {
        return Err("the admin secret is binary".into());
    };
    let rotator = PostgresRotator::new(PgAdmin::from_secret(&admin)?, std::env::var("DB_ROLE")?);
    // The one call: checks the token's stage, runs the step, and is a no-op when the step is done.
    AwsRotation::from_backend(&aws, rotator).handle(&event).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    handler(serde_json::from_str(&input)?).await
}
