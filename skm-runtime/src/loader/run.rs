//! The single pipeline entry every load, check and watch refresh runs: plan, bind each backend, fetch in one
//! wave, resolve; and what a refresh keeps from the pass before.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::Loader;
use crate::backend::registry::{self, Descriptor};
use crate::backend::{Backend, FetchError};
use crate::error::Error;
use crate::fetch::{self, Bound, Fetched};
use crate::plan::{self, Plan, ResolvedField};
use crate::report::Resolved;
use crate::resolve::files::Stamp;
use crate::resolve::layer::Layer;
use crate::resolve::{self, Binding, Reads, Sources};
use crate::values::Secrets;

#[cfg(feature = "local")]
pub(crate) use super::cache::CacheKey;
/// Without the local store there is no key to keep a cache with: [`Loader::offline_cache`] is refused.
#[cfg(not(feature = "local"))]
pub(crate) enum CacheKey {}
#[cfg(not(feature = "local"))]
impl CacheKey {
    fn apply(&self, _: &[Bound<'_>], _: &mut Fetched) -> Vec<String> {
        match *self {}
    }
    fn store(&self, _: &[Bound<'_>], _: &Fetched) -> Result<(), String> {
        match *self {}
    }
}

impl Loader {
    /// `T`'s declarations resolved for this loader's profile.
    pub(crate) fn fields<T: Secrets>(&self) -> Result<Vec<ResolvedField>, Error> {
        T::spec().resolve(self.resolved_profile()?.as_deref())
    }

    /// The pipeline: plan → fetch → resolve → report, for a first load (`prior` is `None`) or a hot-reload
    /// refresh of the results `prior` holds. The values stage runs on the result.
    ///
    /// A refresh whose backend results did not change resolves nothing (`resolved` is `None`); one whose
    /// backend is out fails with [`Error::Backend`] so that the caller keeps its last good values.
    pub(crate) async fn run(&self, fields: &[ResolvedField], prior: Option<&Prior>) -> Result<Pass, Error> {
        self.run_cached(fields, prior, None).await
    }

    /// [`Loader::run`] with the offline cache of a typed load ([`Loader::offline_cache`]): a first pass
    /// replaces unavailable backend answers by kept ones (unless strict) and keeps the answers of a pass
    /// whose fields all resolved.
    pub(crate) async fn run_cached(
        &self,
        fields: &[ResolvedField],
        prior: Option<&Prior>,
        cache: Option<&CacheKey>,
    ) -> Result<Pass, Error> {
        plan::check_unique(fields)?;
        let files_dir = self
            .order
            .contains(&Layer::Files)
            .then(|| self.secrets_dir.resolve(&self.env))
            .flatten();
        let (paths, dotenv_path) = self.file_paths(fields, files_dir.as_deref());
        let stamp = Stamp::of(paths.iter().cloned().chain(dotenv_path.clone()));
        let files_changed = prior.is_some_and(|p| p.stamp != stamp);
        let prior = prior.map(|p| &p.fetched);
        let plan = if self.order.contains(&Layer::Backend) {
            Plan::new(fields)
        } else {
            Plan::default()
        };
        let (bound, routed) = self.bind(&plan).await;
        // The files are read while the backends answer, under the same deadline; a refresh reads them only
        // when their stamp moved or the backend changed (below).
        let (mut fetched, refetched, changed, mut reads) = match prior {
            // One wave: every backend's group at once.
            None => {
                let (fetched, reads) = tokio::join!(
                    fetch::wave(&bound, self.deadline),
                    Reads::gather(paths.clone(), dotenv_path.clone(), self.deadline)
                );
                (fetched, bound.iter().map(|g| g.requests.len()).sum(), true, Some(reads))
            }
            Some(prior) if !bound.is_empty() => {
                let r = fetch::refresh_wave(&bound, self.deadline, prior)
                    .await
                    .map_err(|(b, path, e)| refresh_failed(&*b, &path, e))?;
                (r.fetched, r.refetched, r.changed, None)
            }
            Some(_) => (Fetched::new(), 0, false, None),
        };
        let mut cache_notes = Vec::new();
        if let Some(cache) = cache.filter(|_| prior.is_none() && !self.strict) {
            cache_notes = cache.apply(&bound, &mut fetched);
            for note in &cache_notes {
                crate::notice::warn(note, || tracing::warn!(target: "skm", "{note}"));
            }
        }
        if !changed && !files_changed {
            return Ok(Pass {
                resolved: None,
                prior: Prior { fetched, stamp },
                refetched,
            });
        }
        let mut reads = match reads.take() {
            Some(reads) => reads,
            None => Reads::gather(paths, dotenv_path, self.deadline).await,
        };
        let dotenv = reads.dotenv.take();
        let sources = Sources {
            order: &self.order,
            backend: self.backend_name(),
            backend_reason: &self.backend_reason,
            env: &self.env,
            dotenv: self.dotenv.as_deref(),
            files: files_dir.as_deref(),
            strict: self.strict,
            allow_fallback: &self.allow_fallback,
            fetched: &fetched,
            routed: &routed,
            reads: &reads,
            empty_is_absent: self.empty_is_absent,
        };
        let (decided, mut warnings) = resolve::resolve(&sources, fields, dotenv)?;
        let all_resolved = !decided.iter().any(|d| matches!(d, resolve::Decided::Failed(_)));
        if let Some(cache) = cache.filter(|_| prior.is_none() && all_resolved && cache_notes.is_empty()) {
            if let Err(why) = cache.store(&bound, &fetched) {
                let note = format!("the offline cache could not be written: {why}");
                crate::notice::warn(&note, || tracing::warn!(target: "skm", "{note}"));
                warnings.push(note);
            }
        }
        warnings.extend(cache_notes);
        let resolved = crate::report::assemble(
            fields,
            decided,
            warnings,
            self.backend_name(),
            self.backend_reason.clone(),
            self.strict,
        );
        Ok(Pass {
            resolved: Some(resolved),
            prior: Prior { fetched, stamp },
            refetched,
        })
    }

    /// Binds each group of `plan` to its backend: the default group to the default backend, each routed
    /// group to [`Loader::with_backend`]'s, the default backend when detection chose that name, or a
    /// detected backend (built now, once). Routes left unbound say why, for the resolve stage.
    async fn bind<'p>(&self, plan: &'p Plan) -> (Vec<Bound<'p>>, HashMap<&'static str, Binding>) {
        let mut bound = Vec::new();
        let mut bindings = HashMap::new();
        if let Some(b) = self.backend.as_ref().filter(|_| !plan.requests.is_empty()) {
            bound.push(Bound {
                route: None,
                backend: b.clone(),
                requests: &plan.requests,
            });
        }
        let env_only = self.backend.is_none() && self.routed.is_empty() && self.detected.is_empty();
        for (name, requests) in &plan.routed {
            match self.route_backend(name, env_only).await {
                Ok(backend) => {
                    bindings.insert(*name, Binding::Bound(backend.name()));
                    bound.push(Bound {
                        route: Some(name),
                        backend,
                        requests,
                    });
                }
                Err(binding) => {
                    bindings.insert(*name, binding);
                }
            }
        }
        (bound, bindings)
    }

    /// The backend serving the route `name`, or why there is none.
    pub(super) async fn route_backend(&self, name: &str, env_only: bool) -> Result<Arc<dyn Backend>, Binding> {
        if let Some(b) = self.routed.get(name) {
            return Ok(b.clone());
        }
        if let (Some(b), Some(kind)) = (&self.backend, self.backend_kind) {
            if kind == name {
                return Ok(b.clone());
            }
        }
        if let Some(d) = self.detected.iter().find(|d| d.descriptor.name == name) {
            let built = d
                .built
                .get_or_init(|| async {
                    tracing::info!(target: "skm", backend = d.descriptor.name, reason = %d.reason,
                        "skm routed backend selected");
                    crate::detect::build(&crate::detect::Choice {
                        backend: Some(d.descriptor),
                        reason: d.reason.clone(),
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|b| b.ok_or_else(|| "no backend was built".to_string()))
                })
                .await;
            return built.clone().map_err(|e| Binding::Unconfigured {
                why: format!("backend `{name}` ({}) cannot be set up: {e}", d.reason),
                fail: true,
            });
        }
        let how = match registry::find(name) {
            Some(d) if !d.compiled => d.not_compiled().to_string(),
            Some(d) => format!(
                "`Loader::from_env` configures it when {}, or add one with `Loader::with_backend(\"{name}\", ...)`",
                d.signal_doc
            ),
            None => format!("add one with `Loader::with_backend(\"{name}\", ...)`"),
        };
        Err(Binding::Unconfigured {
            why: format!("the field is routed to backend `{name}`, which is not configured: {how}"),
            fail: !env_only,
        })
    }

    /// Every file this load may read: the files layer's and the `NAME_FILE` ones, and the `.env` file. A
    /// refresh whose [`Stamp`] of them differs re-resolves even when the backend did not change.
    fn file_paths(
        &self,
        fields: &[ResolvedField],
        files_dir: Option<&std::path::Path>,
    ) -> (Vec<PathBuf>, Option<PathBuf>) {
        let env_on = self.order.contains(&Layer::Env);
        // The `.env` file too: a refresh resolves again when it was edited.
        let dotenv = self
            .dotenv
            .clone()
            .filter(|_| self.order.contains(&Layer::Dotenv) && fields.iter().any(|f| f.env.is_some()));
        let paths = fields.iter().filter_map(|f| f.env.as_deref()).flat_map(|name| {
            let in_dir = files_dir.map(|d| d.join(name));
            let named = env_on
                .then(|| self.env.get(&format!("{name}_FILE")))
                .flatten()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from);
            in_dir.into_iter().chain(named)
        });
        (paths.collect(), dotenv)
    }
}

/// A registry backend whose detection signal was present, built on first use by a routed field.
pub(super) struct Detected {
    pub(super) descriptor: &'static Descriptor,
    pub(super) reason: String,
    pub(super) built: tokio::sync::OnceCell<Result<Arc<dyn Backend>, String>>,
}

/// The canonical registry name for `name` (an alias maps to its backend), else `name` as given.
pub(super) fn canonical(name: &str) -> String {
    registry::find(name).map_or_else(|| name.trim().to_string(), |d| d.name.to_string())
}

/// What a hot-reload refresh starts from: the last backend results and the files' stamp.
#[derive(Default)]
pub(crate) struct Prior {
    pub(crate) fetched: Fetched,
    pub(crate) stamp: Stamp,
}

/// One run of the pipeline.
pub(crate) struct Pass {
    /// The report, or `None` for a refresh that found nothing new.
    pub(crate) resolved: Option<Resolved>,
    /// The backend results and the files' stamp, kept by hot reload for the next refresh.
    pub(crate) prior: Prior,
    /// How many requests went to the backend.
    pub(crate) refetched: usize,
}

fn refresh_failed(backend: &dyn Backend, path: &str, e: FetchError) -> Error {
    Error::Backend {
        backend: backend.name(),
        detail: format!("refresh failed at `{path}`: {e}"),
        source: Some(Box::new(e)),
    }
}
