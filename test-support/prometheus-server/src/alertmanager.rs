//! A real Alertmanager for tests: one route to one webhook receiver, grouped and sent at once
//! (`group_wait` and `group_interval` 1 s), so that an alert Prometheus fires reaches the test
//! within seconds, as it would reach a pager.
//!
//! Needs `/usr/bin/prometheus-alertmanager` (Debian's `prometheus-alertmanager` package;
//! `.ci/run` installs it) or an `alertmanager` binary on the `PATH`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An Alertmanager in a temporary directory, listening on 127.0.0.1 without clustering; killed
/// by its PID and cleaned up on drop.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:PORT`, the target Prometheus sends alerts to.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Alertmanager {
    /// Starts Alertmanager sending every alert to `webhook` (a URL it POSTs its JSON to) and
    /// waits until it is ready. Alertmanager cannot listen on port 0, so this tries three ports,
    /// in case another process takes the one probed before Alertmanager binds it.
    pub async fn start(webhook: &str) -> Alertmanager {
        for _ in 0..3 {
            let mut alertmanager = Alertmanager::spawn(webhook);
            let url = format!("{}/-/ready", alertmanager.url);
            let limit = Duration::from_secs(15);
            if super::ready(&mut alertmanager.child, &alertmanager.client, &url, limit).await {
                return alertmanager;
            }
        }
        panic!("Alertmanager did not become ready");
    }

    fn spawn(webhook: &str) -> Alertmanager {
        let binary = [
            "/usr/bin/prometheus-alertmanager",
            "alertmanager",
            "prometheus-alertmanager",
        ]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect(
            "Alertmanager is not installed: install Debian's `prometheus-alertmanager` package \
             (apt-get install prometheus-alertmanager; .ci/run does)",
        );
        let dir = super::scratch_dir("alertmanager-test");
        std::fs::create_dir_all(dir.join("data")).expect("a temporary directory");
        std::fs::write(dir.join("alertmanager.yml"), config(webhook))
            .expect("write alertmanager.yml");
        let port = super::free_port();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no cluster gossip, so nothing listens beyond the one loopback port.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        Alertmanager {
            child,
            dir,
            addr: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The `alerting:` section of a Prometheus configuration that sends to this Alertmanager,
    /// for [`Prometheus::start_with`](crate::Prometheus::start_with).
    pub fn alerting_config(&self) -> String {
        format!(
            "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{}\"]\n",
            self.addr
        )
    }

    /// The alerts Alertmanager holds now (`GET /api/v2/alerts`, JSON): what it received, for a
    /// failing test's message.
    pub async fn alerts(&self) -> Result<(StatusCode, String), String> {
        super::get(&self.client, &format!("{}/api/v2/alerts", self.url)).await
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One route, one webhook receiver. Grouped by alert name and sent 1 s after the first alert
/// of a group arrives (and 1 s after a change), instead of the usual 30 s and 5 m, so that a
/// test waits for its alert, not for batching; repeated only after an hour, longer than any
/// test runs.
fn config(webhook: &str) -> String {
    format!(
        "route:\n  receiver: webhook\n  group_by: [alertname]\n  group_wait: 1s\n  \
         group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: webhook\n    webhook_configs:\n      - url: {webhook:?}\n"
    )
}
