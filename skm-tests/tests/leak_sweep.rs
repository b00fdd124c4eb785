//! The leak sweep: one sentinel value planted in every source skm reads (env, `.env`, memory, the local
//! store, and with their features moto and OpenBao), then every failure the library can produce driven on
//! it: missing, access denied, unavailable, throttled, wrong type, validator failures, malformed JSON,
//! malformed `.env`, corrupt store, a previous version that does not convert. For each path the test
//! captures the `Display` and `Debug` (plain and `{:#?}`) of errors, loaded structs, provenance, loaders and
//! backends, the messages of panics from `unwrap()`/`unwrap_err()`, every `tracing` event at TRACE level from
//! every crate (and `log` records through `tracing-log`), and, with the `cli` feature, the stdout and stderr
//! of every `skm` command run without `--reveal`. The sentinel must appear nowhere: not as is, nor in
//! base64 or hex. The test prints how many paths and texts it checked.
//!
//! This is its own test binary because it installs a global `tracing` subscriber and panic hook: events of
//! every thread (blocking pools, SDK tasks) are captured, which a thread-local subscriber would miss.

// The structs' fields are only ever read through `Debug`, which the dead-code lint does not count.
#![allow(dead_code)]

#[path = "reliability/needles.rs"]
mod needles;

use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use needles::{Leaks, SENTINEL};
use skm::backend::local::{LocalKey, LocalStore};
use skm::backend::{
    AdminBackend, Backend, FailureKind, FetchError, FetchRequest, MemoryBackend, PutRequest, SecretValue,
};
use skm::{Loader, Rotating, SecretBox, SecretString, Secrets};

// ---------------------------------------------------------------------------------------------------------
// What every source holds. Paths and env names are the same for every source, so that every struct below
// can be loaded from each of them.

