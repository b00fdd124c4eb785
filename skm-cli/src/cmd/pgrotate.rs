//! `rotate PATH --key K --postgres-role ROLE`: a new password for a PostgreSQL role and the secret that holds it.
//!
//! The order keeps the stored password one the database accepts, whatever step fails:
//! 1. generate the new password and store it as *pending* next to the current one (key `K.pending` of the
//!    same JSON object, check-and-set where the backend has it), so it is durable before the database changes;
//! 2. `ALTER ROLE` through [`PostgresRotator::set`]; on failure the database is unchanged;
//! 3. log in with it ([`PostgresRotator::test`]); on failure the role is set back to the stored password;
//! 4. store it as current (key `K`, the pending key removed), check-and-set against the pending write.
//!
//! If step 4 fails, the role is set back to the stored password too. Every failure says what state it left
//! and that running the same command again finishes the rotation. On AWS Secrets Manager the staging-label
//! protocol of [`skm_runtime::rotation::aws`] does the same with `AWSPENDING` / `AWSCURRENT`.

use secrecy::SecretString;
use serde_json::json;
use skm_runtime::rotation::postgres::{PgAdmin, PostgresRotator};
use skm_runtime::rotation::Rotator;

use super::ops::generate;
use super::util::{as_object, fetch_one, key_text, non_atomic_warning, update_object, Object};
use crate::args::Charset;
use crate::output::Tone;
use crate::safe::display;
use crate::{exit, Ctx, Fail};

/// Where the admin connection comes from: `--postgres-url` (else `SKM_POSTGRES_ADMIN_URL`), and the admin's
/// password from `--admin-path` / `--admin-key` (else `PGPASSWORD`, else none).
pub(crate) struct AdminFrom {
    pub url: Option<String>,
    pub path: Option<String>,
    pub key: Option<String>,
}

/// The key holding the pending password while a rotation runs.
pub(crate) fn pending_key(key: &str) -> String {
    format!("{key}.pending")
}

pub(crate) async fn run(
    ctx: &mut Ctx<'_, '_>,
    path: &str,
    key: &str,
    role: &str,
    from: AdminFrom,
    length: u16,
    charset: Charset,
) -> Result<u8, Fail> {
    let backend = ctx.backend().await?;
    let admin = admin(backend.as_ref(), &from).await?;
    let rotator = PostgresRotator::new(admin, role);
    let target = rotator.target();

    // A store whose versions carry staging labels rotates by its own protocol (AWS's four steps).
    #[cfg(feature = "aws")]
    if ctx.backend.is_none() && ctx.choice()?.backend.is_some_and(|d| d.staging_labels) {
        return aws(ctx, path, key, rotator, length).await;
    }

    let pending_key = pending_key(key);
    let new = generate(usize::from(length), charset)?;
    let new_secret = SecretString::from(new.clone());

    // Step 1: the new password, durable as pending; the stored current one is what a failure restores.
    let mut old: Option<String> = None;
    let mut replaced_pending = false;
    let pending = update_object(backend.as_ref(), path, |current| {
        let mut object = match current {
            None => Object::new(),
            Some(Ok(o)) => o,
            Some(Err(())) => {
                return Err(Fail::Failed(format!(
                    "`{}` does not hold a JSON object, so key `{key}` cannot be rotated; nothing was changed",
                    display(path)
                )))
            }
        };
        old = key_text(&object, key);
        replaced_pending = object.contains_key(&pending_key);
        object.insert(pending_key.clone(), json!(new));
        Ok(object)
    })
    .await
    .map_err(|e| state(e, "nothing was changed"))?;
    if !pending.atomic {
        ctx.ui.warn(non_atomic_warning(&backend.name()));
    }
    if replaced_pending {
        ctx.ui.warn(format!(
            "`{}` held a pending password from an earlier rotation that did not finish; this run replaces it",
            display(path)
        ));
    }
    let old_secret = old.map(SecretString::from);

    // Step 2: the database.
    if let Err(e) = rotator.set(&new_secret, old_secret.as_ref()).await {
        let cleaned = clear_pending(backend.as_ref(), path, key, &new).await;
        return Err(Fail::Failed(format!(
            "{e}; the database is unchanged and `{}` key `{key}` still holds the password it accepts{}; fix the \
             cause and run the same command again",
            display(path),
            pending_note(&cleaned, &pending_key)
        )));
    }

    // Step 3: a login with the new password.
    if let Err(e) = rotator.test(&new_secret).await {
        let restored = restore(&rotator, old_secret.as_ref(), &new_secret).await;
        let cleaned = clear_pending(backend.as_ref(), path, key, &new).await;
        return Err(Fail::Failed(format!(
            "{e}; {restored}{}; fix the cause and run the same command again",
            pending_note(&cleaned, &pending_key)
        )));
    }

    // Step 4: the new password becomes the stored one.
    let stored = update_object(backend.as_ref(), path, |current| {
        let mut object = match current {
            Some(Ok(o)) => o,
            _ => {
                return Err(Fail::Failed(
                    "the secret was deleted or replaced during the rotation".into(),
                ))
            }
        };
        match key_text(&object, &pending_key) {
            Some(p) if super::util::constant_eq(p.as_bytes(), new.as_bytes()) => {}
            _ => {
                return Err(Fail::Failed(
                    "another rotation of this secret replaced the pending password during this one".into(),
                ))
            }
        }
        object.remove(&pending_key);
        object.insert(key.to_string(), json!(new));
        Ok(object)
    })
    .await;
    let write = match stored {
        Ok(write) => write,
        Err(Fail::Failed(m) | Fail::Usage(m)) => {
            let restored = restore(&rotator, old_secret.as_ref(), &new_secret).await;
            return Err(Fail::Failed(format!(
                "storing the new password failed: {m}; {restored}; `{}` key `{pending_key}` holds the password {target} \
                 was given; run the same command again once the backend accepts writes",
                display(path)
            )));
        }
    };
    if !write.atomic && pending.atomic {
        ctx.ui.warn(non_atomic_warning(&backend.name()));
    }
    let bits = super::ops::entropy_bits(length, charset).floor();
    if ctx.ui.json {
        ctx.ui.json(
            &json!({ "path": path, "key": key, "version": write.version, "target": target, "entropy_bits": bits as u64 }),
        );
    } else {
        let v = ctx.ui.paint(&write.version, Tone::Good);
        ctx.ui.line(format!(
            "rotated `{}` key `{}` and {target}: version {v} ({bits} bits of entropy)",
            display(path),
            display(key)
        ));
    }
    Ok(exit::OK)
}

