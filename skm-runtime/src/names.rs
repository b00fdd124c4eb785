//! The backends' names and aliases: the one table lives in the `skm-names` crate, which the derive reads too
//! (it checks `#[secret(backend = "...")]` at compile time), so the two cannot disagree. The
//! [registry](crate::backend::registry)'s descriptors take their names from here, and the plan maps a declared
//! `#[secret(backend = "...")]` to its canonical name here, without importing the backends. A leaf: it imports
//! nothing of this crate.

pub(crate) use skm_names::*;
