//! Provider quotas for the proxy: per-operation token buckets, answered as the provider answers.
//!
//! AWS Secrets Manager limits each API operation per account and region (`BatchGetSecretValue` 100/s,
//! `GetSecretValue` 10,000/s, `DescribeSecret` 40,000/s) and answers a call over its quota with HTTP 400
//! `ThrottlingException` ("Rate exceeded"). Google Cloud Secret Manager limits access requests (90,000/min),
//! other reads (600/min) and writes (600/min) per project and answers 429 `RESOURCE_EXHAUSTED`. A test bed with
//! the same buckets (scaled down by a factor, since a loopback emulator cannot serve 10,000 requests a second)
//! shows how a fleet of clients behaves against them.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::time::Instant;

use crate::proxy::{Action, RecordedRequest};

/// The rate of one operation: `rate` requests per second on average, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size: how many requests may arrive at once after a quiet period.
    pub burst: f64,
}

impl Rate {
    /// `per_second` requests a second, with a burst of one second's worth (at least 1).
    ///
    /// ```
    /// let rate = skm_testing::Rate::per_second(100.0);
    /// assert_eq!(rate.burst, 100.0);
    /// ```
    pub fn per_second(per_second: f64) -> Rate {
        Rate {
            per_second,
            burst: per_second.max(1.0),
        }
    }

    /// `per_minute` requests a minute (as GCP states its quotas), with a burst of one minute's worth.
    pub fn per_minute(per_minute: f64) -> Rate {
        Rate {
            per_second: per_minute / 60.0,
            burst: per_minute.max(1.0),
        }
    }

    /// The same rate with another burst (at least 1).
    pub fn with_burst(self, burst: f64) -> Rate {
        Rate {
            burst: burst.max(1.0),
            ..self
        }
    }

    fn scaled(self, factor: f64) -> Rate {
        Rate {
            per_second: self.per_second * factor,
            burst: (self.burst * factor).max(1.0),
        }
    }
}

/// Which provider's wording an over-quota answer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// HTTP 400, `application/x-amz-json-1.1`, `{"__type":"ThrottlingException","message":"Rate exceeded"}`.
    Aws,
    /// HTTP 429, `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED",...}}`.
    Gcp,
}

/// The quota operation a request counts against, or `None` for a request no quota covers.
///
/// - AWS (an `X-Amz-Target` header): the operation without its service prefix, e.g. `GetSecretValue`.
/// - GCP Secret Manager (a path under `/v1/projects/`): `gcp.access` for `...:access` (reading a version's
///   payload), `gcp.write` for every method but `GET`, `gcp.read` for the other `GET`s; GCP's quota groups.
///
/// ```
/// # use skm_testing::{quota_operation, RecordedRequest, HeaderMap, Bytes};
/// let request = RecordedRequest {
///     method: "GET".into(),
///     path: "/v1/projects/p/secrets/db/versions/latest:access".into(),
///     target: None,
///     headers: HeaderMap::new(),
///     body: Bytes::new(),
/// };
/// assert_eq!(quota_operation(&request).as_deref(), Some("gcp.access"));
/// ```
pub fn quota_operation(request: &RecordedRequest) -> Option<String> {
    if let Some(target) = &request.target {
        let operation = target.rsplit_once('.').map_or(target.as_str(), |(_, op)| op);
        return Some(operation.to_string());
    }
    let path = request.path.split('?').next().unwrap_or_default();
    if path.starts_with("/v1/projects/") {
        let group = if request.method != "GET" {
            "gcp.write"
        } else if path.ends_with(":access") {
            "gcp.access"
        } else {
            "gcp.read"
        };
        return Some(group.to_string());
    }
    None
}

/// Requests and throttled requests of one quota operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperationCount {
    /// Every request counted against the operation's quota.
    pub total: usize,
    /// Those answered "over quota" without reaching the target.
    pub throttled: usize,
}

