//! The local store at scale: SIGKILLs at random points of writes, and every single-byte change of a file.
//!
//! The crash test re-runs this test binary as the writer: [`child_process`] does nothing unless
//! `SKM_RELIABILITY_CHILD` names a role.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skm::backend::local::{LocalKey, LocalStore};
use skm::backend::{AdminBackend, Backend, FailureKind, FetchRequest, FetchResult, PutRequest, SecretValue};
use skm::ExposeSecret;
use skm_runtime::fuzzing::store;

use crate::needles::SENTINEL;

const KEY_HEX: &str = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf";
const CRASH_PATH: &str = "crash/value";

fn key() -> LocalKey {
    LocalKey::parse(KEY_HEX).unwrap()
}

fn store_at(root: &Path) -> LocalStore {
    LocalStore::open(root).key(key())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn text(r: &FetchResult) -> String {
    match &r.as_ref().unwrap_or_else(|e| panic!("expected a value, got {e}")).value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

fn temp_files(root: &Path) -> usize {
    std::fs::read_dir(root.join("secrets")).map_or(0, |r| {
        r.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .count()
    })
}

/// About 3 KB, so that a file spans pages; every chunk names the sequence number, so a value mixing two
/// writes is caught.
fn crash_payload(seq: u64) -> String {
    format!("{seq:010};").repeat(300)
}

fn parse_crash_payload(text: &str) -> u64 {
    let first = &text[..11];
    assert_eq!(text, first.repeat(300), "a value mixing two writes");
    first[..10].parse().unwrap()
}

/// Entry point of the writer processes; a no-op in a normal run.
#[test]
fn child_process() {
    let Ok(role) = std::env::var("SKM_RELIABILITY_CHILD") else {
        return;
    };
    assert_eq!(role, "crash-writer", "unknown child role");
    let root = PathBuf::from(std::env::var("SKM_RELIABILITY_STORE").unwrap());
    let start: u64 = std::env::var("SKM_RELIABILITY_START").unwrap().parse().unwrap();
    let store = store_at(&root);
    let rt = runtime();
    let mut out = std::io::stdout().lock();
    // Bounded so that an orphaned writer stops by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    for seq in start.. {
        let began = Instant::now();
        rt.block_on(store.put(PutRequest::new(CRASH_PATH, SecretValue::text(crash_payload(seq)))))
            .unwrap_or_else(|e| panic!("put {seq}: {e}"));
        // The acknowledgement is written only after put returned: the write is durable by then.
        writeln!(out, "@skm done {seq} {}", began.elapsed().as_micros()).unwrap();
        out.flush().unwrap();
        if Instant::now() > deadline {
            break;
        }
    }
}

/// The text after `@skm <tag>` in a line of a child's output; libtest may print its own text before it.
fn marker<'l>(line: &'l str, tag: &str) -> Option<&'l str> {
    let at = line.find("@skm ")?;
    line[at + 5..].strip_prefix(tag)
}