/// `leak/app`: a JSON object whose key `secret` is the sentinel.
fn app_json() -> String {
    format!(r#"{{"secret":"{SENTINEL}","other":"x"}}"#)
}
/// `leak/json`: a JSON object for a struct field, whose `port` is the sentinel (a wrong type).
fn struct_json() -> String {
    format!(r#"{{"user":"{SENTINEL}","port":"{SENTINEL}"}}"#)
}
/// `leak/bad`: malformed JSON holding the sentinel.
fn malformed_json() -> String {
    format!(r#"{{"secret":"{SENTINEL}", "port": 54"#)
}

/// Environment variables holding the sentinel (also written to the `.env` file).
fn env_pairs() -> Vec<(&'static str, String)> {
    vec![
        ("LEAK_SECRET", SENTINEL.to_string()),
        ("LEAK_JSON", struct_json()),
        ("LEAK_BAD", malformed_json()),
        ("LEAK_PLAIN", SENTINEL.to_string()),
        ("LEAK_ROT", SENTINEL.to_string()),
    ]
}

/// Puts the sentinel everywhere in a backend that can be written.
async fn plant<B: AdminBackend + ?Sized>(backend: &B) {
    let put = |path: &str, value: SecretValue| PutRequest::new(path, value);
    for request in [
        put("leak/app", SecretValue::text(app_json())),
        put("leak/json", SecretValue::text(struct_json())),
        put("leak/bad", SecretValue::text(malformed_json())),
        put("leak/plain", SecretValue::text(SENTINEL)),
        put("leak/bin", SecretValue::binary(format!("bin:{SENTINEL}").into_bytes())),
        // Two versions: the previous one (the sentinel) does not convert to the field's type.
        put("leak/rot", SecretValue::text(format!(r#"{{"secret":"{SENTINEL}"}}"#))),
        put("leak/rot", SecretValue::text(r#"{"secret":"5432"}"#)),
    ] {
        let path = request.path.clone();
        backend
            .put(request)
            .await
            .unwrap_or_else(|e| panic!("planting {path}: {e}"));
    }
}

fn plant_memory() -> MemoryBackend {
    let m = MemoryBackend::new();
    m.insert("leak/app", SecretValue::text(app_json()));
    m.insert("leak/json", SecretValue::text(struct_json()));
    m.insert("leak/bad", SecretValue::text(malformed_json()));
    m.insert("leak/plain", SecretValue::text(SENTINEL));
    m.insert("leak/bin", SecretValue::binary(format!("bin:{SENTINEL}").into_bytes()));
    m.insert("leak/rot", SecretValue::text(format!(r#"{{"secret":"{SENTINEL}"}}"#)));
    m.insert("leak/rot", SecretValue::text(r#"{"secret":"5432"}"#));
    m
}

// ---------------------------------------------------------------------------------------------------------
// The declarations: one per kind of failure (or success) a load can have.

#[derive(Secrets, Debug)]
struct Found {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET")]
    secret: SecretString,
}

#[derive(Secrets, Debug)]
struct WrongTypeSecret {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET")]
    port: SecretBox<u16>,
}

#[derive(Secrets, Debug)]
struct WrongTypePlain {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET", plain)]
    port: u16,
}

#[derive(Secrets, Debug)]
struct WrongTypeBool {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET")]
    flag: SecretBox<bool>,
}

#[derive(serde::Deserialize, Debug, Clone, PartialEq, Eq)]
enum Level {
    Debug,
    Info,
}

#[derive(Secrets, Debug)]
struct WrongTypeEnum {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET", plain)]
    level: Level,
}

#[derive(Secrets, Debug)]
struct TooShort {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET", min_len = 500)]
    secret: SecretString,
}

#[derive(Secrets, Debug)]
struct NoMatch {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET", pattern = "^sk-[0-9a-f]{8}$")]
    secret: SecretString,
}

#[derive(Secrets, Debug)]
struct Placeholder {
    #[secret(
        path = "leak/app",
        key = "secret",
        env = "LEAK_SECRET",
        not = ["changeme", "SENTINEL-rel-8d41c7e2-do-not-leak"]
    )]
    secret: SecretString,
}

#[derive(serde::Deserialize, Clone, zeroize::Zeroize, Debug)]
#[allow(dead_code)] // Only ever fails to load.
struct Db {
    user: String,
    port: u16,
}

#[derive(Secrets, Debug)]
struct StructWrongField {
    #[secret(path = "leak/json", env = "LEAK_JSON")]
    db: SecretBox<Db>,
}

#[derive(Secrets, Debug)]
struct StructMalformed {
    #[secret(path = "leak/bad", env = "LEAK_BAD")]
    db: SecretBox<Db>,
}

#[derive(Secrets, Debug)]
struct KeyInMalformed {
    #[secret(path = "leak/bad", key = "secret", env = "LEAK_BAD")]
    secret: SecretString,
}

#[derive(Secrets, Debug)]
struct KeyInPlainText {
    #[secret(path = "leak/plain", key = "secret", env = "LEAK_PLAIN")]
    secret: SecretString,
}

#[derive(Secrets, Debug)]
struct KeyInBinary {
    #[secret(path = "leak/bin", key = "secret")]
    secret: SecretString,
}

#[derive(Secrets, Debug)]
struct Binary {
    #[secret(path = "leak/bin")]
    bytes: SecretBox<Vec<u8>>,
}

#[derive(Secrets, Debug)]
struct BinaryWrongType {
    #[secret(path = "leak/bin", plain)]
    wrong: u16,
}

#[derive(Secrets, Debug)]
struct OneMissing {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET")]
    found: SecretString,
    #[secret(path = "leak/nope", key = "x", env = "LEAK_NOPE")]
    missing: SecretString,
    #[secret(path = "leak/app", key = "other", env = "LEAK_NOPE2", plain)]
    other_plain: u16,
}

#[derive(Secrets, Debug)]
struct Nested {
    #[secret(flatten)]
    inner: Found,
    #[secret(path = "leak/json", key = "port", env = "LEAK_PORT")]
    port: SecretBox<u16>,
}

#[derive(Secrets, Debug)]
struct RotatingPrevious {
    #[secret(path = "leak/rot", key = "secret", env = "LEAK_ROT")]
    port: Rotating<SecretBox<u16>>,
}

#[derive(Secrets, Debug)]
struct RotatingFound {
    #[secret(path = "leak/app", key = "secret")]
    keys: Rotating<SecretString>,
}

#[derive(Secrets, Debug)]
struct Optional {
    #[secret(path = "leak/app", key = "secret", env = "LEAK_SECRET")]
    present: Option<SecretString>,
    #[secret(path = "leak/json", key = "port", env = "LEAK_PORT")]
    wrong: Option<SecretBox<u16>>,
}

// ---------------------------------------------------------------------------------------------------------
// Capture: a global subscriber at TRACE and a panic hook, both writing into buffers checked at the end.

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

struct Capture {
    logs: Buffer,
    panics: Arc<Mutex<Vec<String>>>,
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let logs = Buffer::default();
        let writer = logs.clone();
        // `try_init` also routes `log` records (rustls, reqwest...) into tracing.
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .expect("the leak sweep installs the only global subscriber of its binary");
        let panics = Arc::new(Mutex::new(Vec::new()));
        let sink = panics.clone();
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = format!("{info}");
            // The sweep's own deliberate panics are only recorded; any other is shown as usual.
            let deliberate = text.contains("loading secrets") || text.contains("unwrap_err()");
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(text);
            if !deliberate {
                default(info);
            }
        }));
        Capture { logs, panics }
    })
}

/// Checks the logs and panic messages captured since the last call.
fn check_captured(leaks: &mut Leaks, path: &str) -> (usize, usize) {
    let c = capture();
    let logs = c.logs.take();
    let events = logs.lines().count();
    leaks.check(path, "tracing output at TRACE", &logs);
    let panics: Vec<String> = std::mem::take(&mut *c.panics.lock().unwrap_or_else(|e| e.into_inner()));
    for p in &panics {
        leaks.check(path, "panic message (hook)", p);
    }
    (events, logs.len())
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&'static str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// One path: load a struct with a loader and check everything it produced.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Err,
    /// Depends on how the source stores the value (e.g. Vault wraps non-JSON text in a map).
    Either,
}

struct Sweep {
    leaks: Leaks,
    paths: Vec<String>,
    oks: usize,
    errs: usize,
    events: usize,
    log_bytes: usize,
}

impl Sweep {
    async fn load<T: Secrets + Debug>(&mut self, source: &str, case: &str, loader: &Loader, expect: Expect) {
        let path = format!("{source} / {case}");
        let leaks = &mut self.leaks;
        leaks.check(&path, "Debug of the loader", &format!("{loader:?} {loader:#?}"));
        if let Some(b) = loader.backend_ref() {
            leaks.check(&path, "Debug of the backend", &format!("{b:?} {b:#?} {}", b.name()));
        }
        let result = loader.load_report::<T>().await;
        match (&result, expect) {
            (Ok(_), Expect::Err) => panic!("{path}: expected a failure, the load succeeded"),
            (Err(e), Expect::Ok) => panic!("{path}: expected a value, got {e}"),
            _ => {}
        }
        match &result {
            Ok(loaded) => {
                self.oks += 1;
                leaks.check(&path, "Debug of a loaded struct", &format!("{:?}", loaded.value));
                leaks.check(&path, "Debug of a loaded struct", &format!("{:#?}", loaded.value));
                leaks.check(&path, "Display of provenance", &loaded.provenance.to_string());
                leaks.check(&path, "Debug of provenance", &format!("{:#?}", loaded.provenance));
                for w in &loaded.provenance.warnings {
                    leaks.check(&path, "a load warning", w);
                }
            }
            Err(e) => {
                self.errs += 1;
                leaks.check(&path, "Display of an error", &e.to_string());
                leaks.check(&path, "Display of an error", &format!("{e:#}"));
                leaks.check(&path, "Debug of an error", &format!("{e:?}"));
                leaks.check(&path, "Debug of an error", &format!("{e:#?}"));
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    leaks.check(&path, "an error's source chain", &format!("{s} {s:?}"));
                    source = s.source();
                }
                if let Some(load) = e.as_load() {
                    for f in &load.fields {
                        leaks.check(&path, "Display of a field error", &f.to_string());
                        for a in &f.attempts {
                            leaks.check(&path, "Display of an attempt", &format!("{a} {a:?}"));
                        }
                    }
                }
            }
        }
        // What a careless caller sees: the panic of an `unwrap()` on a failed load, or of an `unwrap_err()`
        // (which prints the struct) on a successful one.
        // The careless calls are the point here.
        #[allow(clippy::unnecessary_literal_unwrap)]
        let message = match result {
            Ok(loaded) => {
                let r: Result<_, skm::Error> = Ok(loaded.value);
                std::panic::catch_unwind(AssertUnwindSafe(move || r.unwrap_err())).map(|_| ())
            }
            Err(e) => {
                let r: Result<T, skm::Error> = Err(e);
                std::panic::catch_unwind(AssertUnwindSafe(move || {
                    let _ = r.expect("loading secrets");
                }))
            }
        };
        let message = panic_text(message.expect_err("the unwrap panics"));
        assert!(
            message.contains("loading secrets") || message.contains("unwrap_err"),
            "{message}"
        );
        leaks.check(&path, "panic message (payload)", &message);

        // Tools resolve without building a struct.
        if let Ok(fields) = T::spec().resolve(None) {
            match loader.check_fields(&fields).await {
                Ok(check) => leaks.check(&path, "Debug of check_fields", &format!("{check:#?}")),
                Err(e) => leaks.check(&path, "Display of a check_fields error", &format!("{e} {e:?}")),
            }
        }
        let (events, bytes) = check_captured(&mut self.leaks, &path);
        self.events += events;
        self.log_bytes += bytes;
        self.paths.push(path);
    }

    /// Every declaration against one loader whose sources hold the sentinel.
    async fn all_cases(&mut self, source: &str, loader: &Loader, backend: bool) {
        use Expect::*;
        let either_for_backend = if backend { Either } else { Ok };
        self.load::<Found>(source, "found", loader, Ok).await;
        self.load::<WrongTypeSecret>(source, "wrong type SecretBox<u16>", loader, Err)
            .await;
        self.load::<WrongTypePlain>(source, "wrong type plain u16", loader, Err)
            .await;
        self.load::<WrongTypeBool>(source, "wrong type SecretBox<bool>", loader, Err)
            .await;
        self.load::<WrongTypeEnum>(source, "wrong type plain enum", loader, Err)
            .await;
        self.load::<TooShort>(source, "validator min_len", loader, Err).await;
        self.load::<NoMatch>(source, "validator pattern", loader, Err).await;
        self.load::<Placeholder>(source, "validator not", loader, Err).await;
        self.load::<StructWrongField>(source, "JSON struct with a wrong field type", loader, Err)
            .await;
        self.load::<StructMalformed>(source, "malformed JSON for a struct", loader, Err)
            .await;
        self.load::<KeyInMalformed>(source, "key in malformed JSON", loader, either_for_backend)
            .await;
        self.load::<KeyInPlainText>(source, "key in plain text", loader, either_for_backend)
            .await;
        self.load::<OneMissing>(source, "missing fields next to a found one", loader, Err)
            .await;
        self.load::<Nested>(source, "flattened struct, one field wrong", loader, Err)
            .await;
        self.load::<Optional>(source, "optional fields", loader, Either).await;
        if backend {
            self.load::<KeyInBinary>(source, "key in a binary secret", loader, Either)
                .await;
            self.load::<Binary>(source, "binary secret", loader, Ok).await;
            self.load::<BinaryWrongType>(source, "binary secret as a wrong type", loader, Err)
                .await;
            self.load::<RotatingFound>(source, "rotating, found", loader, Ok).await;
            self.load::<RotatingPrevious>(source, "rotating, previous version of a wrong type", loader, Either)
                .await;
            let strict = loader.clone().strict(true);
            self.load::<RotatingPrevious>(
                source,
                "rotating, previous version of a wrong type, strict",
                &strict,
                Either,
            )
            .await;
        }
    }

    /// A backend that fails, with the sentinel in env as the fallback: a warning when lenient, an error
    /// when strict.
    async fn outage(&mut self, source: &str, loader: Loader) {
        let loader = loader.env_vars(env_pairs());
        // Denied access and failed decryption fail the load unless fallback is allowed (issue 17 #7): sweep
        // that error, then allow the fallback so that the cases below sweep the lenient path for every kind.
        self.load::<Found>(source, "backend failure, no fallback allowed", &loader, Expect::Either)
            .await;
        let loader = loader
            .allow_fallback_on(FailureKind::Forbidden)
            .allow_fallback_on(FailureKind::Decryption);
        self.load::<Found>(source, "outage, falls back to env", &loader, Expect::Ok)
            .await;
        self.load::<Found>(source, "outage, strict", &loader.clone().strict(true), Expect::Err)
            .await;
        self.load::<OneMissing>(source, "outage, missing fields", &loader, Expect::Err)
            .await;
        self.load::<TooShort>(source, "outage, env value fails validation", &loader, Expect::Err)
            .await;
    }

    /// Admin operations and their errors.
    async fn admin<B: AdminBackend + ?Sized>(&mut self, source: &str, backend: &B) {
        let path = format!("{source} / admin operations");
        let mut texts = Vec::new();
        texts.push(format!("{:?}", backend.list("leak/").await));
        texts.push(format!("{:?}", backend.versions("leak/app").await));
        texts.push(format!("{:?}", backend.versions("leak/nope").await));
        let mut create = PutRequest::new("leak/app", SecretValue::text(SENTINEL));
        create.create_only = true;
        texts.push(format!("{:?}", create));
        texts.push(format!("{:?}", backend.put(create).await));
        let fetched = backend
            .fetch(&[
                FetchRequest::current("leak/app"),
                FetchRequest::current("leak/bin"),
                FetchRequest::current("leak/nope"),
            ])
            .await;
        texts.push(format!("{fetched:?} {fetched:#?}"));
        for r in &fetched {
            if let Err(e) = r {
                texts.push(e.to_string());
            }
        }
        for t in &texts {
            self.leaks.check(&path, "Debug/Display of an admin result", t);
        }
        let (events, bytes) = check_captured(&mut self.leaks, &path);
        self.events += events;
        self.log_bytes += bytes;
        self.paths.push(path);
    }

    fn note(&mut self, path: String, texts: &[String]) {
        for t in texts {
            self.leaks.check(&path, "Display/Debug of an error", t);
        }
        let (events, bytes) = check_captured(&mut self.leaks, &path);
        self.events += events;
        self.log_bytes += bytes;
        self.paths.push(path);
    }
}

fn base_loader() -> Loader {
    Loader::new().no_dotenv().env_vars(Vec::<(String, String)>::new())
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("skm-leak-")
        .tempdir()
        .expect("a scratch directory")
}

fn write_dotenv(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn dotenv_text() -> String {
    env_pairs().into_iter().map(|(k, v)| format!("{k}='{v}'\n")).collect()
}

// ---------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_never_leaks() {
    capture();
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let started = std::time::Instant::now();
    let mut sweep = Sweep {
        leaks: Leaks::new(),
        paths: Vec::new(),
        oks: 0,
        errs: 0,
        events: 0,
        log_bytes: 0,
    };
    let dir = scratch();

    // Environment variables given to the loader.
    let env = base_loader().env_vars(env_pairs());
    sweep.all_cases("env", &env, false).await;

    // A `.env` file, and malformed ones.
    let file = write_dotenv(dir.path(), "good.env", &dotenv_text());
    sweep
        .all_cases(
            ".env",
            &Loader::new().dotenv(&file).env_vars(Vec::<(String, String)>::new()),
            false,
        )
        .await;
    for (name, text) in [
        ("no-equals.env", format!("A=1\nLEAK_SECRET {SENTINEL}\n")),
        ("unterminated.env", format!("LEAK_SECRET=\"{SENTINEL}\nB=2\n")),
        ("bad-name.env", format!("{SENTINEL}-x=1\n")),
        ("bad-escape.env", format!("LEAK_SECRET='{SENTINEL}\\'\nX\n")),
        ("not-utf8.env", format!("LEAK_SECRET={SENTINEL}\u{fffd}\n")),
    ] {
        let file = write_dotenv(dir.path(), name, &text);
        let loader = Loader::new().dotenv(&file).env_vars(Vec::<(String, String)>::new());
        sweep
            .load::<Found>(".env", &format!("malformed {name}"), &loader, Expect::Either)
            .await;
    }
    let bad_bytes = dir.path().join("binary.env");
    std::fs::write(
        &bad_bytes,
        [b"LEAK_SECRET=".as_slice(), SENTINEL.as_bytes(), &[0xff, 0xfe, b'\n']].concat(),
    )
    .unwrap();
    let loader = Loader::new()
        .dotenv(&bad_bytes)
        .env_vars(Vec::<(String, String)>::new());
    sweep
        .load::<Found>(".env", "malformed: not UTF-8", &loader, Expect::Either)
        .await;

    // The in-memory backend, and its failures with env as the fallback.
    let memory = plant_memory();
    sweep
        .all_cases("memory", &base_loader().backend(memory.clone()), true)
        .await;
    sweep.admin("memory", &memory).await;
    for kind in [
        FailureKind::Forbidden,
        FailureKind::Unavailable,
        FailureKind::Throttled,
        FailureKind::Decryption,
        FailureKind::Other,
    ] {
        let failing = plant_memory();
        failing.fail_all(FetchError::new(kind, "injected"));
        sweep
            .outage(&format!("memory, {kind}"), base_loader().backend(failing))
            .await;
    }
    // A backend that never answers, bounded by the deadline.
    let slow = base_loader().backend(Stalled).deadline(Duration::from_millis(100));
    sweep.outage("stalled backend, deadline", slow).await;

    // The local encrypted store.
    let root = dir.path().join(".skm");
    let key = LocalKey::parse(&"5a".repeat(32)).unwrap();
    let store = LocalStore::open(&root).key(key.clone());
    plant(&store).await;
    sweep
        .all_cases("local store", &base_loader().backend(store.clone()), true)
        .await;
    sweep.admin("local store", &store).await;
    let texts = vec![
        format!("{:?}", store.put_key("leak/plain", "k", SENTINEL).await),
        format!("{:?}", store.rollback("leak/app", 99).await),
        format!("{key:?} {:?}", key.to_base64()),
    ];
    sweep.note(
        "local store / put_key on text, rollback to a missing version".into(),
        &texts,
    );
    // Wrong key, then a corrupted file: decryption failures.
    let wrong = LocalStore::open(&root).key(LocalKey::from_bytes([1; 32]));
    sweep
        .outage("local store, wrong key", base_loader().backend(wrong.clone()))
        .await;
    sweep.admin("local store, wrong key", &wrong).await;
    let file = root.join("secrets").join("leak%2Fapp.skm");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    sweep
        .outage("local store, corrupt file", base_loader().backend(store.clone()))
        .await;
    sweep.admin("local store, corrupt file", &store).await;
    let texts = vec![format!(
        "{:?}",
        LocalStore::from_lookup(&|n| (n == "SKM_LOCAL_KEY").then(|| SENTINEL.to_string())).map(|_| ())
    )];
    sweep.note("local store / SKM_LOCAL_KEY not a key".into(), &texts);

    #[cfg(feature = "aws")]
    aws::sweep(&mut sweep).await;
    #[cfg(feature = "vault")]
    vault::sweep(&mut sweep).await;
    #[cfg(feature = "cli")]
    cli::sweep(&mut sweep, dir.path()).await;

    // Anything logged late (background tasks) is checked too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (events, bytes) = check_captured(&mut sweep.leaks, "late events");
    sweep.events += events;
    sweep.log_bytes += bytes;

    let mut sources: Vec<&str> = sweep.paths.iter().map(|p| p.split(" / ").next().unwrap()).collect();
    sources.dedup();
    println!(
        "leak sweep: {} paths exercised ({} loads succeeded, {} failed) over {} sources/conditions; {} texts \
         ({} bytes) checked, including {} tracing events at TRACE ({} bytes); sentinel found 0 times as is, in \
         base64 (2 alphabets x 3 alignments), hex or as a byte list; {:.1} s",
        sweep.paths.len(),
        sweep.oks,
        sweep.errs,
        sources.len(),
        sweep.leaks.texts,
        sweep.leaks.bytes,
        sweep.events,
        sweep.log_bytes,
        started.elapsed().as_secs_f64()
    );
    for (kind, n) in &sweep.leaks.kinds {
        println!("  {n:5}  {kind}");
    }
    assert!(
        sweep.events > 0,
        "no tracing output was captured: the capture is broken"
    );
}

/// A backend that never answers.
#[derive(Debug)]
struct Stalled;

#[async_trait::async_trait]
impl Backend for Stalled {
    fn name(&self) -> String {
        "stalled".into()
    }
    async fn fetch(&self, _: &[FetchRequest]) -> Vec<skm::backend::FetchResult> {
        std::future::pending().await
    }
}

#[cfg(feature = "aws")]
mod aws {
    use super::*;
    use skm::backend::aws::AwsBackend;
    use skm_testing::{Action, Moto, Proxy};

    fn builder(endpoint: &str) -> skm::backend::aws::AwsBackendBuilder {
        // The sentinel as the secret access key: it signs requests and must never be sent or logged.
        AwsBackend::builder()
            .region("us-east-1")
            .endpoint_url(endpoint)
            .static_credentials("AKIDLEAKSWEEP", SENTINEL)
            // One attempt: the outages below are answered at once instead of after backoffs.
            .max_attempts(1)
    }

    pub async fn sweep(sweep: &mut Sweep) {
        let moto = Moto::start().await;
        let proxy = Proxy::start(&moto.endpoint()).await;
        let backend = builder(&proxy.url()).build().await.expect("AWS backend");
        plant(&backend).await;
        let loader = base_loader().backend(backend.clone());
        sweep.all_cases("AWS (moto)", &loader, true).await;
        sweep.admin("AWS (moto)", &backend).await;
        for (name, action) in [
            (
                "access denied",
                Action::aws_error(400, "AccessDeniedException", "User is not authorized"),
            ),
            (
                "KMS decryption failure",
                Action::aws_error(400, "DecryptionFailure", "cannot decrypt"),
            ),
            (
                "service unavailable",
                Action::aws_error(503, "ServiceUnavailable", "unavailable"),
            ),
            (
                "throttled",
                Action::aws_error(400, "ThrottlingException", "Rate exceeded"),
            ),
            ("connection reset", Action::Reset),
        ] {
            proxy.set_rule(move |_| action.clone());
            sweep.outage(&format!("AWS (moto), {name}"), loader.clone()).await;
            sweep.admin(&format!("AWS (moto), {name}"), &backend).await;
        }
        proxy.set_rule(|_| Action::Stall);
        sweep
            .outage(
                "AWS (moto), stalled, deadline",
                loader.clone().deadline(Duration::from_millis(300)),
            )
            .await;
        proxy.clear_rule();
        drop(proxy);
        // Nothing listening.
        let down = builder(&format!("http://127.0.0.1:{}", skm_testing::free_port()))
            .build()
            .await
            .expect("building does not connect");
        sweep
            .outage("AWS, nothing listening", base_loader().backend(down))
            .await;
    }
}

#[cfg(feature = "vault")]
mod vault {
    use super::*;
    use serde_json::json;
    use skm::backend::vault::VaultBuilder;
    use skm_testing::{Action, Bao, Proxy};

    pub async fn sweep(sweep: &mut Sweep) {
        let bao = Bao::start().await;
        // The sentinel as the Vault token: it must never be logged either.
        let (status, body) = bao
            .api(
                "POST",
                "auth/token/create",
                json!({ "id": SENTINEL, "policies": ["root"] }),
            )
            .await;
        assert_eq!(status, 200, "creating the sentinel token: {body}");
        let no_policy = format!("{SENTINEL}-no-policy");
        let (status, body) = bao
            .api(
                "POST",
                "auth/token/create",
                json!({ "id": no_policy, "policies": ["default"], "no_default_policy": false }),
            )
            .await;
        assert_eq!(status, 200, "creating the no-policy token: {body}");
        let proxy = Proxy::start(&bao.addr()).await;
        // One retry: enough to log a retry; the outages below need no more to be exercised.
        let backend = VaultBuilder::new(proxy.url())
            .token(SENTINEL)
            .retries(1)
            .timeout(Duration::from_secs(2))
            .build()
            .await
            .expect("Vault backend");
        plant(&backend).await;
        let loader = base_loader().backend(backend.clone());
        sweep.all_cases("Vault (OpenBao)", &loader, true).await;
        sweep.admin("Vault (OpenBao)", &backend).await;

        let denied = VaultBuilder::new(bao.addr())
            .token(&no_policy)
            .build()
            .await
            .expect("Vault backend");
        sweep
            .outage("Vault (OpenBao), access denied", base_loader().backend(denied.clone()))
            .await;
        sweep.admin("Vault (OpenBao), access denied", &denied).await;
        for (name, action) in [
            ("sealed (503)", Action::vault_error(503, "Vault is sealed")),
            ("throttled (429)", Action::vault_error(429, "rate limit quota exceeded")),
            ("internal error", Action::vault_error(500, "internal error")),
            ("connection reset", Action::Reset),
        ] {
            proxy.set_rule(move |_| action.clone());
            sweep.outage(&format!("Vault (OpenBao), {name}"), loader.clone()).await;
            sweep.admin(&format!("Vault (OpenBao), {name}"), &backend).await;
        }
        proxy.set_rule(|_| Action::Stall);
        sweep
            .outage(
                "Vault (OpenBao), stalled, deadline",
                loader.clone().deadline(Duration::from_millis(300)),
            )
            .await;
        proxy.clear_rule();

        // Configuration errors that involve the token.
        let texts = vec![
            format!(
                "{:?}",
                VaultBuilder::new("http://10.1.2.3:8200")
                    .token(SENTINEL)
                    .build()
                    .await
                    .map(|_| ())
            ),
            format!(
                "{:?}",
                VaultBuilder::new("ftp://vault")
                    .token(SENTINEL)
                    .build()
                    .await
                    .map(|_| ())
            ),
            format!("{:?}", VaultBuilder::new(bao.addr()).token(SENTINEL)),
            format!("{backend:?}"),
        ];
        sweep.note("Vault / configuration errors with the sentinel token".into(), &texts);

        // Really sealed, as the last step.
        bao.bao(&["operator", "seal"]).await;
        sweep.outage("Vault (OpenBao), really sealed", loader.clone()).await;
    }
}

#[cfg(feature = "cli")]
mod cli {
    //! The `skm` binary itself, every command without `--reveal`, on the local store holding the sentinel:
    //! stdout, stderr and the files it writes (`.env.example`, an exported manifest) are checked.

    use super::*;
    use std::process::{Command, Stdio};

    /// Builds the `skm` binary with this test's backends and returns its path.
    fn skm_binary() -> PathBuf {
        let mut features = vec!["local"];
        if cfg!(feature = "aws") {
            features.push("aws");
        }
        if cfg!(feature = "vault") {
            features.push("vault");
        }
        // Every backend feature this test has: the build replaces `target/debug/skm`, which the CLI's own tests
        // run next, so it must not lose a command or flag they use.
        for (on, name) in [
            (cfg!(feature = "gcp"), "gcp"),
            (cfg!(feature = "azure"), "azure"),
            (cfg!(feature = "postgres"), "postgres"),
        ] {
            if on {
                features.push(name);
            }
        }
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "skm-secrets-cli",
                "--bin",
                "skm",
                "--message-format=json-render-diagnostics",
            ])
            .arg("--features")
            .arg(features.join(","))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo build -p skm-secrets-cli");
        assert!(out.status.success(), "building the skm binary failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "skm")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no skm executable")
    }

    const MANIFEST: &str = r#"skm_manifest = 1
struct = "LeakApp"

[[secret]]
field = "secret"
path = "leak/app"
key = "secret"
env = "LEAK_SECRET"
type = "SecretString"

[[secret]]
field = "plain"
path = "leak/plain"
env = "LEAK_PLAIN"
type = "SecretString"

[[secret]]
field = "port"
path = "leak/json"
key = "port"
env = "LEAK_PORT"
type = "SecretBox<u16>"

[[secret]]
field = "missing"
path = "leak/nope"
key = "x"
env = "LEAK_NOPE"
type = "SecretString"

[[secret]]
field = "level"
env = "LEAK_LEVEL"
type = "String"
plain = true
has_default = true
"#;

    struct Tool {
        exe: PathBuf,
        dir: PathBuf,
        vars: Vec<(String, String)>,
    }

    impl Tool {
        fn run(&self, sweep: &mut Sweep, args: &[&str], stdin: Option<&str>, extra: &[(&str, String)]) -> i32 {
            let mut cmd = Command::new(&self.exe);
            cmd.args(args)
                .current_dir(&self.dir)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in &self.vars {
                cmd.env(k, v);
            }
            for (k, v) in extra {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("run skm");
            if let Some(input) = stdin {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            }
            let out = child.wait_with_output().unwrap();
            let path = format!(
                "CLI / skm {}{}",
                args.join(" "),
                extra.iter().map(|(k, _)| format!(" [{k}]")).collect::<String>()
            );
            sweep
                .leaks
                .check(&path, "CLI stdout", &String::from_utf8_lossy(&out.stdout));
            sweep
                .leaks
                .check(&path, "CLI stderr", &String::from_utf8_lossy(&out.stderr));
            sweep.paths.push(path);
            out.status.code().unwrap_or(-1)
        }

        fn file(&self, sweep: &mut Sweep, name: &str) {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            sweep
                .leaks
                .check(&format!("CLI / file {name}"), "a file the CLI wrote", &text);
        }
    }

    pub async fn sweep(sweep: &mut Sweep, dir: &Path) {
        let exe = skm_binary();
        let dir = dir.join("cli");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("skm.toml"), MANIFEST).unwrap();
        let dotenv = format!(
            "LEAK_SECRET={SENTINEL}\nLEAK_PLAIN='{SENTINEL}'\nLEAK_PORT=\"{SENTINEL}\"\nLEAK_LEVEL={SENTINEL}\n"
        );
        std::fs::write(dir.join(".env"), &dotenv).unwrap();
        std::fs::write(dir.join("malformed.env"), format!("A=1\nLEAK_SECRET {SENTINEL}\n")).unwrap();
        let key = "7e".repeat(32);
        let tool = Tool {
            exe,
            dir: dir.clone(),
            vars: vec![
                ("HOME".into(), dir.display().to_string()),
                ("SKM_BACKEND".into(), "local".into()),
                ("SKM_LOCAL_PATH".into(), dir.join(".skm").display().to_string()),
                ("SKM_LOCAL_KEY".into(), key),
                ("SKM_MANIFEST".into(), dir.join("skm.toml").display().to_string()),
                ("NO_COLOR".into(), "1".into()),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ],
        };
        let t = &tool;
        let none: &[(&str, String)] = &[];
        // Writes (values through stdin, never argv), then every read-side command, plain and --json.
        let mut codes = vec![t.run(sweep, &["put", "leak/app", "--key", "secret"], Some(SENTINEL), none)];
        codes.push(t.run(
            sweep,
            &["put", "leak/app", "--key", "other", "--tag", "team=x"],
            Some("x"),
            none,
        ));
        codes.push(t.run(sweep, &["put", "leak/plain"], Some(SENTINEL), none));
        codes.push(t.run(sweep, &["put", "leak/json"], Some(&struct_json()), none));
        codes.push(t.run(sweep, &["put", "leak/bad"], Some(&malformed_json()), none));
        codes.push(t.run(sweep, &["put", "leak/plain", "--create-only"], Some(SENTINEL), none));
        codes.push(t.run(sweep, &["put", "leak/bad", "--key", "k"], Some(SENTINEL), none));
        for json in [false, true] {
            let j = |args: &[&'static str]| -> Vec<&'static str> {
                let mut v = args.to_vec();
                if json {
                    v.insert(0, "--json");
                }
                v
            };
            for args in [
                &["get", "leak/app"][..],
                &["get", "leak/app", "--key", "secret"],
                &["get", "leak/app", "--key", "nope"],
                &["get", "leak/app", "--version", "1"],
                &["get", "leak/app", "--version", "99"],
                &["get", "leak/plain"],
                &["get", "leak/plain", "--key", "secret"],
                &["get", "leak/bad", "--key", "secret"],
                &["get", "leak/nope"],
                &["list"],
                &["list", "leak/"],
                &["versions", "leak/app"],
                &["versions", "leak/nope"],
                &["check"],
                &["check", "--strict"],
                &["check", "--no-dotenv"],
                &["check", "--dotenv", "malformed.env"],
                &["doctor"],
                &["doctor", "--dotenv", "malformed.env"],
                &["manifest"],
                &["manifest", "--format", "json"],
                &["policy", "--aws"],
                &["policy", "--vault"],
                &["policy", "--external-secret"],
                &["migrate", "--dry-run"],
                &["migrate", "--from", "malformed.env", "--dry-run"],
            ] {
                codes.push(t.run(sweep, &j(args), None, none));
            }
        }
        codes.push(t.run(
            sweep,
            &["template", "--output", "out.env.example", "--force"],
            None,
            none,
        ));
        t.file(sweep, "out.env.example");
        codes.push(t.run(sweep, &["manifest", "--output", "exported.toml"], None, none));
        t.file(sweep, "exported.toml");
        codes.push(t.run(
            sweep,
            &["rotate", "leak/rot", "--key", "k", "--generate", "32"],
            None,
            none,
        ));
        codes.push(t.run(sweep, &["rollback", "leak/app", "--to", "1"], None, none));
        codes.push(t.run(sweep, &["rollback", "leak/app", "--to", "99"], None, none));
        // Migration for real: conflicts with what the store holds, then forced with a backup.
        codes.push(t.run(sweep, &["migrate", "--to", "local"], None, none));
        codes.push(t.run(
            sweep,
            &["--json", "migrate", "--to", "local", "--force", "--backup"],
            None,
            none,
        ));
        codes.push(t.run(
            sweep,
            &["migrate", "--from", "local", "--to", "local", "--dry-run"],
            None,
            none,
        ));
        codes.push(t.run(sweep, &["delete", "leak/plain", "--yes"], None, none));
        codes.push(t.run(sweep, &["delete", "leak/nope", "--force", "--yes"], None, none));

        // A corrupt store file, a wrong key, and a key that is not a key (the sentinel itself).
        let file = dir.join(".skm").join("secrets").join("leak%2Fapp.skm");
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&file, &bytes).unwrap();
        let wrong_key = [("SKM_LOCAL_KEY", "00".repeat(32))];
        let not_a_key = [("SKM_LOCAL_KEY", SENTINEL.to_string())];
        for extra in [none, &wrong_key[..], &not_a_key[..]] {
            for args in [
                &["get", "leak/app", "--key", "secret"][..],
                &["--json", "get", "leak/app"],
                &["list"],
                &["versions", "leak/app"],
                &["check"],
                &["--json", "check"],
                &["doctor"],
                &["migrate", "--to", "local", "--dry-run"],
            ] {
                codes.push(t.run(sweep, args, None, extra));
            }
            codes.push(t.run(sweep, &["put", "leak/app", "--key", "secret"], Some(SENTINEL), extra));
        }
        // Bad usage. (Arguments are not sources of secrets: values only ever come through stdin.)
        codes.push(t.run(sweep, &["get"], None, none));
        codes.push(t.run(sweep, &["--backend", "nosuch", "list"], None, none));
        codes.push(t.run(sweep, &["put", "leak/app"], Some(""), none));
        let failures = codes.iter().filter(|c| **c != 0).count();
        println!(
            "leak sweep, CLI: {} runs of the skm binary ({failures} with a non-zero exit), stdout and stderr checked",
            codes.len()
        );
        let (events, bytes) = check_captured(&mut sweep.leaks, "CLI");
        sweep.events += events;
        sweep.log_bytes += bytes;
    }
}
