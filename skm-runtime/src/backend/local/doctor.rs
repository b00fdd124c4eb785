//! The registry's hooks for the local store: building from the environment, and `skm doctor`'s checks of
//! the store directory and its key.

use std::sync::Arc;

use super::{KeySource, LocalStore};
use crate::backend::registry::{BoxFuture, Env, Probe, ProbeLevel};
use crate::backend::{AdminBackend, Backend, FetchRequest};
use crate::Error;

/// The registry's `build`.
pub(crate) fn registry_build(env: Env) -> BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async move { Ok(Arc::new(LocalStore::from_lookup(&|n| env(n))?) as Arc<dyn AdminBackend>) })
}

/// The registry's `doctor`: where the store and its key are, and whether the key opens a stored secret.
pub(crate) fn doctor(env: Env) -> BoxFuture<Vec<Probe>> {
    Box::pin(async move {
        let store = match LocalStore::from_lookup(&|n| env(n)) {
            Ok(s) => s,
            Err(e) => return vec![Probe::new("local key", ProbeLevel::Fail, e.to_string())],
        };
        let mut out = Vec::new();
        let root = store.path().display().to_string();
        if !LocalStore::exists_at(store.path()) {
            out.push(Probe::new(
                "local store",
                ProbeLevel::Skip,
                format!("no store at {root} yet (the first `skm put` creates it)"),
            ));
        }
        let key = match &store.inner.key_source {
            KeySource::Given(_) => "SKM_LOCAL_KEY".to_string(),
            KeySource::File(p) if p.exists() => format!("the key file {}", p.display()),
            KeySource::File(p) => format!("the key file {} (not created yet)", p.display()),
            #[cfg(feature = "keyring")]
            KeySource::Keyring => super::inner::keyring_entry(),
            KeySource::Missing(why) => return vec![Probe::new("local key", ProbeLevel::Fail, why.clone())],
        };
        let names = match store.inner.names() {
            Ok(n) => n,
            Err(e) => {
                out.push(Probe::new("local store", ProbeLevel::Fail, e.fetch().detail));
                return out;
            }
        };
        // Opening one secret proves the key is the store's; nothing is shown of it.
        match names.first() {
            None => out.push(Probe::new(
                "local key",
                ProbeLevel::Ok,
                format!("{key}; the store holds no secrets"),
            )),
            Some((_, path)) => match store.fetch(&[FetchRequest::current(path.clone())]).await.remove(0) {
                Ok(_) => out.push(Probe::new(
                    "local key",
                    ProbeLevel::Ok,
                    format!("{key} opens the store at {root} ({} paths)", names.len()),
                )),
                Err(e) if e.kind == crate::backend::FailureKind::NotFound => out.push(Probe::new(
                    "local key",
                    ProbeLevel::Ok,
                    format!("{key}; the store at {root} has {} paths", names.len()),
                )),
                Err(e) => out.push(Probe::new("local key", ProbeLevel::Fail, format!("{key}: {e}"))),
            },
        }
        out
    })
}