/// A small deterministic generator, seeded from the clock and printed, so that a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `SKM_CRASH_ROUNDS` SIGKILLs (default 1000), each at a random point of a write: after every one, a freshly
/// opened store holds the last acknowledged value or the one being written, never a torn, mixed or
/// unreadable file.
#[test]
fn a_thousand_sigkills_during_writes_leave_no_corrupt_store() {
    let rounds: usize = std::env::var("SKM_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let seed = std::env::var("SKM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    let mut rng = XorShift(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    // A second path the writer never touches: a kill must not damage other files either.
    let rt = runtime();
    rt.block_on(store_at(&root).put(PutRequest::new("bystander", SecretValue::map([("k", SENTINEL)]))))
        .unwrap();

    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let (mut next, mut old, mut new, mut mid_write, mut acked_total) = (1u64, 0usize, 0usize, 0usize, 0u64);
    let mut delays = Vec::with_capacity(rounds);
    let mut write_micros = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "local_scale::child_process",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("SKM_RELIABILITY_CHILD", "crash-writer")
            .env("SKM_RELIABILITY_STORE", &root)
            .env("SKM_RELIABILITY_START", next.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for the first acknowledged write, so that the writer is in its loop; then kill at a random
        // point within 1.5 times the duration of a write, which lands most kills inside the next write.
        let first = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| marker(&l, "done ").map(str::to_string))
            .unwrap_or_else(|| panic!("round {round}: the writer acknowledged no write"));
        let (seq, micros) = first.split_once(' ').unwrap();
        let (first_seq, micros): (u64, u64) = (seq.parse().unwrap(), micros.parse().unwrap());
        write_micros.push(micros);
        let delay = rng.below(micros * 3 / 2 + 1);
        let spin = Instant::now();
        // A sleep of a few hundred microseconds oversleeps by as much again; spin instead.
        while spin.elapsed() < Duration::from_micros(delay) {
            std::hint::spin_loop();
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: the writer was not killed");
        let mut last_acked = first_seq;
        for line in lines.map_while(Result::ok) {
            if let Some(m) = marker(&line, "done ") {
                let (seq, micros) = m.split_once(' ').unwrap();
                last_acked = last_acked.max(seq.parse().unwrap());
                write_micros.push(micros.parse().unwrap());
            }
        }
        acked_total += last_acked + 1 - next;
        delays.push(delay);
        if temp_files(&root) > 0 {
            mid_write += 1;
        }

        // A fresh store value, as a restarted process opens it.
        let store = store_at(&root);
        let r = rt.block_on(store.fetch(&[FetchRequest::current(CRASH_PATH)])).remove(0);
        let value = text(&r);
        let seq = parse_crash_payload(&value);
        assert_eq!(
            r.as_ref().unwrap().version.as_deref(),
            Some(seq.to_string().as_str()),
            "round {round}: version and value disagree"
        );
        assert!(
            seq == last_acked || seq == last_acked + 1,
            "round {round} (seed {seed}): the store holds write {seq}, the writer had acknowledged {last_acked}"
        );
        if seq == last_acked {
            old += 1;
        } else {
            new += 1;
        }
        if round % 50 == 49 || round + 1 == rounds {
            // Every file still decrypts, the bystander is intact, and the kept versions are consecutive.
            let listed = rt
                .block_on(store.list(""))
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(listed.len(), 2, "round {round}");
            let versions = rt.block_on(store.versions(CRASH_PATH)).unwrap();
            let ids: Vec<u64> = versions.iter().map(|v| v.id.parse().unwrap()).collect();
            assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "round {round}: {ids:?}");
            let bystander = rt
                .block_on(store.fetch(&[FetchRequest::current("bystander")]))
                .remove(0);
            assert!(text(&bystander).contains(SENTINEL), "round {round}");
        }
        next = seq + 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(old + new, rounds);
    write_micros.sort_unstable();
    let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
    println!(
        "crash at scale: seed {seed}; {rounds} SIGKILLs ({min}-{max} us after an acknowledged write, {mid_write} \
         of them mid-write, leaving a temporary file); {acked_total} writes acknowledged; one write median {} us, \
         max {} us; after every kill a fresh store opened: {old} times with the last acknowledged value, {new} \
         times with the write in flight (killed after its rename), 0 torn, mixed or unreadable, bystander file \
         intact; {:.1} s wall time",
        write_micros[write_micros.len() / 2],
        write_micros[write_micros.len() - 1],
        elapsed.as_secs_f64()
    );
    // The next writer removes the temporary files of killed ones.
    let store = store_at(&root);
    rt.block_on(store.put(PutRequest::new(CRASH_PATH, SecretValue::text(crash_payload(next)))))
        .unwrap();
    assert_eq!(temp_files(&root), 0, "stale temporary files were not removed");
}

/// Every single-byte change of a store file (at every position, to each of the 255 other values), every
/// truncation and an appended byte: never read as a value, and never overwritten by a write.
#[test]
fn every_single_byte_change_of_a_store_file_is_detected() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    let path = "tamper/db";
    // Five kept versions of a map, with a description and tags: every part of the format is in the file.
    for i in 0..6 {
        let mut put = PutRequest::new(path, SecretValue::map([("password", SENTINEL), ("n", &i.to_string())]));
        put.description = Some("tamper test".into());
        put.tags = vec![("team".into(), "reliability".into())];
        rt.block_on(store.put(put)).unwrap();
    }
    let file = root.join("secrets").join("tamper%2Fdb.skm");
    let original = std::fs::read(&file).unwrap();
    assert_eq!(store::open(path, &original, &key()), Ok(5));
    let started = Instant::now();

    // The parser on its own: all 255 changes of every byte.
    let mut changed = original.clone();
    let mut pure = 0usize;
    for at in 0..original.len() {
        for x in 1..=255u8 {
            changed[at] = original[at] ^ x;
            assert!(
                store::open(path, &changed, &key()).is_err(),
                "byte {at} ^ {x:#04x} opened"
            );
            pure += 1;
        }
        changed[at] = original[at];
    }
    let pure_time = started.elapsed();

    // Through the store, as a service reads the file: every bit of every byte, truncations, one byte more.
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for at in 0..original.len() {
        for bit in 0..8 {
            let mut bad = original.clone();
            bad[at] ^= 1 << bit;
            cases.push((format!("bit {bit} of byte {at}"), bad));
        }
    }
    for len in 0..original.len() {
        cases.push((format!("truncated to {len} bytes"), original[..len].to_vec()));
    }
    let mut longer = original.clone();
    longer.push(0);
    cases.push(("one byte appended".into(), longer));
    for (what, bytes) in &cases {
        std::fs::write(&file, bytes).unwrap();
        let r = rt.block_on(store.fetch(&[FetchRequest::current(path)])).remove(0);
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{what}: the store read a value from a modified file"));
        assert_eq!(e.kind, FailureKind::Decryption, "{what}: {e}");
        assert!(!e.to_string().contains(SENTINEL), "{what}: {e}");
    }
    // A write refuses to replace a file it cannot read (spot checks: a write costs two fsyncs).
    for (what, bytes) in cases.iter().step_by(97) {
        std::fs::write(&file, bytes).unwrap();
        let w = rt.block_on(store.put(PutRequest::new(path, SecretValue::text("new"))));
        assert!(w.is_err(), "{what}: a put overwrote a file it could not decrypt");
        assert_eq!(&std::fs::read(&file).unwrap(), bytes, "{what}: the file was changed");
    }
    std::fs::write(&file, &original).unwrap();
    let r = rt.block_on(store.fetch(&[FetchRequest::current(path)])).remove(0);
    assert!(text(&r).contains(SENTINEL));
    println!(
        "tamper at scale: a {}-byte store file (5 versions, description, tags); {pure} single-byte changes (every \
         byte to each of its 255 other values) rejected by the parser in {:.1} s; through the store, {} modified \
         files ({} single-bit flips, {} truncations, 1 appended byte) each read as a decryption error, never a \
         value; {} writes over a damaged file refused; the restored file reads back",
        original.len(),
        pure_time.as_secs_f64(),
        cases.len(),
        original.len() * 8,
        original.len(),
        cases.iter().step_by(97).count(),
    );
}
