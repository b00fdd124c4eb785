//! A [`Rotator`] for a PostgreSQL role (feature `postgres`).
//!
//! [`PostgresRotator::set`](Rotator::set) logs in with admin credentials (another secret: [`PgAdmin`]) and
//! runs `ALTER ROLE "role" PASSWORD '...'`; [`test`](Rotator::test) logs in as the role with the pending
//! password. The password never reaches the server in clear: `set` sends a SCRAM-SHA-256 verifier computed
//! here (as `psql`'s `\password` does), so neither the statement nor the server's log of it holds it.
//!
//! Connections are made without TLS, so the rotator refuses a host that is not a loopback address unless
//! [`PgAdmin::allow_plaintext`] says otherwise (e.g. a database reached through a local tunnel).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_postgres::NoTls;

use super::{RotationError, RotationErrorKind, Rotator};

/// How long a login may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom the rotator logs in to change passwords: a role allowed to `ALTER ROLE` the rotated
/// one (a superuser, or one with `CREATEROLE`).
///
/// `Debug` shows no password.
#[derive(Clone)]
pub struct PgAdmin {
    host: String,
    port: u16,
    username: String,
    password: SecretString,
    dbname: String,
    allow_plaintext: bool,
}

impl fmt::Debug for PgAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgAdmin")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

/// The JSON shape of a database secret, as AWS's RDS secrets and most tools write it.
#[derive(Deserialize)]
struct SecretShape {
    host: String,
    #[serde(default)]
    port: Option<PortValue>,
    username: String,
    password: String,
    #[serde(default)]
    dbname: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(u16),
    Text(String),
}

impl PgAdmin {
    /// Admin credentials for the server at `host:port`, database `postgres`.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::rotation::postgres::PgAdmin;
    /// let admin = PgAdmin::new("127.0.0.1", 5432, "postgres", "admin-password".into()).dbname("app");
    /// assert!(!format!("{admin:?}").contains("admin-password"));
    /// ```
    pub fn new(host: impl Into<String>, port: u16, username: impl Into<String>, password: SecretString) -> Self {
        PgAdmin {
            host: host.into(),
            port,
            username: username.into(),
            password,
            dbname: "postgres".into(),
            allow_plaintext: false,
        }
    }

    /// Admin credentials from a secret's JSON text: `{"host", "port", "username", "password", "dbname"}`
    /// (`port` defaults to 5432 and may be a string; `dbname` to `postgres`), the shape of AWS's database
    /// secrets.
    ///
    /// # Errors
    /// [`RotationErrorKind::Invalid`] when the text does not have that shape; the message never quotes it.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::rotation::postgres::PgAdmin;
    /// let text = r#"{"host": "127.0.0.1", "port": "5433", "username": "postgres", "password": "pw"}"#;
    /// let admin = PgAdmin::from_secret(&text.into()).unwrap();
    /// assert!(format!("{admin:?}").contains("5433"));
    /// ```
    pub fn from_secret(secret: &SecretString) -> Result<Self, RotationError> {
        let shape: SecretShape = serde_json::from_str(secret.expose_secret()).map_err(|e| {
            RotationError::new(
                RotationErrorKind::Invalid,
                format!(
                    "the admin secret is not a database secret (`host`, `username`, `password`, optional `port` and \
                     `dbname`): {}",
                    // Only the category and position: serde's message may quote the content.
                    match e.classify() {
                        serde_json::error::Category::Data =>
                            format!("a missing or mistyped entry (line {}, column {})", e.line(), e.column()),
                        _ => format!("not JSON (line {}, column {})", e.line(), e.column()),
                    }
                ),
            )
        })?;
        let port = match shape.port {
            None => 5432,
            Some(PortValue::Number(p)) => p,
            Some(PortValue::Text(t)) => t.trim().parse().map_err(|_| {
                RotationError::new(
                    RotationErrorKind::Invalid,
                    "the admin secret's `port` is not a port number",
                )
            })?,
        };
        let mut admin = PgAdmin::new(shape.host, port, shape.username, shape.password.into());
        if let Some(db) = shape.dbname {
            admin.dbname = db;
        }
        Ok(admin)
    }

