//! Empty: this crate holds the integration tests of the `skm` facade (`skm-secrets`), in `tests/`.
//!
//! The library only exists so that trybuild (the `ui` test) depends on this crate with the features it was
//! built with, which turn the facade's features on for the compile-fail cases.
