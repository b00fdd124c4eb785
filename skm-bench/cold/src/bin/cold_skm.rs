//! Cold start, skm: the quickstart's shape (`#[tokio::main]`, `AppSecrets::load()` on the embedded default)
//! loading 20 secrets, half from the local store in `./.skm` and half from `./.env` (see `cold_binary.rs`).

#[macro_use]
#[path = "../cold_binary.rs"]
mod cold_binary;

cold_binary!(#[secret(path = "cold/s00", key = "value", env = "COLD_SECRET_00")]);
