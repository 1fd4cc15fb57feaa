//! Real servers and clients on 127.0.0.1 for the integration tests.

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_deadline::ConnectDeadline;

/// Serves `app` on a fresh loopback port.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A loopback address whose accept queue is full: further connects get no answer.
pub(crate) fn black_hole() -> (std::net::SocketAddr, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Never accepted; leaked so the listener stays open for the test's lifetime.
    std::mem::forget(listener);
    let mut filled = Vec::new();
    for _ in 0..64 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            Ok(stream) => filled.push(stream),
            Err(_) => return (addr, filled),
        }
    }
    panic!("the accept queue never filled up");
}

pub(crate) type HttpClient = Client<ConnectDeadline<HttpConnector>, Body>;

/// An HTTP/1.1 client whose connects are bounded by the deadline.
pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(ConnectDeadline::new(HttpConnector::new()))
}

/// An HTTP/2 (prior knowledge) client, as gRPC uses.
pub(crate) fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(ConnectDeadline::new(HttpConnector::new()))
}

/// An SDK meter provider exporting to memory, for asserting on recorded metrics.
pub(crate) struct TestMetrics {
    pub provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    exporter: opentelemetry_sdk::metrics::InMemoryMetricExporter,
}

impl TestMetrics {
    pub(crate) fn new() -> Self {
        let exporter = opentelemetry_sdk::metrics::InMemoryMetricExporter::default();
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter.clone()).build();
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(reader)
            .build();
        Self { provider, exporter }
    }

    pub(crate) fn meter(&self) -> opentelemetry::metrics::Meter {
        use opentelemetry::metrics::MeterProvider;
        self.provider.meter("test")
    }

    /// The current value of a u64 counter for data points carrying `attribute` (or all points).
    pub(crate) fn counter(&self, name: &str, attribute: Option<(&str, &str)>) -> u64 {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        self.provider.force_flush().unwrap();
        let batches = self.exporter.get_finished_metrics().unwrap();
        let Some(last) = batches.last() else { return 0 };
        let mut total = 0;
        for scope in last.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() {
                    for point in sum.data_points() {
                        let matches = attribute.is_none_or(|(k, v)| {
                            point
                                .attributes()
                                .any(|kv| kv.key.as_str() == k && kv.value.as_str() == v)
                        });
                        if matches {
                            total += point.value();
                        }
                    }
                }
            }
        }
        total
    }
}
