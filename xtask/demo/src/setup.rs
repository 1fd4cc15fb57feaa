//! What both demos share (`xtask-demo gateway`, `xtask-demo worker`): their options, the child
//! processes they start and stop, reading the address a child says it listens on, and the HTTP
//! client that drives load and scrapes `/metrics` (the cardinality check's too).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A demo's options: `[--duration SECS] [--no-wait] [--release]`.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub duration: Duration,
    /// Keeps the demo's server running after the summary, until Ctrl-C.
    pub wait: bool,
    /// Runs the release build of the gateway or worker.
    pub release: bool,
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        duration: Duration::from_secs(20),
        wait: true,
        release: false,
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
            other => {
                return Err(format!(
                    "demo: unknown argument `{other}` (use --duration SECS, --no-wait, --release)"
                ));
            }
        }
    }
    Ok(options)
}

/// The `name` binary of the same target directory as this one, in the release or debug
/// profile: xtask builds it in the same cargo invocation as `xtask-demo`.
pub fn sibling_binary(name: &str, release: bool) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where is xtask-demo? {e}"))?;
    let target = exe
        .parent()
        .and_then(|profile| profile.parent())
        .ok_or_else(|| format!("{} is not in a target directory", exe.display()))?;
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}

/// Kills a child (the gateway, the worker, nats-server) by PID when the demo ends or fails.
#[derive(Debug)]
pub struct ChildProcess(pub Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The address in the `listening on http://ADDR` line `child` (`what`) prints when ready.
pub fn listening_addr(child: &mut Child, what: &str) -> Result<SocketAddr, String> {
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

/// The tokio runtime a demo or the check runs its clients on.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))
}

/// Keep-alive HTTP/1.1 connections, pooled per host.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// How long one request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends `request`: (status, body), or what went wrong and whether it was the connect.
pub async fn exchange(
    client: &HttpClient,
    request: Request<Empty<Bytes>>,
) -> Result<(u16, Bytes), (String, bool)> {
    let response = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| (e.to_string(), e.is_connect()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| (e.to_string(), false))?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, response)
        .await
        .map_err(|_| (format!("no answer within {REQUEST_TIMEOUT:?}"), false))?
}

/// A whole GET of `url` (`http://host:port/path`), answered 200, as text.
pub async fn http_get(client: &HttpClient, url: &str) -> Result<String, String> {
    let request = Request::get(url)
        .body(Empty::new())
        .map_err(|e| format!("`{url}`: {e}"))?;
    let (status, body) = exchange(client, request).await.map_err(|(e, _)| e)?;
    if status != 200 {
        let path = url
            .parse::<http::Uri>()
            .map_or_else(|_| url.to_string(), |uri| uri.path().to_string());
        return Err(format!("{path} answered {status}"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
