//! Stage 3, fetch: the plan's requests go to their backends under the loader's deadline, one result per
//! request is checked, and every request leaves one `skm::audit` event (never a value).
//!
//! A first load fetches each backend's group of the plan in one [`Backend::fetch`] call, all groups
//! concurrently ([`wave`]): a struct with fields on AWS and on Vault costs one round trip of the slower. A hot-reload refresh
//! ([`refresh`]) starts from the last results: where the backend can tell current versions cheaply it
//! refetches only the paths that moved, otherwise every path, and reports whether anything changed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::backend::{registry, Backend, FailureKind, FetchError, FetchResult};
use crate::error::{Attempt, AttemptOutcome, FieldError, FieldProblem};
use crate::lease::{Issued, LeaseErrorKind, LeaseOptions};
use crate::plan::{FetchRequest, Route};
use crate::spec::VersionPin;

/// One backend's answer for every request of its group.
pub(crate) type Group = HashMap<FetchRequest, FetchResult>;

/// Every backend's answers, by route (`None`: the default backend).
pub(crate) type Fetched = HashMap<Route, Group>;

/// One group of a plan bound to the backend that serves it.
pub(crate) struct Bound<'a> {
    pub(crate) route: Route,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) requests: &'a [FetchRequest],
}

/// Fetches every group concurrently, one backend call each, all under the same deadline.
pub(crate) async fn wave(groups: &[Bound<'_>], deadline: Option<Duration>) -> Fetched {
    let calls = groups.iter().map(|g| all(&*g.backend, g.requests, deadline));
    let results = join_all(calls).await;
    groups.iter().map(|g| g.route).zip(results).collect()
}

/// Refreshes every group concurrently (see [`refresh`]); fails, keeping nothing, when any backend is out.
pub(crate) async fn refresh_wave(
    groups: &[Bound<'_>],
    deadline: Option<Duration>,
    cache: &Fetched,
) -> Result<Refreshed<Fetched>, (Arc<dyn Backend>, String, FetchError)> {
    let empty = Group::new();
    let calls = groups
        .iter()
        .map(|g| refresh(&*g.backend, g.requests, deadline, cache.get(&g.route).unwrap_or(&empty)));
    let mut out = Refreshed {
        fetched: Fetched::new(),
        refetched: 0,
        changed: false,
    };
    for (group, result) in groups.iter().zip(join_all(calls).await) {
        let r = result.map_err(|(path, e)| (group.backend.clone(), path, e))?;
        out.fetched.insert(group.route, r.fetched);
        out.refetched += r.refetched;
        out.changed |= r.changed;
    }
    Ok(out)
}

/// Runs `call` within `deadline`; `None` when the deadline passed first.
async fn within<F: Future>(deadline: Option<Duration>, call: F) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout(d, call).await.ok(),
        None => Some(call.await),
    }
}

