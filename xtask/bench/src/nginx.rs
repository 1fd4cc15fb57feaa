//! nginx, the peer users would pick instead of the gateway, in two roles:
//!
//! - a reverse proxy (`proxy`): one worker per core with its own listening socket (`reuseport`),
//!   HTTP/1.1 to the upstream over kept-alive connections: nginx's usual fast configuration;
//! - a third-party upstream (`upstream`): one worker answering `return 200 "ok"` (the same two
//!   bytes as the bench's own upstream), so the proxies are also measured over an upstream we
//!   did not write.
//!
//! Each instance gets a generated config in a fresh directory, listens on a port that was free
//! a moment earlier (nginx cannot take port 0), and is stopped by its PID when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// nginx on the PATH or where Debian's package puts it (`/usr/sbin`, often not on a user's PATH).
pub(crate) fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nginx");
        debian.is_file().then_some(debian)
    })
}

/// A running nginx; stopped (by PID) when dropped, its directory removed.
pub(crate) struct Nginx {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
}

/// What one instance does.
pub(crate) enum Role {
    /// Reverse proxy to `upstream` with `workers` worker processes.
    Proxy {
        upstream: SocketAddr,
        workers: usize,
    },
    /// A static upstream answering 200 `ok` to every request.
    Upstream,
}

impl Nginx {
    pub(crate) fn start(nginx: &Path, role: Role) -> Result<Self, String> {
        static INSTANCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let instance = INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "xtask-bench-nginx-{}-{instance}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let addr = free_port()?;
        let config = config(&dir, addr, &role);
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).map_err(|e| format!("{}: {e}", dir.display()))?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config_path)
            // Before reading the config nginx opens its compiled-in error log, which only root
            // may write; point it here instead.
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", nginx.display()))?;
        let mut nginx = Self { child, addr, dir };
        nginx.wait_until_listening()?;
        Ok(nginx)
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited at start ({status}):\n{log}"));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("nginx never listened on {}", self.addr))
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The master's PID (its workers are its children).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        crate::process::stop(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<SocketAddr, String> {
    let probe = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    probe.local_addr().map_err(|e| e.to_string())
}

fn config(dir: &Path, addr: SocketAddr, role: &Role) -> String {
    let dir = dir.display();
    // Temporary files only matter for large bodies; they live here so no system path is needed.
    let common = format!(
        "daemon off;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n"
    );
    let http_common = format!(
        "access_log off;\n  \
         client_body_temp_path {dir}/body;\n  \
         proxy_temp_path {dir}/proxy;\n  \
         fastcgi_temp_path {dir}/fastcgi;\n  \
         uwsgi_temp_path {dir}/uwsgi;\n  \
         scgi_temp_path {dir}/scgi;\n  \
         # Like the gateway: no limit on requests per kept-alive connection.\n  \
         keepalive_requests 1000000;\n"
    );
    match role {
        Role::Proxy { upstream, workers } => format!(
            "worker_processes {workers};\n\
             {common}\
             http {{\n  {http_common}  \
             upstream backend {{ server {upstream}; keepalive 64; keepalive_requests 1000000; }}\n  \
             server {{\n    \
             listen {addr} reuseport;\n    \
             location / {{\n      \
             proxy_pass http://backend;\n      \
             proxy_http_version 1.1;\n      \
             proxy_set_header Connection \"\";\n    \
             }}\n  }}\n}}\n"
        ),
        Role::Upstream => format!(
            "worker_processes 1;\n\
             master_process off;\n\
             {common}\
             http {{\n  {http_common}  \
             server {{\n    \
             listen {addr};\n    \
             location / {{ return 200 \"ok\"; }}\n  }}\n}}\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_config_keeps_upstream_connections_alive() {
        let config = config(
            Path::new("/tmp/x"),
            "127.0.0.1:9000".parse().unwrap(),
            &Role::Proxy {
                upstream: "127.0.0.1:9001".parse().unwrap(),
                workers: 2,
            },
        );
        assert!(config.contains("worker_processes 2;"), "{config}");
        assert!(config.contains("server 127.0.0.1:9001; keepalive 64;"));
        assert!(config.contains("listen 127.0.0.1:9000 reuseport;"));
        assert!(config.contains("proxy_http_version 1.1;"));
        assert!(config.contains("proxy_set_header Connection \"\";"));
    }
}
