//! Backend auto-detection from the environment, read from the [backend registry](crate::backend::registry).
//!
//! The detection order and every signal are stated once, in the registry's module docs; this module only
//! applies them. `SKM_BACKEND=<name or alias>` always wins (`none`: no backend); otherwise the compiled-in
//! backend whose signal is present and whose priority is lowest. With no signal, no backend is used and
//! secrets come from env, `.env` and defaults.

use std::sync::Arc;

use crate::backend::registry::{self, Descriptor, Env};
use crate::backend::{AdminBackend, Backend};
use crate::Error;

/// The detected backend and why.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The backend chosen; `None` for no backend.
    pub backend: Option<&'static Descriptor>,
    /// A sentence for logs and `skm doctor`, e.g. `AWS_REGION is set`.
    pub reason: String,
}

impl Choice {
    /// The chosen backend's name, or `none`.
    pub fn name(&self) -> &'static str {
        self.backend.map_or("none", |d| d.name)
    }
}

/// Resolves an explicit backend name (`SKM_BACKEND`, `--backend`): `Ok(None)` for `none`.
///
/// # Errors
/// The name is unknown (the message lists the accepted ones) or names a backend this build lacks (the
/// message names the cargo feature).
///
/// # Example
/// ```
/// use skm_runtime::detect::explicit;
/// assert_eq!(explicit("none").unwrap().map(|d| d.name), None);
/// assert!(explicit("nope").is_err());
/// ```
pub fn explicit(name: &str) -> Result<Option<&'static Descriptor>, Error> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let Some(d) = registry::find(trimmed) else {
        return Err(Error::config(format!(
            "unknown backend `{}`: use one of {}",
            trimmed.escape_debug(),
            registry::names().join(", ")
        )));
    };
    if !d.compiled {
        return Err(d.not_compiled());
    }
    Ok(Some(d))
}

/// Chooses a backend from environment variables read through `var`.
///
/// Auto-detection only considers backends compiled into this build; an explicit `SKM_BACKEND` naming a
/// missing one is an error that says which cargo feature to enable. When several signals are present, the
/// lowest priority wins and the reason (also logged at `info`) says which signals lost.
///
/// # Errors
/// `SKM_BACKEND` is unknown or names a backend this build lacks.
///
/// # Example
/// ```
/// use skm_runtime::detect::detect;
/// let env = |name: &str| (name == "SKM_BACKEND").then(|| "none".to_string());
/// assert_eq!(detect(&env).unwrap().name(), "none");
/// ```
pub fn detect(var: &dyn Fn(&str) -> Option<String>) -> Result<Choice, Error> {
    if let Some(name) = var("SKM_BACKEND").filter(|v| !v.trim().is_empty()) {
        let backend = explicit(&name)?;
        let reason = format!("SKM_BACKEND={}", backend.map_or("none", |d| d.name));
        return Ok(Choice { backend, reason });
    }
    let mut present: Vec<(&'static Descriptor, String)> = Vec::new();
    for d in registry::all() {
        if let Some(reason) = (d.signal)(var) {
            if d.compiled {
                present.push((d, reason));
            } else {
                // A user who set AWS_REGION expects AWS: say once, visibly, that this build cannot use it.
                let notice = format!(
                    "{reason}, but this build has no {title} (`{feature}` feature), so it is ignored; to use it, \
                     build with `skm-secrets = {{ version = \"0.1\", features = [\"{feature}\"] }}`",
                    title = d.title,
                    feature = d.feature
                );
                crate::notice::warn(&notice, || {
                    tracing::warn!(target: "skm", backend = d.name, signal = %reason, feature = d.feature,
                        "the signal is present but the `{}` feature is off; not using it", d.feature);
                });
            }
        }
    }
    present.sort_by_key(|(d, _)| d.priority);
    let mut present = present.into_iter();
    let Some((winner, reason)) = present.next() else {
        let signals: Vec<&str> = registry::all()
            .iter()
            .filter(|d| d.compiled)
            .map(|d| d.signal_doc)
            .collect();
        return Ok(Choice {
            backend: None,
            reason: format!("no SKM_BACKEND and none of these: {}", signals.join("; ")),
        });
    };
    let losers: Vec<String> = present.map(|(d, r)| format!("{} ({r})", d.name)).collect();
    let reason = if losers.is_empty() {
        reason
    } else {
        let reason = format!(
            "{reason}; {} comes first in the detection order, ahead of {} (set SKM_BACKEND to choose)",
            winner.name,
            losers.join(", ")
        );
        tracing::info!(target: "skm", backend = winner.name, "{reason}");
        reason
    };
    Ok(Choice {
        backend: Some(winner),
        reason,
    })
}

/// Builds the chosen backend from the process environment; `None` when none was chosen.
///
/// # Errors
/// The backend is not compiled in or cannot be configured from the environment.
pub async fn build(choice: &Choice) -> Result<Option<Arc<dyn Backend>>, Error> {
    // Every backend is also an admin backend; the read path just forgets the write operations.
    Ok(build_admin(choice).await?.map(|b| b as Arc<dyn Backend>))
}

/// Like [`build`], with the write operations of [`AdminBackend`]: what the `skm` tool works with.
///
/// # Errors
/// As [`build`].
pub async fn build_admin(choice: &Choice) -> Result<Option<Arc<dyn AdminBackend>>, Error> {
    build_admin_with(choice, registry::process_env()).await
}

/// Like [`build_admin`], reading the environment through `env`.
///
/// # Errors
/// As [`build`].
pub async fn build_admin_with(choice: &Choice, env: Env) -> Result<Option<Arc<dyn AdminBackend>>, Error> {
    match choice.backend {
        None => Ok(None),
        Some(d) => d.build_admin(env).await.map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
    }

    #[test]
    fn explicit_names_aliases_and_errors() {
        assert_eq!(detect(&env(&[("SKM_BACKEND", "none")])).unwrap().name(), "none");
        let e = detect(&env(&[("SKM_BACKEND", "gcp-nope")])).unwrap_err().to_string();
        assert!(e.contains("aws") && e.contains("vault") && e.contains("local"), "{e}");
        for d in registry::all() {
            let r = explicit(d.name);
            assert_eq!(r.is_ok(), d.compiled, "{}", d.name);
            if !d.compiled {
                assert!(r.unwrap_err().to_string().contains(d.feature));
            }
        }
    }

    #[test]
    fn several_signals_follow_the_order_and_say_so() {
        let both = detect(&env(&[("AWS_REGION", "eu-west-1"), ("VAULT_ADDR", "https://v")])).unwrap();
        match (cfg!(feature = "aws"), cfg!(feature = "vault")) {
            (true, true) => {
                assert_eq!(both.name(), "aws");
                assert!(
                    both.reason.contains("ahead of vault (VAULT_ADDR is set)"),
                    "{}",
                    both.reason
                );
            }
            (true, false) => assert_eq!(both.name(), "aws"),
            (false, true) => assert_eq!(both.name(), "vault"),
            (false, false) => assert_eq!(both.name(), "none"),
        }
    }
}
