//! The reliability suite: what skm must never do under faults, crashes, tampering and hostile transports.
//!
//! - [`local_scale`]: 1000 SIGKILLs during local store writes (0 corrupt stores), and every single-byte
//!   change of a store file detected.
//! - [`faults`] (features `aws` / `vault`): a fault-injecting proxy in front of moto and OpenBao; at 30 %
//!   faults, 200 loads, at least 99 % succeed; at 100 %, the load fails within its deadline naming the backend
//!   and the reason; never a partially filled struct.
//! - [`transport`] (feature `vault`): a Vault token never goes over plain http to a non-loopback host without
//!   opt-in (a listener on this machine's non-loopback address receives zero bytes), nor to one through a
//!   redirect; TLS with a custom CA (`VAULT_CACERT`) works against OpenBao serving TLS, and the token never
//!   crosses the wire in clear text.
//!
//! - [`outage_cache`] (features `aws`, `local`): with moto stopped, 200 loads start from the offline cache with
//!   the right values and a warning; strict mode never uses it; no plaintext in the store directory.
//!
//! The leak sweep is its own binary (`tests/leak_sweep.rs`). Each test prints its figures; `RELIABILITY.md`
//! records them. Crash test children re-run this binary: see [`local_scale::child_process`].

// Shared with the leak sweep, which uses more of it.
#[allow(dead_code)]
mod needles;

#[cfg(any(feature = "aws", feature = "vault"))]
mod faults;
#[cfg(feature = "local")]
mod local_scale;
#[cfg(all(feature = "aws", feature = "local"))]
mod outage_cache;
#[cfg(feature = "vault")]
mod transport;
