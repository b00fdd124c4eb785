//! The standalone `skm` binary: declarations come from `--manifest FILE` (or `SKM_MANIFEST`).

fn main() -> std::process::ExitCode {
    skm_cli::run_with_manifest()
}
