//! Programs behind `cargo xtask bench`, one binary with subcommands so a single build serves every
//! process of the benchmark:
//!
//! - `upstream fast|slow|mixed|faulty`: the upstreams the proxies call;
//! - `bare-proxy URL`: the minimal hyper reverse proxy (the physical limit for a proxy here);
//! - `naive-retry-proxy URL`: a proxy retrying every failure with plain `tower::retry`;
//! - `soak [--secs N] [--gateway PATH] [--out FILE]`: 10x overload for N seconds, memory, file
//!   descriptors and tasks sampled; fails unless they stay flat;
//! - `run [--quick] [--gateway PATH] [--debug-gateway PATH] [--benchmarks FILE] [--out FILE]`:
//!   runs the whole benchmark and writes markdown, instructions per request included (callgrind;
//!   `--quick` checks them against the figures recorded in FILE);
//!   with nginx installed it also starts nginx (module `nginx`) as the peer proxy and as a
//!   third-party upstream.
//!
//! - `instructions [--gateway PATH] [--keep DIR]`: only the instructions-per-request table
//!   (callgrind), printed; `--keep` keeps callgrind's files for `callgrind_annotate`;
//! - `latency [--gateway PATH] [--rate N] [--secs N] [--rounds N] [--flags LIST]`: only the
//!   fixed-rate latency, flags off against flags on, printed;
//!
//! Every server binds 127.0.0.1 on port 0 and prints `listening on http://ADDR` on stdout.

mod flags;
mod instructions;
mod latency;
mod load;
mod nginx;
mod process;
mod proxy;
mod run;
mod soak;
mod upstream;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let result = match arg(0) {
        Some("upstream") => upstream::main(arg(1).unwrap_or("fast")),
        Some("bare-proxy") => proxy::main(arg(1), false),
        Some("naive-retry-proxy") => proxy::main(arg(1), true),
        Some("run") => run::main(&args[1..]),
        Some("soak") => soak::main(&args[1..]),
        Some("instructions") => instructions::main(&args[1..]),
        Some("latency") => latency::main(&args[1..]),
        _ => Err(
            "usage: xtask-bench upstream fast|slow|mixed|faulty | bare-proxy URL | \
                  naive-retry-proxy URL | soak [--secs N] [--gateway PATH] [--out FILE] | \
                  instructions [--gateway PATH] [--keep DIR] | \
                  latency [--gateway PATH] [--rate N] [--secs N] [--rounds N] [--flags LIST] | \
                  run [--quick] [--gateway PATH] [--out FILE]"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the bound address the way the gateway does, so one reader serves every child.
pub(crate) fn announce(addr: std::net::SocketAddr) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();
}
