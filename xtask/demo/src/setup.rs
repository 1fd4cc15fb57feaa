//! What both demos share (`cargo xtask demo`, `demo --worker`): their options, the child
//! processes they start and stop, and reading the address a child says it listens on.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

pub(crate) struct Options {
    pub(crate) duration: Duration,
    pub(crate) wait: bool,
    pub(crate) release: bool,
    /// `--worker`: the Worker example over NATS instead of the gateway (`worker_demo`).
    pub(crate) worker: bool,
}

pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        duration: Duration::from_secs(20),
        wait: true,
        release: false,
        worker: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                let value = args.next().ok_or("--duration needs a number of seconds")?;
                let secs: u64 = value
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or_else(|| format!("--duration: `{value}` is not 1 to 3600 seconds"))?;
                options.duration = Duration::from_secs(secs);
            }
            "--no-wait" => options.wait = false,
            "--release" => options.release = true,
            "--worker" => options.worker = true,
            other => {
                return Err(format!(
                    "demo: unknown argument `{other}` (use --worker, --duration SECS, --no-wait, \
                     --release)"
                ));
            }
        }
    }
    Ok(options)
}

/// Kills a child (the gateway, the worker, nats-server) by PID when the demo ends or fails.
pub(crate) struct ChildProcess(pub(crate) Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The address in the `listening on http://ADDR` line `child` (`what`) prints when ready.
pub(crate) fn listening_addr(child: &mut Child, what: &str) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| format!("the {what} did not print its address within 30 s"))?;
    addr.parse()
        .map_err(|_| format!("unexpected address `{addr}`"))
}
