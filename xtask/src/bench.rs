//! `cargo xtask bench [--quick]`: what the whole stack costs, in one run.
//!
//! Full mode builds the gateway and the benchmark programs in release, runs the system benchmark
//! (throughput over two upstreams against nginx, latency at a fixed rate, overload, retry
//! efficiency), then every crate's criterion benchmarks in criterion's
//! quick mode, and regenerates `BENCHMARKS.md`. `--quick` is CI's smoke run: debug builds, short
//! phases, criterion benchmarks run once each as tests, output in `target/bench-quick.md`; it
//! fails if the gateway's instructions per request (callgrind, flags off and all on) grew by
//! more than 10% over the figures `BENCHMARKS.md` records.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use crate::step;

const CRATES: [&str; 4] = [
    "tower-deadline",
    "tower-retry-classified",
    "tower-bounded-queue",
    "tower-metrics-layer",
];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let quick = match args.first().map(String::as_str) {
        None => false,
        Some("--quick") => true,
        Some(other) => return Err(format!("`bench` takes only --quick, got `{other}`")),
    };
    let cargo = crate::cargo();
    let target = target_dir();
    let (profile_args, profile_dir): (&[&str], &str) = if quick {
        (&[], "debug")
    } else {
        (&["--release"], "release")
    };
    let mut build = vec!["build", "-p", "gateway", "-p", "xtask-bench"];
    build.extend_from_slice(profile_args);
    step("bench: build", &cargo, &build, &[])?;

    let bin = format!("{target}/{profile_dir}");
    let system_md = format!("{target}/bench-system.md");
    let mut run = vec![
        "run".to_string(),
        "--gateway".into(),
        format!("{bin}/gateway"),
    ];
    run.extend(["--out".to_string(), system_md.clone()]);
    if quick {
        // The instruction guard reads the figures the last full run recorded.
        run.extend([
            "--quick".into(),
            "--benchmarks".into(),
            "BENCHMARKS.md".into(),
        ]);
    } else {
        // A debug build too: the guard's figures are counted on the build CI runs.
        step(
            "bench: build (debug)",
            &cargo,
            &["build", "-p", "gateway"],
            &[],
        )?;
        run.extend([
            "--debug-gateway".to_string(),
            format!("{target}/debug/gateway"),
        ]);
    }
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    step("bench: system", &format!("{bin}/xtask-bench"), &run, &[])?;
    let system = std::fs::read_to_string(&system_md).map_err(|e| format!("{system_md}: {e}"))?;

    if quick {
        // Each criterion benchmark once, as a test: proves they still build and run.
        let mut test = vec!["test", "--all-features", "--benches"];
        for krate in CRATES {
            test.extend(["-p", krate]);
        }
        step("bench: criterion smoke", &cargo, &test, &[])?;
        step(
            "bench: grpc smoke",
            &cargo,
            &["test", "-p", "grpc-example", "--benches"],
            &[],
        )?;
        let soak_md = format!("{target}/soak-quick.md");
        let gateway = format!("{bin}/gateway");
        step(
            "bench: soak smoke (30 s)",
            &format!("{bin}/xtask-bench"),
            &[
                "soak",
                "--secs",
                "30",
                "--gateway",
                &gateway,
                "--out",
                &soak_md,
            ],
            &[],
        )?;
        let out = format!("{target}/bench-quick.md");
        std::fs::write(&out, document(&system, None, "cargo xtask bench --quick"))
            .map_err(|e| format!("{out}: {e}"))?;
        println!("xtask: quick benchmark written to {out}");
        return Ok(());
    }

    let mut criterion_output = String::new();
    for krate in CRATES {
        eprintln!("xtask: criterion (quick mode) for {krate}");
        let output = bench_stdout(
            &cargo,
            &[
                "bench",
                "--all-features",
                "-p",
                krate,
                // Bench targets only: the libraries' own test harness knows no `--quick`.
                "--bench",
                "*",
                "--",
                "--quick",
                "--noplot",
            ],
        )?;
        let _ = writeln!(criterion_output, "### {krate}\n");
        criterion_output.push_str(&criterion_table(&output));
    }
    let table = criterion_output;
    eprintln!("xtask: gRPC unary calls through examples/grpc");
    let output = bench_stdout(&cargo, &["bench", "-p", "grpc-example", "--bench", "unary"])?;
    let grpc = format!(
        "## 6. gRPC: unary calls through examples/grpc\n\n\
         tonic client -> edge -> backend in one process on loopback, one HTTP/2 connection from \
         the client, 32 calls in flight, 5 s per run, 3 runs alternating; medians \
         (`cargo bench -p grpc-example`).\n\n{}\n",
        output.trim_end()
    );
    // Kept from the current file, not rerun: the soak (`cargo xtask soak`, minutes long) and
    // the before/after comparisons of past changes (each measured once, against its parent).
    let current = std::fs::read_to_string("BENCHMARKS.md").unwrap_or_default();
    let kept: String = [crate::soak::HEADING, BEFORE_AND_AFTER]
        .iter()
        .filter_map(|heading| crate::soak::section_of(&current, heading))
        .map(|s| format!("\n{}\n", s.trim_end()))
        .collect();
    eprintln!("xtask: jobs through examples/worker (needs nats-server)");
    let output = bench_stdout(&cargo, &["bench", "-p", "worker", "--bench", "jobs"])?;
    let worker = format!(
        "\n## 9. Worker: jobs through examples/worker\n\n\
         Bench client, nats-server and the worker (release) share the 2 cores; trivial jobs are one \
         `sleep 0` step with 64 in flight, best of 2 x 5 s per side; the paced row sends 200 jobs/s \
         for 10 s (`cargo bench -p worker --bench jobs`).\n\n{}\n",
        output.trim_end()
    );
    let table = format!("{table}{grpc}{kept}{worker}");
    std::fs::write(
        "BENCHMARKS.md",
        document(&system, Some(&table), "cargo xtask bench"),
    )
    .map_err(|e| format!("BENCHMARKS.md: {e}"))?;
    println!("xtask: BENCHMARKS.md regenerated");
    Ok(())
}

