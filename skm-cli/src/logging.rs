//! The tool's log output: `RUST_LOG` on stderr, with the targets that log request bodies capped.
//!
//! At TRACE, the AWS SDK's `aws_smithy_*` crates (and the HTTP stacks under them) log whole request and
//! response bodies: a `put`, `rotate` or `migrate` would print the value it writes. Whatever `RUST_LOG` asks
//! for, those targets stay at DEBUG or below.

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};

/// Targets whose TRACE output holds request or response bodies.
const BODY_LOGGERS: [&str; 6] = ["aws_smithy", "aws_sdk", "aws_config", "hyper", "reqwest", "h2"];

/// The most a body logger may log.
const CAP: LevelFilter = LevelFilter::DEBUG;

/// The filter for `rust_log` (the value of `RUST_LOG`; WARN when unset or unreadable), with every body
/// logger capped at [`CAP`].
pub(crate) fn filter(rust_log: Option<&str>) -> Targets {
    let asked = rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| Targets::from_str(s).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    let capped = |target: &str| BODY_LOGGERS.iter().any(|b| target.starts_with(b));
    let mut out = Targets::new();
    if let Some(level) = asked.default_level() {
        out = out.with_default(level);
    }
    for (target, level) in asked.iter() {
        out = out.with_target(target, if capped(target) { level.min(CAP) } else { level });
    }
    // A directive for a shorter target (`aws=trace`, or the default) would reach the body loggers: cap each
    // at what it would otherwise get, never above CAP. More specific directives win in `Targets`.
    for b in BODY_LOGGERS {
        if asked.iter().any(|(t, _)| t == b) {
            continue;
        }
        let level = [
            LevelFilter::TRACE,
            LevelFilter::DEBUG,
            LevelFilter::INFO,
            LevelFilter::WARN,
            LevelFilter::ERROR,
        ]
        .into_iter()
        .find(|l| l.into_level().is_some_and(|lvl| asked.would_enable(b, &lvl)))
        .unwrap_or(LevelFilter::OFF);
        out = out.with_target(b, level.min(CAP));
    }
    out
}

/// Installs the tool's subscriber on stderr, unless the process already has one (an application that
/// embeds the commands and set up its own logging keeps it).
pub(crate) fn init() {
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_filter(filter),
    );
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn body_loggers_never_reach_trace() {
        for rust_log in [
            "trace",
            "aws_smithy_runtime=trace",
            "aws=trace,warn",
            "hyper=trace",
            "aws_smithy_runtime::client::http=trace,reqwest=trace",
        ] {
            let f = filter(Some(rust_log));
            for target in [
                "aws_smithy_runtime::client::http",
                "aws_smithy_http_client",
                "aws_sdk_secretsmanager::operation",
                "hyper::proto::h1",
                "reqwest::connect",
            ] {
                assert!(!f.would_enable(target, &Level::TRACE), "{rust_log}: {target} at TRACE");
            }
        }
        let f = filter(Some("trace"));
        assert!(f.would_enable("aws_smithy_runtime", &Level::DEBUG));
        assert!(
            f.would_enable("skm::audit", &Level::TRACE),
            "other targets keep what RUST_LOG asks"
        );
        let f = filter(None);
        assert!(f.would_enable("skm", &Level::WARN) && !f.would_enable("skm", &Level::INFO));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
    }
}