/// Adds the state a failed step left to its message.
fn state(fail: Fail, state: &str) -> Fail {
    match fail {
        Fail::Failed(m) => Fail::Failed(format!("{m}; {state}")),
        Fail::Usage(m) => Fail::Usage(format!("{m}; {state}")),
    }
}

/// Sets the role back to the stored password after the new one was set; says what state that left.
async fn restore(rotator: &PostgresRotator, old: Option<&SecretString>, new: &SecretString) -> String {
    let target = rotator.target();
    match old {
        None => format!(
            "{target} may have the new password, which is stored only as pending (there was no stored password to \
             set it back to)"
        ),
        Some(old) => match rotator.set(old, Some(new)).await {
            Ok(()) => format!("{target} was set back to the stored password, which it accepts"),
            Err(undo) => format!(
                "setting {target} back to the stored password failed too ({undo}): the database has the pending \
                 password, not the stored one"
            ),
        },
    }
}

/// Removes the pending key written by step 1, if it is still ours; `Err` says why it stayed.
async fn clear_pending(
    backend: &dyn skm_runtime::backend::AdminBackend,
    path: &str,
    key: &str,
    ours: &str,
) -> Result<(), String> {
    let pending_key = pending_key(key);
    let mut gone = false;
    let cleared = update_object(backend, path, |current| {
        let Some(Ok(mut object)) = current else {
            return Err(Fail::Failed("the secret changed".into()));
        };
        match object.get(&pending_key) {
            Some(serde_json::Value::String(p)) if super::util::constant_eq(p.as_bytes(), ours.as_bytes()) => {
                object.remove(&pending_key);
                Ok(object)
            }
            _ => {
                gone = true;
                Err(Fail::Failed("another run replaced it".into()))
            }
        }
    })
    .await;
    match cleared {
        Ok(_) => Ok(()),
        Err(_) if gone => Ok(()),
        Err(Fail::Failed(m) | Fail::Usage(m)) => Err(m),
    }
}

fn pending_note(cleaned: &Result<(), String>, pending_key: &str) -> String {
    match cleaned {
        Ok(()) => String::new(),
        Err(why) => format!(
            " (the unused pending password stays at key `{pending_key}`: removing it failed: {why}; the next rotation \
             replaces it)"
        ),
    }
}