    /// The database to log in to (default `postgres`); the rotated role's test login uses it too.
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = dbname.into();
        self
    }

    /// Allows a host that is not a loopback address although the connection has no TLS.
    pub fn allow_plaintext(mut self, allow: bool) -> Self {
        self.allow_plaintext = allow;
        self
    }

    fn check_transport(&self) -> Result<(), RotationError> {
        let loopback = self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback || self.allow_plaintext || self.host.starts_with('/') {
            return Ok(());
        }
        Err(RotationError::new(
            RotationErrorKind::Set,
            format!(
                "refusing to send credentials to {} without TLS; use a loopback address or PgAdmin::allow_plaintext",
                self.host
            ),
        ))
    }

    async fn connect(&self, user: &str, password: &SecretString) -> Result<tokio_postgres::Client, String> {
        let (client, connection) = tokio_postgres::Config::new()
            .host(&self.host)
            .port(self.port)
            .user(user)
            .password(password.expose_secret())
            .dbname(&self.dbname)
            .connect_timeout(CONNECT_TIMEOUT)
            .connect(NoTls)
            .await
            .map_err(|e| describe(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// The server's error (`tokio_postgres::Error`'s Display says only "db error"). PostgreSQL's messages
/// name roles and databases, never a password.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Rotates the password of one PostgreSQL role.
///
/// # Example
/// ```no_run
/// use skm_runtime::rotation::postgres::{PgAdmin, PostgresRotator};
/// use skm_runtime::rotation::Rotator;
/// # async fn demo(admin_secret: secrecy::SecretString) -> Result<(), skm_runtime::rotation::RotationError> {
/// let rotator = PostgresRotator::new(PgAdmin::from_secret(&admin_secret)?, "app");
/// let next = secrecy::SecretString::from("a-new-long-random-password");
/// rotator.set(&next, None).await?;
/// rotator.test(&next).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresRotator {
    admin: PgAdmin,
    role: String,
}

impl PostgresRotator {
    /// A rotator for `role`, changing its password as `admin`.
    pub fn new(admin: PgAdmin, role: impl Into<String>) -> Self {
        PostgresRotator {
            admin,
            role: role.into(),
        }
    }

    /// The rotated role.
    pub fn role(&self) -> &str {
        &self.role
    }
}

/// `ALTER ROLE "role" PASSWORD 'verifier'` with both quoted the way PostgreSQL's `quote_ident` and
/// `quote_literal` do (utility statements take no bind parameters).
fn alter_role_statement(role: &str, verifier: &str) -> String {
    format!(
        "ALTER ROLE {} PASSWORD {}",
        postgres_protocol::escape::escape_identifier(role),
        postgres_protocol::escape::escape_literal(verifier)
    )
}

#[async_trait]
impl Rotator for PostgresRotator {
    fn target(&self) -> String {
        format!(
            "PostgreSQL role \"{}\" on {}:{}",
            self.role, self.admin.host, self.admin.port
        )
    }

    async fn set(&self, pending: &SecretString, _current: Option<&SecretString>) -> Result<(), RotationError> {
        self.admin.check_transport()?;
        let failed = |what: String| RotationError::new(RotationErrorKind::Set, format!("{}: {what}", self.target()));
        let client = self
            .admin
            .connect(&self.admin.username, &self.admin.password)
            .await
            .map_err(|e| failed(format!("the admin login as {} failed: {e}", self.admin.username)))?;
        // A fresh salt each time: setting the same password again is harmless, so the step is idempotent.
        let verifier = postgres_protocol::password::scram_sha_256(pending.expose_secret().as_bytes());
        client
            .batch_execute(&alter_role_statement(&self.role, &verifier))
            .await
            .map_err(|e| failed(format!("ALTER ROLE failed: {}", describe(&e))))?;
        tracing::info!(target: "skm", role = %self.role, "changed the PostgreSQL role's password");
        Ok(())
    }

    async fn test(&self, pending: &SecretString) -> Result<(), RotationError> {
        self.admin.check_transport()?;
        let failed = |what: String| RotationError::new(RotationErrorKind::Test, format!("{}: {what}", self.target()));
        let client = self
            .admin
            .connect(&self.role, pending)
            .await
            .map_err(|e| failed(format!("logging in with the new password failed: {e}")))?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| failed(format!("a query with the new password failed: {}", describe(&e))))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(
            alter_role_statement("app", "SCRAM-SHA-256$4096:abc=$x:y"),
            "ALTER ROLE \"app\" PASSWORD 'SCRAM-SHA-256$4096:abc=$x:y'"
        );
        assert_eq!(
            alter_role_statement("we\"ird'; DROP ROLE x; --", "it's"),
            "ALTER ROLE \"we\"\"ird'; DROP ROLE x; --\" PASSWORD 'it''s'"
        );
    }

    #[test]
    fn a_bad_admin_secret_is_described_without_its_content() {
        let e = PgAdmin::from_secret(&SecretString::from(
            r#"{"host": "h", "username": "SENTINEL", "port": 1}"#,
        ))
        .unwrap_err();
        assert!(!e.to_string().contains("SENTINEL"), "{e}");
        assert!(e.to_string().contains("missing or mistyped"), "{e}");
        let e = PgAdmin::from_secret(&SecretString::from("SENTINEL")).unwrap_err();
        assert!(!e.to_string().contains("SENTINEL"), "{e}");
    }

    #[tokio::test]
    async fn credentials_are_not_sent_in_clear_to_a_remote_host() {
        let admin = PgAdmin::new("db.example.com", 5432, "postgres", "pw".into());
        let rotator = PostgresRotator::new(admin, "app");
        let e = rotator.set(&"new".into(), None).await.unwrap_err();
        assert!(e.to_string().contains("without TLS"), "{e}");
    }
}
