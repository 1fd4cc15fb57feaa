//! A real Prometheus server for tests (scraping one target every second, optionally evaluating
//! rule files every second), its HTTP query API, and a small JSON reader for its answers and for
//! Grafana dashboards (the gateway has no JSON dependency).
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus` package; `.ci/run` installs it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use http_body_util::BodyExt;

use super::TestClient;

/// A Prometheus server in a temporary directory; killed by PID and cleaned up on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub url: String,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) as job `job` every second, with
    /// `rule_files` evaluated every second, and waits until it is ready. Tries three ports, in
    /// case another process takes the one probed before Prometheus binds it.
    pub async fn start(
        client: &TestClient,
        job: &str,
        target: &str,
        rule_files: &[&Path],
    ) -> Prometheus {
        for _ in 0..3 {
            let mut prometheus = Prometheus::spawn(job, target, rule_files);
            if prometheus.ready(client, Duration::from_secs(15)).await {
                return prometheus;
            }
        }
        panic!("Prometheus did not become ready");
    }

    fn spawn(job: &str, target: &str, rule_files: &[&Path]) -> Prometheus {
        let binary = ["/usr/bin/prometheus", "prometheus"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect(
                "Prometheus is not installed: install Debian's `prometheus` package \
                 (apt-get install prometheus; .ci/run does)",
            );
        let dir = std::env::temp_dir().join(format!(
            "gateway-promql-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if !rule_files.is_empty() {
            config.push_str("rule_files:\n");
            for file in rule_files {
                let file = file.canonicalize().expect("the rule file exists");
                config.push_str(&format!("  - {:?}\n", file.display().to_string()));
            }
        }
        config.push_str(&format!(
            "scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ));
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until Prometheus answers `/-/ready`; false if it exited (say, its port was taken)
    /// or took longer than `limit`.
    async fn ready(&mut self, client: &TestClient, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if let Ok((StatusCode::OK, _)) = fetch(client, &format!("{}/-/ready", self.url)).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The result of an instant query (`data.result`), or Prometheus' error.
    pub async fn query(&self, client: &TestClient, promql: &str) -> Result<Json, String> {
        let url = format!("{}/api/v1/query?query={}", self.url, percent_encode(promql));
        let (status, body) = fetch(client, &url).await?;
        let answer = Json::parse(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        if answer.get("status").and_then(Json::as_str) != Some("success") {
            return Err(format!("{status}: {body}"));
        }
        answer
            .get("data")
            .and_then(|d| d.get("result"))
            .cloned()
            .ok_or_else(|| format!("no data.result: {body}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fetch(client: &TestClient, url: &str) -> Result<(StatusCode, String), String> {
    let request = http::Request::get(url)
        .body(Default::default())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer within 5 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A JSON value. Objects keep their keys in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut parser = Parser {
            text: text.as_bytes(),
            at: 0,
        };
        let value = parser.value()?;
        parser.space();
        if parser.at != text.len() {
            return Err(format!("trailing characters at byte {}", parser.at));
        }
        Ok(value)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements of an array; empty for anything else.
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            _ => &[],
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn error<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.at))
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.text[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            self.error("unexpected token")
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.space();
        match self.text.get(self.at) {
            None => self.error("unexpected end"),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.text.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.space();
                    match self.text.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return self.error("expected , or ]"),
                    }
                }
            }
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.space();
                if self.text.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    self.space();
                    if self.text.get(self.at) != Some(&b'"') {
                        return self.error("expected a key");
                    }
                    let key = self.string()?;
                    self.space();
                    if self.text.get(self.at) != Some(&b':') {
                        return self.error("expected :");
                    }
                    self.at += 1;
                    members.push((key, self.value()?));
                    self.space();
                    match self.text.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(members));
                        }
                        _ => return self.error("expected , or }"),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while self
                    .text
                    .get(self.at)
                    .is_some_and(|b| b"+-.eE0123456789".contains(b))
                {
                    self.at += 1;
                }
                let number = std::str::from_utf8(&self.text[start..self.at]).unwrap();
                number
                    .parse()
                    .map(Json::Number)
                    .or_else(|_| self.error("bad number"))
            }
            Some(_) => self.error("unexpected character"),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        match digits {
            Some(code) => {
                self.at += 4;
                Ok(code)
            }
            None => self.error("bad \\u escape"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1; // the opening quote
        let mut bytes = Vec::new();
        loop {
            let Some(&byte) = self.text.get(self.at) else {
                return self.error("unterminated string");
            };
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(bytes).or_else(|_| self.error("bad UTF-8")),
                b'\\' => {
                    let Some(&escape) = self.text.get(self.at) else {
                        return self.error("unterminated escape");
                    };
                    self.at += 1;
                    let decoded = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code)
                                && self.text[self.at..].starts_with(b"\\u")
                            {
                                self.at += 2;
                                let low = self.hex4()?;
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            }
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return self.error("bad escape"),
                    };
                    let mut buffer = [0; 4];
                    bytes.extend_from_slice(decoded.encode_utf8(&mut buffer).as_bytes());
                }
                _ => bytes.push(byte),
            }
        }
    }
}
