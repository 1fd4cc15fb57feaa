//! Shared test helpers: an SDK provider with an in-memory exporter, a real axum
//! server on 127.0.0.1:0, and a hyper-util client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

pub(crate) struct TestMetrics {
    pub provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

/// One data point: its attributes as strings, and count/sum (histograms) or value (sums).
#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub attrs: BTreeMap<String, String>,
    pub count: u64,
    pub sum: f64,
}

impl Point {
    pub(crate) fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

impl TestMetrics {
    pub(crate) fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Self { provider, exporter }
    }

    pub(crate) fn meter(&self) -> Meter {
        self.provider.meter("test")
    }

    /// All points of metric `name` in the latest (cumulative) export.
    pub(crate) fn points(&self, name: &str) -> Vec<Point> {
        self.exporter.reset();
        self.provider.force_flush().expect("flush");
        let all = self.exporter.get_finished_metrics().expect("metrics");
        let Some(last) = all.last() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for sm in last.scope_metrics() {
            for m in sm.metrics().filter(|m| m.name() == name) {
                collect(m.data(), &mut out);
            }
        }
        out
    }

    /// Points of `name` whose attributes include all of `want`.
    pub(crate) fn matching(&self, name: &str, want: &[(&str, &str)]) -> Vec<Point> {
        self.points(name)
            .into_iter()
            .filter(|p| want.iter().all(|(k, v)| p.attr(k) == Some(v)))
            .collect()
    }

    /// Sum of `http.server.active_requests`-style sums over all points.
    pub(crate) fn sum_total(&self, name: &str) -> f64 {
        self.points(name).iter().map(|p| p.sum).sum()
    }

    /// Waits (bounded) until the total of sum metric `name` equals `want`.
    pub(crate) async fn wait_for_total(&self, name: &str, want: f64) -> f64 {
        let mut got = self.sum_total(name);
        for _ in 0..200 {
            if got == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            got = self.sum_total(name);
        }
        got
    }
}

fn attrs<'a>(it: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> BTreeMap<String, String> {
    it.map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().into_owned()))
        .collect()
}

fn collect(data: &AggregatedMetrics, out: &mut Vec<Point>) {
    macro_rules! points {
        ($d:expr) => {
            match $d {
                MetricData::Histogram(h) => {
                    for p in h.data_points() {
                        out.push(Point {
                            attrs: attrs(p.attributes()),
                            count: p.count(),
                            sum: p.sum() as f64,
                        });
                    }
                }
                MetricData::Sum(s) => {
                    for p in s.data_points() {
                        out.push(Point {
                            attrs: attrs(p.attributes()),
                            count: 0,
                            sum: p.value() as f64,
                        });
                    }
                }
                _ => {}
            }
        };
    }
    match data {
        AggregatedMetrics::F64(d) => points!(d),
        AggregatedMetrics::U64(d) => points!(d),
        AggregatedMetrics::I64(d) => points!(d),
    }
}

/// Serves `app` on 127.0.0.1 port 0 and returns its address.
pub(crate) async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

pub(crate) type TestClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and reads the whole response; returns status and body.
pub(crate) async fn send(client: &TestClient, method: &str, uri: String) -> (u16, Bytes) {
    send_with(client, method, uri, &[]).await
}

pub(crate) async fn send_with(
    client: &TestClient,
    method: &str,
    uri: String,
    headers: &[(&str, &str)],
) -> (u16, Bytes) {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}
