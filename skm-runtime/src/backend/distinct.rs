//! The distinct requests of one fetch: the one de-duplication of the backends that read more than one request
//! per call (AWS, GCP, Azure). The plan already asks for each (path, version) once per load; this is for the
//! callers of [`Backend::fetch`](super::Backend::fetch) that do not go through a plan (tools, tests), so that
//! identical requests still cost one read there.

use std::collections::HashMap;

use super::{FailureKind, FetchError, FetchRequest, FetchResult};

/// The distinct requests of one fetch: identical requests cost one lookup, and each gets its own copy of the
/// answer ([`Distinct::spread`]).
pub(crate) struct Distinct<'a> {
    /// The distinct requests, in first-seen order; a backend answers by index into this.
    pub(crate) unique: Vec<&'a FetchRequest>,
    /// For each request, the index of its distinct twin in `unique`.
    slot_of: Vec<usize>,
}

impl<'a> Distinct<'a> {
    pub(crate) fn of(requests: &'a [FetchRequest]) -> Self {
        let mut slots: HashMap<&FetchRequest, usize> = HashMap::new();
        let mut unique: Vec<&FetchRequest> = Vec::new();
        let slot_of = requests
            .iter()
            .map(|r| {
                *slots.entry(r).or_insert_with(|| {
                    unique.push(r);
                    unique.len() - 1
                })
            })
            .collect();
        Distinct { unique, slot_of }
    }

    /// One answer per request, in the requests' order, from one per distinct request; a distinct request
    /// left unanswered (its task was cancelled: the runtime is shutting down) is an error.
    pub(crate) fn spread(self, answers: Vec<Option<FetchResult>>) -> Vec<FetchResult> {
        let answers: Vec<FetchResult> = answers
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(FetchError::new(FailureKind::Other, "the request was cancelled"))))
            .collect();
        self.slot_of.into_iter().map(|slot| answers[slot].clone()).collect()
    }
}