/// What `cargo ARGS` printed on stdout; its stderr in the error if it failed.
fn bench_stdout(cargo: &str, args: &[&str]) -> Result<String, String> {
    let what = format!("cargo {}", args.join(" "));
    let output = Command::new(cargo)
        .args(args)
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Hand-made before/after comparisons of changes to a hot path, kept across regenerations.
const BEFORE_AND_AFTER: &str = "## 8. Before and after";

fn target_dir() -> String {
    std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_string())
}

fn document(system: &str, criterion: Option<&str>, command: &str) -> String {
    let mut md = String::from("# Benchmarks\n\n");
    let _ = writeln!(md, "Generated by `{command}` on {}.\n", machine());
    md.push_str(
        "All processes run on this one machine over loopback, so the load generator, the proxy \
         under test and the upstream share its cores: compare rows of one run, not runs of \
         different machines.\n\n",
    );
    md.push_str(system);
    if let Some(table) = criterion {
        md.push_str("## 5. Per-crate criterion benchmarks (quick mode)\n\n");
        md.push_str(
            "Time per call, median estimate; `x bare` divides by the group's bare inner service \
             (`bare` or `bare_service`) when the group has one. Each crate's README and \
             bench file explain its rows; the tower equivalents are the `tower_*` and `load_shed_*` \
             rows.\n\n",
        );
        md.push_str(table);
    }
    md
}

/// Cores, memory, rustc and the date, read from this machine.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("? GiB".to_string(), |kib| {
            format!("{:.0} GiB", kib as f64 / 1048576.0)
        });
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{date}, {cores} cores, {memory}, {rustc}")
}

/// Turns criterion's `name\n time: [low median high]` output into one table per group.
fn criterion_table(output: &str) -> String {
    let mut groups: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in output.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.split("time:").nth(1) {
            let (Some(full), Some(ns)) = (
                name.take()
                    .or_else(|| trimmed.split("time:").next().map(|n| n.trim().to_string())),
                median_ns(rest),
            ) else {
                continue;
            };
            let (group, bench) = full.rsplit_once('/').unwrap_or(("", full.as_str()));
            groups
                .entry(group.to_string())
                .or_default()
                .push((bench.to_string(), ns));
        } else if !trimmed.is_empty() && !line.starts_with(' ') && !trimmed.contains(':') {
            name = Some(trimmed.to_string());
        }
    }
    let mut md = String::new();
    for (group, rows) in groups {
        let bare = rows
            .iter()
            .find(|(n, _)| matches!(n.as_str(), "bare" | "bare_service"))
            .map(|(_, ns)| *ns);
        let group = if group.is_empty() {
            "(ungrouped)"
        } else {
            group.as_str()
        };
        let _ = writeln!(
            md,
            "**{group}**\n\n| benchmark | time | x bare |\n|---|---|---|"
        );
        for (bench, ns) in rows {
            let ratio = bare.map_or("-".to_string(), |b| format!("{:.2}", ns / b));
            let _ = writeln!(md, "| {bench} | {} | {ratio} |", human(ns));
        }
        md.push('\n');
    }
    md
}

fn median_ns(text: &str) -> Option<f64> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let (value, unit) = (parts.get(2)?.parse::<f64>().ok()?, *parts.get(3)?);
    let factor = match unit {
        "ps" => 0.001,
        "ns" => 1.0,
        "µs" | "us" => 1_000.0,
        "ms" => 1_000_000.0,
        "s" => 1_000_000_000.0,
        _ => return None,
    };
    Some(value * factor)
}

fn human(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criterion_output_into_group_tables() {
        let output = "deadline/sequential/bare\n                        time:   [18.2 ns 20.0 ns 21.1 ns]\n\
                      deadline/sequential/tower_timeout\n                        time:   [71.0 ns 80.0 ns 79.6 ns]\n\
                      render/metrics_1000_series time:   [1.5 ms 2.5 ms 3.0 ms]\n";
        let table = criterion_table(output);
        assert!(table.contains("**deadline/sequential**"), "{table}");
        assert!(
            table.contains("| tower_timeout | 80.0 ns | 4.00 |"),
            "{table}"
        );
        assert!(
            table.contains("| metrics_1000_series | 2.50 ms | - |"),
            "{table}"
        );
    }
}
