//! The fetch plan: which backend paths one load needs, each once.
//!
//! Fields that share a path (and version) cost one fetch; the whole plan goes to the backend in one
//! [`Backend::fetch`](crate::backend::Backend::fetch) call so that it can batch.

use std::collections::BTreeSet;

use crate::backend::FetchRequest;
use crate::spec::{ResolvedField, VersionPin};

/// The distinct requests a set of fields needs, in a stable (sorted) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// One request per distinct (path, version).
    pub requests: Vec<FetchRequest>,
}

impl Plan {
    /// Groups `fields` by (path, version). Fields without a path need no fetch.
    ///
    /// A [`Rotating`](crate::Rotating) field also needs the previous version of its path
    /// ([`VersionPin::Previous`]).
    ///
    /// # Example
    /// ```
    /// use skm_runtime::plan::Plan;
    /// let plan = Plan::for_paths(["db", "db", "jwt"]);
    /// assert_eq!(plan.requests.len(), 2);
    /// ```
    pub fn new(fields: &[ResolvedField]) -> Self {
        let set: BTreeSet<FetchRequest> = fields
            .iter()
            .filter_map(|f| f.path.as_ref().map(|p| (f, p)))
            .flat_map(|(f, p)| {
                let request = |version| FetchRequest {
                    path: p.clone(),
                    version,
                };
                let previous = f.spec.rotating.then(|| request(VersionPin::Previous));
                std::iter::once(request(f.spec.version)).chain(previous)
            })
            .collect();
        Plan {
            requests: set.into_iter().collect(),
        }
    }

    /// A plan for the current versions of `paths` (deduplicated), for tools.
    pub fn for_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let set: BTreeSet<FetchRequest> = paths.into_iter().map(FetchRequest::current).collect();
        Plan {
            requests: set.into_iter().collect(),
        }
    }

    /// Whether nothing needs fetching.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}
