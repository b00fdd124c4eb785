//! `cargo run --release -p skm-bench [-- --quick] [-- --only aws,vault,gcp,azure,ssm,fleet,fleet-gcp,read,derive,cold] [-- --out FILE]`
//!
//! Runs the benchmarks, prints the report and writes it to `BENCHMARKS.md` at the workspace root (a run with
//! `--quick` or `--only` writes `target/skm-bench/BENCHMARKS.partial.md` instead, unless `--out` says where).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use skm_bench::report::{Machine, Report, Section};
use skm_bench::Settings;

/// One benchmark: its name for `--only`, its title, and the targets it checks (listed as missed when it
/// cannot run).
struct Benchmark {
    name: &'static str,
    title: &'static str,
    targets: &'static [(&'static str, &'static str)],
}

const BENCHMARKS: [Benchmark; 10] = [
    Benchmark {
        name: "aws",
        title: "1. AWS load (moto behind the latency proxy)",
        targets: &[
            ("AWS load: speed-up over the sequential loop", "≥ 25×"),
            ("AWS load: wall time in RTTs", "≤ 2 RTT"),
            ("AWS load: requests for 100 names", "= 5"),
            (
                "AWS load: skm / the same batches sent by hand (same client, alternate runs)",
                "≤ 1.1×",
            ),
        ],
    },
    Benchmark {
        name: "vault",
        title: "2. Vault load (OpenBao behind the latency proxy)",
        targets: &[
            ("Vault load: wall time in RTTs (default configuration)", "≤ 2 RTT"),
            ("Vault load: requests for 50 paths", "= 50"),
            (
                "Vault load: skm / the same reads sent by hand (same client, alternate runs)",
                "≤ 1.1×",
            ),
        ],
    },
    Benchmark {
        name: "read",
        title: "3. Read path",
        targets: &[("read path", "≤ 100 ns")],
    },
    Benchmark {
        name: "derive",
        title: "4. Derive compile cost (200-field struct)",
        targets: &[("derive: `cargo build` time, skm / serde (struct only)", "≤ 1.0×")],
    },
    Benchmark {
        name: "cold",
        title: "5. Cold start on the embedded default",
        targets: &[("cold start: skm / hand-written process wall time", "≤ 2×")],
    },
    Benchmark {
        name: "fleet",
        title: "6. Fleet start under AWS's quotas",
        targets: &[
            (
                "fleet: skm default / best fixed strategy, failed loads",
                "≤ 1.2×, 0 failed",
            ),
            (
                "hot reload: skm default's quota share per instance is the least",
                "fewest among the strategies",
            ),
        ],
    },
    Benchmark {
        name: "gcp",
        title: "7. Google Cloud Secret Manager load (drongo behind the latency proxy)",
        targets: &[
            ("GCP load: speed-up over the sequential loop", "≥ 25×"),
            ("GCP load: wall time in RTTs", "≤ 2 RTT"),
            ("GCP load: requests for 100 secrets", "= 100"),
        ],
    },
    Benchmark {
        name: "azure",
        title: "8. Azure Key Vault load (the Key Vault test server, latency injected)",
        targets: &[
            ("Azure load: speed-up over the sequential loop", "≥ 25×"),
            ("Azure load: wall time in RTTs", "≤ 2 RTT"),
            ("Azure load: requests for 100 secrets", "= 100"),
        ],
    },
    Benchmark {
        name: "fleet-gcp",
        title: "9. Fleet start under Google Cloud's quotas",
        targets: &[("GCP fleet: failed loads", "0 failed")],
    },
    Benchmark {
        name: "ssm",
        title: "10. AWS Systems Manager Parameter Store load (moto behind the latency proxy)",
        targets: &[
            ("SSM load: speed-up over the sequential loop", "≥ 25×"),
            ("SSM load: wall time in RTTs", "≤ 2 RTT"),
            ("SSM load: requests for 100 parameters", "= 10"),
            (
                "SSM load: skm / the same batches sent by hand (same client, alternate runs)",
                "≤ 1.1×",
            ),
        ],
    },
];

/// Figures measured apart from the run (clean builds at two commits), appended to every report.
const MEASURED_APART: &str = concat!(
    include_str!("../apart/http_stack.md"),
    "\n",
    include_str!("../apart/build_costs.md")
);

const USAGE: &str =
    "usage: skm-bench [--quick] [--only aws,vault,gcp,azure,ssm,fleet,fleet-gcp,read,derive,cold] [--out FILE]";

