//! Where the peers' binaries and the test scratch files live, and free ports.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The workspace root: the nearest directory holding `.venv`, searched upwards from the running test's
/// `CARGO_MANIFEST_DIR` (then from this crate's), or, when there is none, the directory above this crate.
pub fn workspace_root() -> PathBuf {
    let this_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    let starts = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([this_crate.to_path_buf()]);
    for start in starts {
        if let Some(root) = start.ancestors().find(|dir| dir.join(".venv").is_dir()) {
            return root.to_path_buf();
        }
    }
    this_crate
        .parent()
        .expect("skm-testing lives inside the workspace")
        .to_path_buf()
}

/// The virtualenv holding the peers: `$SKM_VENV` if set, else `<workspace root>/.venv`.
fn venv_dir() -> PathBuf {
    match std::env::var_os("SKM_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".venv"),
    }
}

/// The path of `name` in the virtualenv's `bin/` (see [`workspace_root`]; `$SKM_VENV` overrides the venv).
///
/// # Panics
/// When the file does not exist: a backend test must fail, not pass, when its peer is not installed.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv_dir().join("bin").join(name);
    if !path.is_file() {
        panic!(
            "{name} not found at {}: run ./scripts/test (it installs the test peers into .venv)",
            path.display()
        );
    }
    path
}

/// A scratch directory for peer logs and homes: `<target dir>/skm-testing`, created on demand.
pub(crate) fn scratch_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("skm-testing");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create scratch directory {}: {e}", dir.display()));
    dir
}

/// Ports this process has handed out; never handed out twice, so parallel tests cannot be given the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn claim(port: u16) -> bool {
    HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(port)
}

fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A TCP port on 127.0.0.1 that was free just now and that this process has not handed out before.
///
/// Another process can still take it before the caller binds it: peers started by this crate detect that
/// and retry on a new port.
pub fn free_port() -> u16 {
    loop {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind 127.0.0.1:0 to find a free port");
        let port = listener.local_addr().expect("bound socket has an address").port();
        if claim(port) {
            return port;
        }
    }
}

/// A free port `p` whose neighbour `p + 1` is free too (the OpenBao dev server binds its cluster listener
/// there, and cannot be told otherwise).
pub(crate) fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < u16::MAX && is_free(port + 1) && claim(port + 1) {
            return port;
        }
    }
}
