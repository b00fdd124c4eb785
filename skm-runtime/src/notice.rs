//! What a user gets without asking (a fallback to a lower layer, a backend signal this build ignores) is
//! said where they will see it: as a `tracing` event when the program installed a subscriber, else as one
//! line on stderr. Most programs on day one have no subscriber, and a silent fallback to a stale `.env`
//! value is worse than a noisy one.
//!
//! Nothing here ever holds a value: callers pass names, paths and reasons only.

/// Whether the program installed a `tracing` subscriber (for this thread or globally).
pub(crate) fn has_subscriber() -> bool {
    tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
}

/// Says `message` as a warning: `emit` sends the `tracing` event (with its structured fields) when a
/// subscriber is installed; otherwise one `skm: warning: ...` line goes to stderr.
pub(crate) fn warn(message: &str, emit: impl FnOnce()) {
    if has_subscriber() {
        emit();
    } else {
        eprintln!("skm: warning: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The smallest subscriber: counts events.
    struct Counting(Arc<AtomicUsize>);

    impl tracing::Subscriber for Counting {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn the_event_goes_to_a_subscriber_and_stderr_only_without_one() {
        assert!(!has_subscriber());
        let mut emitted = false;
        warn("no subscriber: this line goes to stderr", || emitted = true);
        assert!(!emitted);
        // A NoSubscriber installed on purpose is still none: nothing would show the event.
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::new(), || assert!(!has_subscriber()));

        let events = Arc::new(AtomicUsize::new(0));
        tracing::subscriber::with_default(Counting(events.clone()), || {
            assert!(has_subscriber());
            warn(
                "to the subscriber",
                || tracing::warn!(target: "skm", "to the subscriber"),
            );
        });
        assert_eq!(events.load(Ordering::SeqCst), 1);
    }
}