/// The admin connection: host, port, user and database from the URL, the password from a secret or
/// `PGPASSWORD`. A URL holding a password is refused: it would sit in argv or the environment in clear.
async fn admin(backend: &dyn skm_runtime::backend::AdminBackend, from: &AdminFrom) -> Result<PgAdmin, Fail> {
    let url = from
        .url
        .clone()
        .or_else(|| crate::select::env_var("SKM_POSTGRES_ADMIN_URL").filter(|u| !u.trim().is_empty()));
    // A whole database secret (`host`, `port`, `username`, `password`, `dbname`) when no URL is given.
    let secret = match &from.path {
        None => None,
        Some(p) => {
            let payload = fetch_one(backend, p, skm_runtime::backend::VersionPin::Current)
                .await?
                .ok_or_else(|| Fail::Usage(format!("the admin secret `{}` does not exist", display(p))))?;
            Some((p.clone(), payload.value))
        }
    };
    let Some(url) = url else {
        let Some((p, value)) = secret.filter(|_| from.key.is_none()) else {
            return Err(Fail::Usage(
                "--postgres-role needs the admin connection: --postgres-url (or SKM_POSTGRES_ADMIN_URL) without a \
                 password, or --admin-path naming a database secret (host, port, username, password, dbname)"
                    .into(),
            ));
        };
        let text = match value {
            skm_runtime::backend::SecretValue::Text(t) => t,
            skm_runtime::backend::SecretValue::Binary(_) => {
                return Err(Fail::Usage(format!("the admin secret `{}` is binary", display(&p))))
            }
        };
        return PgAdmin::from_secret(&text).map_err(|e| Fail::Usage(format!("admin secret `{}`: {e}", display(&p))));
    };
    let config: tokio_postgres::Config = url.parse().map_err(|_| {
        // tokio-postgres's message may quote the URL; say only that it is not one.
        Fail::Usage("--postgres-url / SKM_POSTGRES_ADMIN_URL is not a PostgreSQL connection URL".into())
    })?;
    if config.get_password().is_some() {
        return Err(Fail::Usage(
            "--postgres-url / SKM_POSTGRES_ADMIN_URL holds a password: remove it (and change it, since it was \
             exposed) and give the admin password through --admin-path/--admin-key or PGPASSWORD"
                .into(),
        ));
    }
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(str::to_string)
        .ok_or_else(|| Fail::Usage("--postgres-url / SKM_POSTGRES_ADMIN_URL names no user".into()))?;
    let password = match (&secret, &from.key) {
        (Some((p, value)), Some(k)) => {
            let object = as_object(value)
                .ok_or_else(|| Fail::Usage(format!("the admin secret `{}` is not a JSON object", display(p))))?;
            key_text(&object, k)
                .ok_or_else(|| Fail::Usage(format!("the admin secret `{}` has no key `{}`", display(p), display(k))))?
        }
        (Some((_, skm_runtime::backend::SecretValue::Text(t))), None) => {
            use secrecy::ExposeSecret;
            t.expose_secret().to_string()
        }
        (Some((p, _)), None) => return Err(Fail::Usage(format!("the admin secret `{}` is binary", display(p)))),
        (None, _) => std::env::var("PGPASSWORD").unwrap_or_default(),
    };
    let mut admin = PgAdmin::new(host, port, user, SecretString::from(password));
    if let Some(db) = config.get_dbname() {
        admin = admin.dbname(db);
    }
    Ok(admin)
}

/// On AWS Secrets Manager: the rotation service's four steps (`AWSPENDING`, then `AWSCURRENT`).
#[cfg(feature = "aws")]
async fn aws(ctx: &mut Ctx<'_, '_>, path: &str, key: &str, rotator: PostgresRotator, length: u16) -> Result<u8, Fail> {
    use skm_runtime::backend::aws::AwsBackend;
    use skm_runtime::rotation::aws::AwsRotation;
    let target = rotator.target();
    let aws = AwsBackend::from_env().await?;
    let rotated = AwsRotation::from_backend(&aws, rotator)
        .key(Some(key))
        .password_length(u32::from(length))
        .rotate(path)
        .await
        .map_err(|e| Fail::Failed(e.to_string()))?;
    if ctx.ui.json {
        ctx.ui
            .json(&json!({ "path": path, "key": key, "version": rotated.version_id, "target": target }));
    } else {
        let v = ctx.ui.paint(&rotated.version_id, Tone::Good);
        ctx.ui.line(format!(
            "rotated `{}` key `{}` and {target}: AWSCURRENT is version {v}",
            display(path),
            display(key)
        ));
    }
    Ok(exit::OK)
}
