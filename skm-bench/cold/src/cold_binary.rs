//! The program both `cold_skm` binaries run: the quickstart's shape (`#[tokio::main]`, `AppSecrets::load()` on
//! the embedded default) loading 20 secrets, half from the local store in `./.skm` and half from `./.env`.
//! The binaries differ only in the attribute of the first field, which `cold_binary!` takes.
//!
//! skm-bench spawns each in a prepared directory and times the whole process. It prints how many secrets it
//! loaded and their total length (never a value), which skm-bench checks, and on stderr how long `load()`
//! itself took, so that the report can tell the load from the process's start.

/// The struct and `main`, with `$s00` as the first field's attributes.
macro_rules! cold_binary {
    ($($s00:tt)*) => {
        use skm::{ExposeSecret, SecretString, Secrets};

        #[derive(Secrets)]
        struct ColdSecrets {
            $($s00)*
            s00: SecretString,
            #[secret(path = "cold/s01", key = "value", env = "COLD_SECRET_01")]
            s01: SecretString,
            #[secret(path = "cold/s02", key = "value", env = "COLD_SECRET_02")]
            s02: SecretString,
            #[secret(path = "cold/s03", key = "value", env = "COLD_SECRET_03")]
            s03: SecretString,
            #[secret(path = "cold/s04", key = "value", env = "COLD_SECRET_04")]
            s04: SecretString,
            #[secret(path = "cold/s05", key = "value", env = "COLD_SECRET_05")]
            s05: SecretString,
            #[secret(path = "cold/s06", key = "value", env = "COLD_SECRET_06")]
            s06: SecretString,
            #[secret(path = "cold/s07", key = "value", env = "COLD_SECRET_07")]
            s07: SecretString,
            #[secret(path = "cold/s08", key = "value", env = "COLD_SECRET_08")]
            s08: SecretString,
            #[secret(path = "cold/s09", key = "value", env = "COLD_SECRET_09")]
            s09: SecretString,
            #[secret(path = "cold/s10", key = "value", env = "COLD_SECRET_10")]
            s10: SecretString,
            #[secret(path = "cold/s11", key = "value", env = "COLD_SECRET_11")]
            s11: SecretString,
            #[secret(path = "cold/s12", key = "value", env = "COLD_SECRET_12")]
            s12: SecretString,
            #[secret(path = "cold/s13", key = "value", env = "COLD_SECRET_13")]
            s13: SecretString,
            #[secret(path = "cold/s14", key = "value", env = "COLD_SECRET_14")]
            s14: SecretString,
            #[secret(path = "cold/s15", key = "value", env = "COLD_SECRET_15")]
            s15: SecretString,
            #[secret(path = "cold/s16", key = "value", env = "COLD_SECRET_16")]
            s16: SecretString,
            #[secret(path = "cold/s17", key = "value", env = "COLD_SECRET_17")]
            s17: SecretString,
            #[secret(path = "cold/s18", key = "value", env = "COLD_SECRET_18")]
            s18: SecretString,
            #[secret(path = "cold/s19", key = "value", env = "COLD_SECRET_19")]
            s19: SecretString,
        }

        #[tokio::main]
        async fn main() -> Result<(), skm::Error> {
            let start = std::time::Instant::now();
            let s = ColdSecrets::load().await?;
            let load_ns = start.elapsed().as_nanos();
            let all = [
                &s.s00, &s.s01, &s.s02, &s.s03, &s.s04, &s.s05, &s.s06, &s.s07, &s.s08, &s.s09, &s.s10, &s.s11, &s.s12, &s.s13,
                &s.s14, &s.s15, &s.s16, &s.s17, &s.s18, &s.s19,
            ];
            let bytes: usize = all.iter().map(|v| v.expose_secret().len()).sum();
            println!("{} secrets, {bytes} bytes", all.len());
            eprintln!("load_ns={load_ns}");
            Ok(())
        }
    };
}
