//! The report: one section per benchmark, the targets with PASS/MISS, the machine; rendered as Markdown.

use std::fmt::Write as _;
use std::process::Command;

/// A table: a header row and data rows, rendered as a Markdown table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column titles.
    pub header: Vec<String>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "row width");
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        // A `|` inside a cell, even in a code span, would end the cell in GitHub's Markdown.
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        out.push_str(&line(&self.header));
        out.push_str(&line(&vec!["---".to_string(); self.header.len()]));
        for row in &self.rows {
            out.push_str(&line(row));
        }
    }
}

/// The table of a load benchmark: approach, wall time (median, min–max, runs), requests, speed-up over the
/// sequential loop and wall time in RTTs; every network section prints one.
#[derive(Debug)]
pub struct LoadTable {
    table: Table,
    baseline: f64,
    rtt: f64,
}

impl LoadTable {
    /// A table whose speed-up column divides `baseline` (the sequential loop's median, seconds) by each row's
    /// median, titled `speedup_title`.
    pub fn new(speedup_title: &str, baseline: f64, rtt: std::time::Duration) -> Self {
        LoadTable {
            table: Table::new(&[
                "approach",
                "wall (median)",
                "min–max",
                "runs",
                "requests",
                speedup_title,
                "wall / RTT",
            ]),
            baseline,
            rtt: rtt.as_secs_f64(),
        }
    }

    /// Adds one approach's times and request count.
    pub fn row(&mut self, what: impl Into<String>, times: &crate::stats::Samples, requests: impl Into<String>) {
        self.table.row(vec![
            what.into(),
            crate::stats::fmt_secs(times.median()),
            times.range_time(),
            times.len().to_string(),
            requests.into(),
            crate::stats::fmt_ratio(self.baseline / times.median()),
            format!("{:.2}", times.median() / self.rtt),
        ]);
    }

    /// The table, to give to [`Section::new`].
    pub fn into_table(self) -> Table {
        self.table
    }
}

/// One goal the issue sets, with the figure measured against it.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is measured, e.g. `AWS load: speed-up over the sequential loop`.
    pub what: String,
    /// The goal, e.g. `≥ 25×`.
    pub goal: String,
    /// The measured figure, e.g. `31.2×`.
    pub measured: String,
    /// Whether the goal is met.
    pub pass: bool,
}

impl Target {
    /// A target: `what` must meet `goal`; `measured` is what it did.
    pub fn new(what: impl Into<String>, goal: impl Into<String>, measured: impl Into<String>, pass: bool) -> Self {
        Target {
            what: what.into(),
            goal: goal.into(),
            measured: measured.into(),
            pass,
        }
    }
}

/// The result of one benchmark.
#[derive(Debug, Clone)]
pub struct Section {
    /// The title, e.g. `1. AWS load`.
    pub title: String,
    /// Paragraphs before the table: the set-up, what is timed.
    pub intro: Vec<String>,
    /// The figures.
    pub table: Table,
    /// Notes after the table: explanations of what the figures show.
    pub notes: Vec<String>,
    /// The targets this benchmark checks.
    pub targets: Vec<Target>,
}

impl Section {
    /// A section with no figures yet.
    pub fn new(title: impl Into<String>, table: Table) -> Self {
        Section {
            title: title.into(),
            intro: Vec::new(),
            table,
            notes: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// A section for a benchmark that could not run: the reason, and each of its targets as MISS.
    pub fn failed(title: impl Into<String>, error: &str, targets: &[(&str, &str)]) -> Self {
        let mut section = Section::new(title, Table::new(&["error"]));
        section.table.row(vec![error.replace('\n', " ")]);
        for (what, goal) in targets {
            section
                .targets
                .push(Target::new(*what, *goal, "not measured (the benchmark failed)", false));
        }
        section
    }
}

/// Facts about the machine and toolchain the figures were measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub nproc: usize,
    /// The CPU model, from `/proc/cpuinfo`.
    pub cpu: String,
    /// `rustc --version`.
    pub rustc: String,
    /// `uname -srm`.
    pub os: String,
    /// The date and time of the run, UTC.
    pub date: String,
    /// The 1-minute load average at the start of the run (other work on the machine makes figures noisy).
    pub load_average: String,
}

impl Machine {
    /// Reads the facts; anything unreadable is `unknown`.
    pub fn detect() -> Self {
        let run = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            rustc: run(&rustc, &["--version"]),
            os: run("uname", &["-srm"]),
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            load_average,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The command line that produced it.
    pub command: String,
    /// Whether it ran in `--quick` mode (fewer runs).
    pub quick: bool,
    /// The benchmarks, in order.
    pub sections: Vec<Section>,
    /// Total time of the run, in seconds.
    pub total_secs: f64,
}

impl Report {
    /// Every target of every section, in order.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.sections.iter().flat_map(|s| s.targets.iter())
    }

    /// The targets as a table: goal, measured, PASS/MISS.
    pub fn targets_table(&self) -> Table {
        let mut table = Table::new(&["target", "goal", "measured", "result"]);
        for t in self.targets() {
            table.row(vec![
                t.what.clone(),
                t.goal.clone(),
                t.measured.clone(),
                if t.pass { "PASS" } else { "**MISS**" }.into(),
            ]);
        }
        table
    }

    /// The report as Markdown: what `BENCHMARKS.md` holds and what is printed.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("# skm benchmarks\n\n");
        let _ = writeln!(
            out,
            "Written by `{}` on {}{}. Every figure below was measured in this run, side by side; \
             times are the median of several runs with the min–max range.\n",
            self.command,
            self.machine.date,
            if self.quick {
                " in `--quick` mode (fewer runs: indicative only)"
            } else {
                ""
            }
        );
        let m = &self.machine;
        let mut machine = Table::new(&["machine", ""]);
        machine.row(vec!["CPUs (nproc)".into(), m.nproc.to_string()]);
        machine.row(vec!["CPU".into(), m.cpu.clone()]);
        machine.row(vec!["OS".into(), m.os.clone()]);
        machine.row(vec!["rustc".into(), m.rustc.clone()]);
        machine.row(vec!["load average at start (1 min)".into(), m.load_average.clone()]);
        machine.row(vec!["date".into(), m.date.clone()]);
        machine.row(vec!["duration of the run".into(), format!("{:.0} s", self.total_secs)]);
        machine.render(&mut out);
        out.push('\n');

        out.push_str("## Targets\n\n");
        self.targets_table().render(&mut out);
        out.push('\n');

        for section in &self.sections {
            let _ = writeln!(out, "## {}\n", section.title);
            for p in &section.intro {
                let _ = writeln!(out, "{p}\n");
            }
            section.table.render(&mut out);
            out.push('\n');
            for n in &section.notes {
                let _ = writeln!(out, "- {n}");
            }
            if !section.notes.is_empty() {
                out.push('\n');
            }
        }
        out
    }
}
