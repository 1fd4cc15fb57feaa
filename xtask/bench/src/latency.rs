//! `latency [--gateway PATH] [--rate N] [--secs N] [--rounds N] [--flags LIST]`: only the
//! fixed-rate latency of the gateway, flags off against a set of flags on (all by default), in
//! alternating rounds over the bench's own upstream; printed, not written to `BENCHMARKS.md`.
//!
//! For finding where a configuration's tail latency comes from: `--flags` takes a comma-separated
//! list of flag names (`CP2_...`), and the gateway inherits this process's environment, so any
//! other `GATEWAY_*` setting can be varied from the shell.

use std::path::PathBuf;
use std::time::Duration;

use crate::flags::{ALL_FLAGS, gateway_env};
use crate::load;
use crate::process::Server;

struct Options {
    gateway: PathBuf,
    rate: u32,
    secs: u64,
    rounds: usize,
    flags: Vec<String>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut options = Options {
        gateway: me.with_file_name("gateway"),
        rate: 29_000,
        secs: 10,
        rounds: 2,
        flags: ALL_FLAGS.iter().map(|flag| flag.to_string()).collect(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--gateway" => options.gateway = PathBuf::from(value),
            "--rate" => options.rate = number()? as u32,
            "--secs" => options.secs = number()?,
            "--rounds" => options.rounds = number()? as usize,
            "--flags" => options.flags = value.split(',').map(str::to_string).collect(),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let options = options(args)?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let upstream = Server::start(&me, &["upstream", "fast"], &[])?;
        let url = format!("http://{}", upstream.addr);
        let on: Vec<&str> = options.flags.iter().map(String::as_str).collect();
        for round in 0..options.rounds {
            for (name, flags) in [("flags off", &[][..]), ("flags on", &on[..])] {
                let gateway = Server::start(&options.gateway, &[], &gateway_env(&url, flags, &[]))?;
                let run = load::warmed_fixed_rate(
                    gateway.addr,
                    "/v1/bench",
                    options.rate,
                    64,
                    Duration::from_secs(options.secs),
                )
                .await?;
                println!(
                    "round {round} {name}: {:.0} req/s, non-200 {}, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
                    run.per_second, run.non_200, run.p50_ms, run.p99_ms, run.p999_ms,
                );
            }
        }
        Ok(())
    })
}
