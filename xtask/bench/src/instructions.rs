//! Instructions per proxied request, counted by callgrind: a figure that does not move with
//! the machine's load, so a run on a busy CI machine can still catch a regression.
//!
//! The gateway runs under `valgrind --tool=callgrind` with one worker, against the bench's own
//! upstream. Two runs serve `FEW` and `MANY` requests, one at a time over one keep-alive
//! connection (two connections at once made the count vary by several hundred instructions from
//! run to run, with how their requests happened to interleave);
//! the difference of their totals over the difference of their requests is what one more
//! request costs, start-up, connection set-up and shutdown cancelling out.
//!
//! - [`table`] (full mode, release build): flags off, each flag alone and all on, and which
//!   functions the all-on requests spend their extra instructions in (`callgrind_annotate`).
//! - [`guard`] (`--quick`, CI's debug build): the count of b (flags off) and c (all on), checked
//!   against the figures `BENCHMARKS.md` records; more than 10% over fails the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::flags::{ALL_FLAGS, gateway_env};
use crate::load;
use crate::process::Server;

/// A configuration: its label and the flags it turns on.
type Config = (&'static str, &'static [&'static str]);

/// b and c of the throughput table.
pub(crate) const GUARDED: [Config; 2] = [
    ("b. gateway, flags off", &[]),
    ("c. gateway, all flags on", &ALL_FLAGS),
];

const CONFIGS: [Config; 6] = [
    ("flags off", &[]),
    ("retry only", &["CP2_ADVANCED_RETRY_ENABLED"]),
    ("deadline only", &["CP2_COMPLETE_TIMEOUT_ENABLED"]),
    ("queue only", &["CP2_QUEUE_MANAGEMENT_ENABLED"]),
    ("metrics only", &["CP2_OBSERVABILITY_METRICS_ENABLED"]),
    ("all flags on", &ALL_FLAGS),
];

/// The line of `BENCHMARKS.md` the guard reads its reference figures from.
pub(crate) const GUARD_LINE: &str = "Instruction guard (debug build, `cargo xtask bench --quick`):";

/// How much a guarded figure may grow over the recorded one.
const GUARD_TOLERANCE: f64 = 1.10;

/// One counted run: callgrind's total and its output file.
struct Counted {
    total: u64,
    file: PathBuf,
}

/// Requests of the two runs (few, many).
fn requests(debug: bool) -> (u64, u64) {
    if debug { (50, 250) } else { (200, 2200) }
}

/// Runs the gateway at `gateway` under callgrind with `flags` on, serves `count` requests from
/// `upstream`, and stops it; its total instruction count.
async fn counted(
    gateway: &Path,
    upstream: &str,
    flags: &[&str],
    count: u64,
    file: PathBuf,
) -> Result<Counted, String> {
    let _ = std::fs::remove_file(&file);
    let env = gateway_env(upstream, flags, &[("GATEWAY_WORKERS", "1".to_string())]);
    let out_arg = format!("--callgrind-out-file={}", file.display());
    let program = gateway.to_string_lossy().into_owned();
    let mut server = Server::start(
        Path::new("valgrind"),
        &["--tool=callgrind", "--quiet", &out_arg, &program],
        &env,
    )?;
    serve(server.addr, count).await?;
    if !server.terminate_within(Duration::from_secs(60)) {
        return Err("the gateway under callgrind did not stop within 60 s".into());
    }
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{}: no summary line", file.display()))?;
    Ok(Counted { total, file })
}

/// `count` requests, one at a time over one keep-alive connection.
async fn serve(addr: SocketAddr, count: u64) -> Result<(), String> {
    let mut sender = load::connect(addr).await?;
    for _ in 0..count {
        sender.ready().await.map_err(|e| e.to_string())?;
        let status =
            load::read_status(sender.send_request(load::request(addr, "/v1/x", None))).await;
        if status != 200 {
            return Err(format!("the gateway answered {status}"));
        }
    }
    Ok(())
}

/// Instructions per request of `flags` on, and the two runs' output files (few, many).
async fn per_request(
    gateway: &Path,
    upstream: &str,
    flags: &[&str],
    debug: bool,
    dir: &Path,
    tag: usize,
) -> Result<(f64, [PathBuf; 2]), String> {
    let (few, many) = requests(debug);
    let a = counted(
        gateway,
        upstream,
        flags,
        few,
        dir.join(format!("{tag}.few.out")),
    )
    .await?;
    let b = counted(
        gateway,
        upstream,
        flags,
        many,
        dir.join(format!("{tag}.many.out")),
    )
    .await?;
    let per = b.total.saturating_sub(a.total) as f64 / (many - few) as f64;
    Ok((per, [a.file, b.file]))
}

/// Exclusive instructions by function, from `callgrind_annotate`.
fn by_function(file: &Path) -> BTreeMap<String, u64> {
    let Ok(out) = Command::new("callgrind_annotate")
        .args(["--threshold=100", &file.to_string_lossy()])
        .output()
    else {
        return BTreeMap::new();
    };
    let mut functions = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim_start();
        let Some((count, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        // `(12.34%)  file:function [object]`
        let Some(rest) = rest
            .trim_start()
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
        else {
            continue;
        };
        let name = rest.1.trim();
        let name = name.rsplit_once(" [").map_or(name, |(n, _)| n);
        let name = name.split_once(':').map_or(name, |(_, f)| f);
        *functions.entry(name.to_string()).or_default() += count;
    }
    functions
}

/// What each function costs per request: its exclusive count in the many-request run minus the
/// few-request run, over the requests between.
fn function_costs(files: &[PathBuf; 2], debug: bool) -> BTreeMap<String, f64> {
    let (few, many) = requests(debug);
    let (a, b) = (by_function(&files[0]), by_function(&files[1]));
    b.iter()
        .map(|(name, count)| {
            let base = a.get(name).copied().unwrap_or(0);
            (
                name.clone(),
                count.saturating_sub(base) as f64 / (many - few) as f64,
            )
        })
        .collect()
}

/// Full mode: the table of every configuration, and the attribution of all-on's extra cost.
pub(crate) async fn table(
    gateway: &Path,
    upstream: &str,
    keep: Option<&Path>,
    md: &mut String,
) -> Result<(), String> {
    let dir = keep.map_or_else(
        || std::env::temp_dir().join(format!("xtask-bench-callgrind-{}", std::process::id())),
        Path::to_path_buf,
    );
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut files = Vec::new();
    for (tag, (label, flags)) in CONFIGS.into_iter().enumerate() {
        eprintln!("bench: instructions, {label}");
        let (per, run_files) = per_request(gateway, upstream, flags, false, &dir, tag).await?;
        rows.push((label, per));
        files.push(run_files);
    }
    let _ = writeln!(
        md,
        "\n### Instructions per request\n\nUserland instructions the gateway runs per proxied request (callgrind; one worker; two runs of {} and {} requests, one at a time over one keep-alive connection, their difference over the requests between, so start-up and shutdown cancel out). A count, not a time: it does not move with the machine's load.\n\n| configuration | instructions/request | over flags off |\n|---|---|---|",
        requests(false).0,
        requests(false).1
    );
    let off = rows[0].1;
    for (label, per) in &rows {
        let _ = writeln!(md, "| {label} | {per:.0} | {:+.0} |", per - off);
    }
    let (off_costs, on_costs) = (
        function_costs(&files[0], false),
        function_costs(&files[5], false),
    );
    let mut extra: Vec<(f64, &String)> = on_costs
        .iter()
        .map(|(name, cost)| (cost - off_costs.get(name).copied().unwrap_or(0.0), name))
        .filter(|(d, _)| d.abs() >= 50.0)
        .collect();
    extra.sort_by(|a, b| b.0.total_cmp(&a.0));
    let _ = writeln!(
        md,
        "\nWhere all flags on spend their {:.0} extra instructions per request: each function's own (exclusive) instructions per request with all flags on minus flags off, the largest first (`callgrind_annotate`; inlining moves cost between names, so read families of functions together).\n\n| function | instructions/request |\n|---|---|",
        rows[5].1 - off
    );
    for (delta, name) in extra.iter().take(25) {
        let name = if name.len() > 140 { &name[..140] } else { name };
        let _ = writeln!(md, "| `{}` | {delta:+.0} |", name.replace('|', "\\|"));
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The guard's figures for the gateway at `gateway` (a debug build): b and c.
pub(crate) async fn guard_figures(gateway: &Path, upstream: &str) -> Result<[f64; 2], String> {
    let dir = std::env::temp_dir().join(format!("xtask-bench-guard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut figures = [0.0; 2];
    for (i, (label, flags)) in GUARDED.iter().enumerate() {
        eprintln!("bench: instruction guard, {label}");
        figures[i] = per_request(gateway, upstream, flags, true, &dir, i)
            .await?
            .0;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}

/// The guard's line, as `BENCHMARKS.md` records it.
pub(crate) fn guard_line(figures: [f64; 2]) -> String {
    format!(
        "{GUARD_LINE} b {:.0}, c {:.0} instructions/request.",
        figures[0], figures[1]
    )
}

/// The figures recorded in `benchmarks` (the text of `BENCHMARKS.md`), if any.
pub(crate) fn recorded(benchmarks: &str) -> Option<[f64; 2]> {
    let line = benchmarks
        .lines()
        .find_map(|l| l.strip_prefix(GUARD_LINE))?;
    let number = |key: &str| -> Option<f64> {
        let after = line.split_once(key)?.1.trim_start();
        after
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some([number(" b ")?, number(" c ")?])
}

/// Quick mode: measures b and c and fails if either grew by more than 10% over `recorded`.
pub(crate) async fn guard(
    gateway: &Path,
    upstream: &str,
    recorded_in: &Path,
    md: &mut String,
) -> Result<(), String> {
    let figures = guard_figures(gateway, upstream).await?;
    let text = std::fs::read_to_string(recorded_in).unwrap_or_default();
    let _ = writeln!(md, "\n### Instruction guard\n\n{}\n", guard_line(figures));
    let Some(reference) = recorded(&text) else {
        let _ = writeln!(
            md,
            "No recorded figures in {} to check against.",
            recorded_in.display()
        );
        eprintln!(
            "bench: no instruction guard figures in {}",
            recorded_in.display()
        );
        return Ok(());
    };
    let mut failures = Vec::new();
    for (i, (label, _)) in GUARDED.iter().enumerate() {
        let ratio = figures[i] / reference[i];
        let _ = writeln!(
            md,
            "- {label}: {:.0} against {:.0} recorded ({:+.1}%)",
            figures[i],
            reference[i],
            (ratio - 1.0) * 100.0
        );
        eprintln!(
            "bench: instructions/request, {label}: {:.0} (recorded {:.0}, {:+.1}%)",
            figures[i],
            reference[i],
            (ratio - 1.0) * 100.0
        );
        if ratio > GUARD_TOLERANCE {
            failures.push(format!(
                "{label}: {:.0} instructions/request, more than 10% over the {:.0} recorded in {}",
                figures[i],
                reference[i],
                recorded_in.display()
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// `instructions [--gateway PATH] [--keep DIR]`: the table alone, printed as markdown; with
/// `--keep`, callgrind's output files stay in DIR (`<n>.few.out`, `<n>.many.out`, `n` the
/// configuration's row, from 0) for `callgrind_annotate`.
pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut gateway = me.with_file_name("gateway");
    let mut keep = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().map(PathBuf::from);
        match (flag.as_str(), value) {
            ("--gateway", Some(path)) => gateway = path,
            ("--keep", Some(dir)) => keep = Some(dir),
            _ => return Err("usage: instructions [--gateway PATH] [--keep DIR]".into()),
        }
    }
    if let Some(dir) = &keep {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let markdown = runtime.block_on(async {
        let upstream = Server::start(&me, &["upstream", "fast"], &[])?;
        let mut markdown = String::new();
        table(
            &gateway,
            &format!("http://{}", upstream.addr),
            keep.as_deref(),
            &mut markdown,
        )
        .await?;
        Ok::<_, String>(markdown)
    })?;
    print!("{markdown}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_figures_read_back() {
        let text = format!("# Benchmarks\n\n{}\n", guard_line([123456.4, 234567.0]));
        assert_eq!(recorded(&text), Some([123456.0, 234567.0]));
        assert_eq!(recorded("nothing here"), None);
    }
}