struct Args {
    quick: bool,
    only: Option<Vec<String>>,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        only: None,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--quick" => args.quick = true,
            "--only" => {
                let list: Vec<String> = value("--only")?.split(',').map(|s| s.trim().to_string()).collect();
                for name in &list {
                    if !BENCHMARKS.iter().any(|b| b.name == name) {
                        return Err(format!(
                            "unknown benchmark `{name}`: use aws, vault, gcp, azure, ssm, fleet, fleet-gcp, read, derive, cold"
                        ));
                    }
                }
                args.only = Some(list);
            }
            "--out" => args.out = Some(PathBuf::from(value("--out")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(args)
}

fn run_one(name: &str, settings: &Settings) -> Section {
    match name {
        #[cfg(feature = "aws")]
        "aws" => skm_bench::aws::run(settings),
        #[cfg(feature = "vault")]
        "vault" => skm_bench::vault::run(settings),
        "read" => skm_bench::read::run(settings.quick),
        "derive" => skm_bench::derive_cost::run(settings),
        "cold" => skm_bench::cold::run(settings),
        #[cfg(feature = "aws")]
        "fleet" => skm_bench::fleet::run(settings),
        #[cfg(feature = "gcp")]
        "gcp" => skm_bench::gcp::run(settings),
        #[cfg(feature = "azure")]
        "azure" => skm_bench::azure::run(settings),
        #[cfg(feature = "gcp")]
        "fleet-gcp" => skm_bench::fleet_gcp::run(settings),
        #[cfg(feature = "ssm")]
        "ssm" => skm_bench::ssm::run(settings),
        other => panic!("skm-bench was built without the `{other}` feature"),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the benchmark panicked".into())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Without credentials the AWS SDK would probe the instance-metadata address; nothing here may contact it.
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");

    let settings = Settings::new(args.quick);
    let machine = Machine::detect();
    let start = Instant::now();
    let mut sections = Vec::new();
    let mut failed = false;
    // Run order: the compile-cost benchmark last, so that its builds (and the disk writes they leave behind)
    // cannot disturb the timing of the others. The report keeps the numbered order.
    let order = [
        "aws",
        "vault",
        "gcp",
        "azure",
        "ssm",
        "fleet",
        "fleet-gcp",
        "read",
        "cold",
        "derive",
    ];
    let mut benchmarks: Vec<&Benchmark> = BENCHMARKS.iter().collect();
    benchmarks.sort_by_key(|b| order.iter().position(|n| *n == b.name));
    for &Benchmark { name, title, targets } in benchmarks {
        if args.only.as_ref().is_some_and(|only| !only.iter().any(|n| n == name)) {
            continue;
        }
        eprintln!("==> {title}");
        let t = Instant::now();
        let section = match std::panic::catch_unwind(AssertUnwindSafe(|| run_one(name, &settings))) {
            Ok(section) => section,
            Err(payload) => {
                failed = true;
                let message = panic_message(payload.as_ref());
                eprintln!("    FAILED: {message}");
                Section::failed(title, &message, targets)
            }
        };
        eprintln!("    done in {:.1} s", t.elapsed().as_secs_f64());
        sections.push((BENCHMARKS.iter().position(|b| b.name == name), section));
    }

    sections.sort_by_key(|(index, _)| *index);
    let sections: Vec<Section> = sections.into_iter().map(|(_, s)| s).collect();

    let mut command = String::from("cargo run --release -p skm-bench");
    let extra: Vec<String> = std::env::args().skip(1).collect();
    if !extra.is_empty() {
        command.push_str(" -- ");
        command.push_str(&extra.join(" "));
    }
    let report = Report {
        machine,
        command,
        quick: args.quick,
        sections,
        total_secs: start.elapsed().as_secs_f64(),
    };
    let mut markdown = report.to_markdown();
    // A measurement that needs clean builds at two commits cannot run here; its figures travel with the
    // report, marked as measured apart.
    markdown.push('\n');
    markdown.push_str(MEASURED_APART);
    println!("{markdown}");
    for t in report.targets() {
        println!(
            "{:<4}  {}: {} (goal {})",
            if t.pass { "PASS" } else { "MISS" },
            t.what,
            t.measured,
            t.goal
        );
    }

    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick || args.only.is_some() {
            settings.target_dir.join("skm-bench").join("BENCHMARKS.partial.md")
        } else {
            settings.workspace.join("BENCHMARKS.md")
        }
    });
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&out, &markdown) {
        Ok(()) => eprintln!("wrote {}", out.display()),
        Err(e) => {
            eprintln!("cannot write {}: {e}", out.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