struct Bucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: Rate) -> Bucket {
        Bucket {
            rate,
            tokens: rate.burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-operation token buckets, given to [`Proxy::set_quotas`](crate::Proxy::set_quotas).
///
/// ```
/// use skm_testing::{Quotas, Rate};
/// // AWS's Secrets Manager quotas at half their size, and a tighter batch quota.
/// let quotas = Quotas::aws(0.5).with("BatchGetSecretValue", Rate::per_second(2.0));
/// assert_eq!(quotas.rate("GetSecretValue"), Some(Rate::per_second(5_000.0)));
/// assert_eq!(quotas.rate("BatchGetSecretValue"), Some(Rate::per_second(2.0)));
/// ```
#[derive(Clone, Debug)]
pub struct Quotas {
    provider: Provider,
    rates: BTreeMap<String, Rate>,
}

impl Quotas {
    /// AWS Secrets Manager's per-region rates times `factor`: `BatchGetSecretValue` 100/s,
    /// `GetSecretValue` 10,000/s, `DescribeSecret` 40,000/s, `ListSecretVersionIds` 50/s (same as the
    /// other control calls), `PutSecretValue` and `UpdateSecret` 50/s. Other operations are not limited.
    pub fn aws(factor: f64) -> Quotas {
        let rates = [
            ("BatchGetSecretValue", 100.0),
            ("GetSecretValue", 10_000.0),
            ("DescribeSecret", 40_000.0),
            ("ListSecretVersionIds", 50.0),
            ("PutSecretValue", 50.0),
            ("UpdateSecret", 50.0),
        ];
        Quotas {
            provider: Provider::Aws,
            rates: rates
                .into_iter()
                .map(|(op, rate)| (op.to_string(), Rate::per_second(rate).scaled(factor)))
                .collect(),
        }
    }

    /// Google Cloud Secret Manager's per-project rates times `factor`: access 90,000/min, other reads
    /// 600/min, writes 600/min (operations `gcp.access`, `gcp.read`, `gcp.write`, see [`quota_operation`]).
    pub fn gcp(factor: f64) -> Quotas {
        let rates = [("gcp.access", 90_000.0), ("gcp.read", 600.0), ("gcp.write", 600.0)];
        Quotas {
            provider: Provider::Gcp,
            rates: rates
                .into_iter()
                .map(|(op, rate)| (op.to_string(), Rate::per_minute(rate).scaled(factor)))
                .collect(),
        }
    }

    /// No limits yet, answered in `provider`'s wording.
    pub fn none(provider: Provider) -> Quotas {
        Quotas {
            provider,
            rates: BTreeMap::new(),
        }
    }

    /// Sets (or replaces) the rate of `operation` (as [`quota_operation`] names it).
    pub fn with(mut self, operation: &str, rate: Rate) -> Quotas {
        self.rates.insert(operation.to_string(), rate);
        self
    }

    /// The rate of `operation`, if it is limited.
    pub fn rate(&self, operation: &str) -> Option<Rate> {
        self.rates.get(operation).copied()
    }

    /// Whose wording over-quota answers use.
    pub fn provider(&self) -> Provider {
        self.provider
    }
}

/// The buckets and counters the proxy keeps (behind its lock).
pub(crate) struct QuotaState {
    quotas: Quotas,
    buckets: BTreeMap<String, Bucket>,
    counts: BTreeMap<String, OperationCount>,
}

impl QuotaState {
    pub(crate) fn new(quotas: Quotas) -> QuotaState {
        let buckets = quotas
            .rates
            .iter()
            .map(|(op, rate)| (op.clone(), Bucket::new(*rate)))
            .collect();
        QuotaState {
            quotas,
            buckets,
            counts: BTreeMap::new(),
        }
    }

    /// Counts `request`, takes a token, and returns the over-quota answer when none is left.
    pub(crate) fn admit(&mut self, request: &RecordedRequest) -> Option<Action> {
        let operation = quota_operation(request)?;
        let count = self.counts.entry(operation.clone()).or_default();
        count.total += 1;
        let bucket = self.buckets.get_mut(&operation)?;
        if bucket.take() {
            return None;
        }
        count.throttled += 1;
        Some(over_quota(self.quotas.provider, &operation))
    }

    pub(crate) fn counts(&self) -> BTreeMap<String, OperationCount> {
        self.counts.clone()
    }

    /// Forgets the counts and fills every bucket.
    pub(crate) fn reset(&mut self) {
        *self = QuotaState::new(self.quotas.clone());
    }
}

/// The answer a provider gives to a request over its quota.
pub fn over_quota(provider: Provider, operation: &str) -> Action {
    match provider {
        Provider::Aws => Action::aws_error(400, "ThrottlingException", "Rate exceeded"),
        Provider::Gcp => {
            let metric = match operation {
                "gcp.access" => "Access requests",
                "gcp.write" => "Write requests",
                _ => "Read requests",
            };
            let body = json!({
                "error": {
                    "code": 429,
                    "message": format!(
                        "Quota exceeded for quota metric '{metric}' and limit '{metric} per minute per project' \
                         of service 'secretmanager.googleapis.com' for consumer 'project_number:0'."
                    ),
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "RATE_LIMIT_EXCEEDED",
                        "domain": "googleapis.com",
                        "metadata": { "service": "secretmanager.googleapis.com", "quota_metric": metric }
                    }]
                }
            });
            Action::Respond {
                status: 429,
                headers: vec![("content-type".into(), "application/json; charset=UTF-8".into())],
                body: Bytes::from(body.to_string()),
            }
        }
    }
}

/// How long a burst of `requests` at once takes to drain through `rate` (for sizing benchmarks).
pub fn drain_time(rate: Rate, requests: usize) -> Duration {
    let over = (requests as f64 - rate.burst).max(0.0);
    Duration::from_secs_f64(over / rate.per_second.max(f64::MIN_POSITIVE))
}
