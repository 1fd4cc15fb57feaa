//! The child processes the benchmark starts, and how they stop: by PID, when their owner drops.
//!
//! Below both `run` (our own servers) and `nginx` (the peer proxy), which start children and
//! stop them the same way.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A child process serving on loopback, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// Reaped already: its PID may belong to another process now, so it gets no signal.
    reaped: bool,
}

impl Server {
    pub(crate) fn start(
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<Self, String> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("start {}: {e}", program.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (found, wait) = mpsc::channel();
        // Keeps reading after the address line so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = found.send(addr.trim().to_string());
                }
            }
        });
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reaped: false,
        };
        let addr = wait
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| format!("{} never said where it listens", program.display()))?;
        server.addr = addr
            .parse()
            .map_err(|e| format!("bad address {addr}: {e}"))?;
        Ok(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB, from /proc.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Server {
    /// SIGTERM, then waits up to `limit` for the process to end by itself (a program under
    /// valgrind needs longer than [`stop`] allows, and writes its counts only as it ends);
    /// whether it did. SIGKILL after that.
    pub(crate) fn terminate_within(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.reaped = true;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.reaped {
            stop(&mut self.child);
        }
    }
}

/// Stops a child we started, by its PID: SIGTERM (nginx's master takes its workers down with
/// it; the gateway drains, which is quick with no requests in flight), then SIGKILL if it is
/// still there after two seconds.
pub(crate) fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
