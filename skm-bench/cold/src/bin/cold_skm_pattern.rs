//! Cold start, skm, with one `pattern` validator: `cold_skm` with `pattern = "^cold-"` on its first field,
//! which makes the program link the regex engine (a program without a pattern does not).

#[macro_use]
#[path = "../cold_binary.rs"]
mod cold_binary;

cold_binary!(#[secret(path = "cold/s00", key = "value", env = "COLD_SECRET_00", pattern = "^cold-")]);
