//! Benchmark 3, read path: what a field read costs after `load()` and through a [`Watch`] handle.
//!
//! The same fixture and operations back `cargo bench -p skm-bench --bench read` (criterion) and the
//! tight-loop timing of the `skm-bench` binary, so that `BENCHMARKS.md` has figures from the one command.

use std::hint::black_box;
use std::time::{Duration, Instant};

use skm::backend::{MemoryBackend, SecretValue};
use skm::{ExposeSecret, Loader, SecretBox, SecretString, Secrets, Watch, WatchOptions};

use crate::report::{Section, Table, Target};
use crate::stats::{fmt_secs, Samples};

/// The struct read in the read-path benchmark.
#[derive(Secrets)]
pub struct ReadSecrets {
    /// A key of a JSON secret.
    #[secret(path = "app/db", key = "password", env = "DB_PASSWORD")]
    pub db_password: SecretString,
    /// A typed value.
    #[secret(path = "app/db", key = "port", env = "DB_PORT")]
    pub db_port: SecretBox<u16>,
    /// Another secret.
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET")]
    pub jwt_secret: SecretString,
}

/// A loaded [`ReadSecrets`] and a [`Watch`] on the same values, with the runtime the watch's refresh task
/// belongs to (it sleeps for its 5-minute TTL during the benchmark).
pub struct ReadFixture {
    /// The struct as `load()` returns it.
    pub cfg: ReadSecrets,
    /// A hot-reloading handle on the same struct.
    pub watch: Watch<ReadSecrets>,
    // Dropped last: the watch's task lives on it.
    _runtime: tokio::runtime::Runtime,
}

impl ReadFixture {
    /// Loads the struct from an in-memory backend, plainly and as a watch.
    ///
    /// # Panics
    /// When loading fails (it cannot, with the values inserted here), or when called inside a Tokio runtime.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let backend = MemoryBackend::new();
        backend.insert(
            "app/db",
            SecretValue::map([("password", "read-bench-password"), ("port", "5432")]),
        );
        backend.insert("auth/jwt", SecretValue::map([("secret", "read-bench-jwt")]));
        let loader = Loader::new()
            .backend(backend)
            .no_dotenv()
            .env_vars(Vec::<(String, String)>::new());
        let (cfg, watch) = runtime.block_on(async {
            let cfg = loader.load::<ReadSecrets>().await.expect("load the read fixture");
            let watch = loader
                .watch::<ReadSecrets>(WatchOptions::default())
                .await
                .expect("watch the read fixture");
            (cfg, watch)
        });
        assert_eq!(cfg.db_password.expose_secret(), "read-bench-password");
        assert_eq!(*cfg.db_port.expose_secret(), 5432);
        ReadFixture {
            cfg,
            watch,
            _runtime: runtime,
        }
    }

    /// `&cfg.db_password` then `expose_secret()`: a field read after `load()`.
    #[inline]
    pub fn read_field(&self) {
        // black_box on the struct stops the compiler from hoisting the read out of a loop.
        let cfg = black_box(&self.cfg);
        black_box(cfg.db_password.expose_secret());
    }

    /// `watch.with(|s| s.db_password.expose_secret())`: the cheapest read through the handle.
    #[inline]
    pub fn read_with(&self) {
        black_box(&self.watch).with(|s| {
            black_box(s.db_password.expose_secret());
        });
    }

    /// `watch.get()?.db_password.expose_secret()`: a read through the handle that keeps an `Arc`.
    #[inline]
    pub fn read_get(&self) {
        let current = black_box(&self.watch).get().expect("not stale: no max staleness set");
        black_box(current.db_password.expose_secret());
    }
}

impl Default for ReadFixture {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds per call of `f`: runs batches of `iters` calls, `samples` times, after calibrating `iters` so that
/// one batch takes about `batch`.
pub fn time_per_call(samples: usize, batch: Duration, mut f: impl FnMut()) -> Samples {
    let mut iters: u64 = 1_000;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() >= batch / 2 || iters >= 1 << 34 {
            break;
        }
        iters *= 2;
    }
    let mut out = Samples::new();
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        out.push(t.elapsed().as_secs_f64() / iters as f64);
    }
    out
}

/// Runs the read-path benchmark.
pub fn run(quick: bool) -> Section {
    let fixture = ReadFixture::new();
    let (samples, batch) = if quick {
        (7, Duration::from_millis(20))
    } else {
        (21, Duration::from_millis(50))
    };
    let cases: [(&str, Samples); 4] = [
        (
            "empty loop (`black_box(())`): the loop's own cost",
            time_per_call(samples, batch, || black_box(())),
        ),
        (
            "`&cfg.field` + `expose_secret()` after `load()`",
            time_per_call(samples, batch, || fixture.read_field()),
        ),
        (
            "`watch.with(|s| s.field.expose_secret())`",
            time_per_call(samples, batch, || fixture.read_with()),
        ),
        (
            "`watch.get()?.field.expose_secret()` (an `Arc` clone)",
            time_per_call(samples, batch, || fixture.read_get()),
        ),
    ];

    let mut table = Table::new(&["read", "median", "min–max"]);
    for (name, s) in &cases {
        table.row(vec![name.to_string(), fmt_secs(s.median()), s.range_time()]);
    }
    let mut section = Section::new("3. Read path", table);
    section.intro.push(format!(
        "A struct of 3 fields loaded from the in-memory backend, then read in a tight loop with `black_box` \
         ({samples} batches of calibrated size, about {} ms each; per-read time of each batch). \
         `cargo bench -p skm-bench --bench read` measures the same operations with criterion.",
        batch.as_millis()
    ));
    for (what, s) in &cases[1..] {
        let ns = s.median() * 1e9;
        section.targets.push(Target::new(
            format!("read: {what}"),
            "≤ 100 ns",
            fmt_secs(s.median()),
            ns <= 100.0,
        ));
    }
    section.notes.push(
        "A plain field read is a pointer offset; `with` is one atomic load of the `ArcSwap` (plus its debt \
         slot); `get` also increments and decrements the `Arc`'s reference count."
            .into(),
    );
    section
}