/// Fetches `requests` in one backend call: exactly one result per request, each audited.
pub(crate) async fn fetch(
    backend: &dyn Backend,
    requests: &[FetchRequest],
    deadline: Option<Duration>,
) -> Vec<FetchResult> {
    if requests.is_empty() {
        return Vec::new();
    }
    let started = Instant::now();
    let results = match within(deadline, backend.fetch(requests)).await {
        Some(results) if results.len() == requests.len() => results,
        Some(results) => {
            let why = format!(
                "backend returned {} results for {} requests",
                results.len(),
                requests.len()
            );
            vec![Err(FetchError::new(FailureKind::Other, why)); requests.len()]
        }
        None => {
            let why = format!(
                "{} did not answer within the load deadline of {} (waited {} for {} request{}; set SKM_DEADLINE \
                 or Loader::deadline to change it)",
                backend.name(),
                crate::failure::seconds(deadline.unwrap_or_default()),
                crate::failure::seconds(started.elapsed()),
                requests.len(),
                if requests.len() == 1 { "" } else { "s" }
            );
            vec![Err(FetchError::unavailable(why)); requests.len()]
        }
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let backend_name = backend.name();
    tracing::debug!(target: "skm", backend = %backend_name, paths = requests.len(), elapsed_ms = latency_ms, "fetched");
    for (request, result) in requests.iter().zip(&results) {
        let (outcome, version) = match result {
            Ok(p) => ("found".to_string(), p.version.clone().unwrap_or_default()),
            Err(e) => (e.kind.to_string(), String::new()),
        };
        tracing::info!(target: "skm::audit", backend = %backend_name, path = %request.path,
            pin = %request.version, outcome = %outcome, version = %version, latency_ms, "fetch");
    }
    results
}

/// Fetches every request of one group.
pub(crate) async fn all(backend: &dyn Backend, requests: &[FetchRequest], deadline: Option<Duration>) -> Group {
    let results = fetch(backend, requests, deadline).await;
    requests.iter().cloned().zip(results).collect()
}

/// The outcome of a refresh: the new results and what moved.
pub(crate) struct Refreshed<F = Group> {
    pub(crate) fetched: F,
    pub(crate) refetched: usize,
    pub(crate) changed: bool,
}

/// Refreshes `cache` (the last results for `requests`).
///
/// Fails, keeping nothing, when the backend is out (unavailable, throttled, past the deadline, or another
/// failure): a refresh keeps the last good values rather than falling back to a lower layer.
pub(crate) async fn refresh(
    backend: &dyn Backend,
    requests: &[FetchRequest],
    deadline: Option<Duration>,
    cache: &Group,
) -> Result<Refreshed, (String, FetchError)> {
    let probed = match within(deadline, backend.current_versions(requests)).await {
        Some(probed) => probed,
        None => {
            let d = crate::failure::seconds(deadline.unwrap_or_default());
            let e = FetchError::unavailable(format!(
                "{} did not answer the version probe within the deadline of {d}",
                backend.name()
            ));
            return Err((String::from("(version probe)"), e));
        }
    };
    let (to_fetch, deferred): (Vec<FetchRequest>, Vec<FetchRequest>) = match probed {
        Some(versions) if versions.len() == requests.len() => {
            let mut changed = Vec::new();
            for (request, version) in requests.iter().zip(versions) {
                let cached = cache.get(request);
                let cached_version = cached.and_then(|r| r.as_ref().ok()).and_then(|p| p.version.clone());
                match version {
                    Ok(v) if cached_version.as_deref() == Some(v.as_str()) => {}
                    Err(e) if is_outage(&e) => return Err((request.path.clone(), e)),
                    Err(e) if cached.is_some_and(|c| c.as_ref().err() == Some(&e)) => {}
                    _ => changed.push(request.clone()),
                }
            }
            (changed, Vec::new())
        }
        // No cheap probe: refetch, but a previous version can only move when the current one does, so
        // previous versions wait until their path's current value is seen to change.
        _ => requests
            .iter()
            .cloned()
            .partition(|r| r.version != VersionPin::Previous),
    };
    let mut next = cache.clone();
    let (mut refetched, mut changed_paths) = refetch(backend, &to_fetch, deadline, &mut next).await?;
    let previous: Vec<FetchRequest> = deferred
        .into_iter()
        .filter(|r| changed_paths.contains(&r.path) || !cache.contains_key(r))
        .collect();
    let (n, more) = refetch(backend, &previous, deadline, &mut next).await?;
    refetched += n;
    changed_paths.extend(more);
    Ok(Refreshed {
        fetched: next,
        refetched,
        changed: !changed_paths.is_empty(),
    })
}

/// Fetches `requests` into `next`; returns how many were fetched and the paths whose value changed.
async fn refetch(
    backend: &dyn Backend,
    requests: &[FetchRequest],
    deadline: Option<Duration>,
    next: &mut Group,
) -> Result<(usize, Vec<String>), (String, FetchError)> {
    let results = fetch(backend, requests, deadline).await;
    if let Some((request, Err(e))) = requests
        .iter()
        .zip(&results)
        .find(|(_, r)| matches!(r, Err(e) if is_outage(e)))
    {
        return Err((request.path.clone(), e.clone()));
    }
    let mut changed = Vec::new();
    for (request, result) in requests.iter().zip(results) {
        let same = match (next.get(request), &result) {
            (Some(Ok(old)), Ok(new)) => old.value.same_as(&new.value),
            (Some(Err(old)), Err(new)) => old == new,
            _ => false,
        };
        if !same {
            changed.push(request.path.clone());
        }
        next.insert(request.clone(), result);
    }
    Ok((requests.len(), changed))
}

fn is_outage(e: &FetchError) -> bool {
    e.kind.is_outage() || e.kind == FailureKind::Other
}

/// The lease step, beside the fetch of the plan's requests: issues one lease per `#[secret(dynamic = "...")]`
/// field through the loader's default backend, when it offers leases ([`Backend::leases`]). Each entry is the
/// issued lease, or the field's error for the one load report.
pub(crate) async fn issue_fields(
    backend: Option<&Arc<dyn Backend>>,
    fields: &[crate::plan::LeasedField],
    options: LeaseOptions,
    deadline: Option<Duration>,
) -> HashMap<String, Result<Issued, FieldError>> {
    let mut out = HashMap::new();
    // One deadline for every lease of the load, not one per lease.
    let until = deadline.map(|d| Instant::now() + d);
    let leases = backend.and_then(|b| b.leases().map(|l| (b, l)));
    for field in fields {
        let path = field.path.as_str();
        let fail = |kind: FailureKind, reason: FieldProblem, detail: String| FieldError {
            field: field.id.clone(),
            path: Some(path.to_string()),
            key: None,
            env: None,
            type_name: field.spec.type_name.into(),
            reason,
            attempts: vec![Attempt {
                source: format!("dynamic secret {path}"),
                outcome: AttemptOutcome::Failed { kind, detail },
            }],
        };
        let Some((backend, leases)) = leases else {
            let have = backend.map_or_else(|| "no backend".to_string(), |b| format!("the backend {}", b.name()));
            let (who, how) = registry::lease_hint();
            let why =
                format!("`dynamic = \"{path}\"` needs {who} to issue its lease, and the loader has {have}: {how}");
            let kind = FailureKind::Unsupported;
            out.insert(
                field.id.clone(),
                Err(fail(kind, FieldProblem::Invalid(why.clone()), why)),
            );
            continue;
        };
        let left = until.map(|u| u.saturating_duration_since(Instant::now()));
        let Some(issued) = within(left, leases.issue(path, options)).await else {
            let kind = FailureKind::Unavailable;
            let why = format!(
                "{} did not issue the lease within the load deadline of {} (set SKM_DEADLINE or Loader::deadline \
                 to change it)",
                backend.name(),
                crate::failure::seconds(deadline.unwrap_or_default())
            );
            out.insert(field.id.clone(), Err(fail(kind, FieldProblem::Backend(kind), why)));
            continue;
        };
        let result = issued.map(|i| i.described_as(backend.name())).map_err(|e| {
            let kind = match e.kind() {
                LeaseErrorKind::Forbidden => FailureKind::Forbidden,
                LeaseErrorKind::NotFound => FailureKind::NotFound,
                LeaseErrorKind::Unavailable => FailureKind::Unavailable,
                LeaseErrorKind::NotLeased | LeaseErrorKind::Invalid => FailureKind::Invalid,
                _ => FailureKind::Other,
            };
            tracing::info!(target: "skm::audit", field = %field.id, path = %path, error = %e, "lease refused");
            fail(kind, FieldProblem::Backend(kind), e.to_string())
        });
        out.insert(field.id.clone(), result);
    }
    out
}
