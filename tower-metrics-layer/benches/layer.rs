//! Per-request cost: our layer vs a hand-written recording of the same histogram
//! through the stable OpenTelemetry API vs the bare service, with an SDK provider
//! (ManualReader) installed.
//!
//! cargo bench -p tower-metrics-layer --bench layer -- --warm-up-time 1 --measurement-time 3
//! (add `--features bound-instruments` for the bound-instrument cache)

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response, Uri};
use http_body_util::Empty;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use tower::{Layer, Service, service_fn};
use tower_metrics_layer::{DEFAULT_DURATION_BOUNDARIES, MetricsBuilder};

type Inner =
    tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<Empty<Bytes>>, Infallible>>>;

fn inner() -> Inner {
    fn handle(_req: Request<()>) -> Ready<Result<Response<Empty<Bytes>>, Infallible>> {
        ready(Ok(Response::new(Empty::new())))
    }
    service_fn(handle as fn(_) -> _)
}

/// Polls a future that is ready at once (all services here are synchronous).
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("benchmark services complete immediately"),
    }
}

fn request(uri: &Uri) -> Request<()> {
    let mut req = Request::new(());
    *req.uri_mut() = uri.clone();
    *req.method_mut() = Method::GET;
    req
}

/// What an application would write by hand: time the call, build the semconv
/// attributes, record on the histogram.
struct HandWritten {
    inner: Inner,
    histogram: Histogram<f64>,
}

impl HandWritten {
    fn call(&mut self, req: Request<()>) -> Response<Empty<Bytes>> {
        let start = Instant::now();
        let method = match *req.method() {
            Method::GET => "GET",
            Method::POST => "POST",
            _ => "_OTHER",
        };
        let version = match req.version() {
            http::Version::HTTP_11 => "1.1",
            http::Version::HTTP_2 => "2",
            _ => "1.0",
        };
        let res = run(self.inner.call(req)).unwrap();
        let attrs = [
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new(
                "http.response.status_code",
                i64::from(res.status().as_u16()),
            ),
            KeyValue::new("network.protocol.version", version),
            KeyValue::new("http.route", "/users/{id}"),
        ];
        self.histogram.record(start.elapsed().as_secs_f64(), &attrs);
        res
    }
}

/// The same recording as most hand-rolled middleware writes it: attribute values
/// taken from the request as owned strings (route from a matched-path string).
struct HandWrittenTypical {
    inner: Inner,
    histogram: Histogram<f64>,
    route: String,
}

impl HandWrittenTypical {
    fn call(&mut self, req: Request<()>) -> Response<Empty<Bytes>> {
        let start = Instant::now();
        let method = req.method().as_str().to_owned();
        let version = format!("{:?}", req.version());
        let route = self.route.clone();
        let res = run(self.inner.call(req)).unwrap();
        let attrs = [
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new(
                "http.response.status_code",
                i64::from(res.status().as_u16()),
            ),
            KeyValue::new("network.protocol.version", version),
            KeyValue::new("http.route", route),
        ];
        self.histogram.record(start.elapsed().as_secs_f64(), &attrs);
        res
    }
}

fn bench(c: &mut Criterion) {
    let provider = SdkMeterProvider::builder()
        .with_reader(ManualReader::builder().build())
        .build();
    let meter = provider.meter("bench");
    let uri: Uri = "/users/42".parse().unwrap();

    let mut g = c.benchmark_group("per_request");

    let mut bare = inner();
    g.bench_function("bare_service", |b| {
        b.iter(|| run(bare.call(request(&uri))).unwrap())
    });

    let mut hand = HandWritten {
        inner: inner(),
        histogram: meter
            .f64_histogram("hand.http.server.request.duration")
            .with_unit("s")
            .with_boundaries(DEFAULT_DURATION_BOUNDARIES.to_vec())
            .build(),
    };
    g.bench_function("hand_written_otel_stable_api", |b| {
        b.iter(|| hand.call(request(&uri)))
    });

    let mut typical = HandWrittenTypical {
        inner: inner(),
        histogram: meter
            .f64_histogram("typical.http.server.request.duration")
            .with_unit("s")
            .with_boundaries(DEFAULT_DURATION_BOUNDARIES.to_vec())
            .build(),
        route: String::from("/users/{id}"),
    };
    g.bench_function("hand_written_otel_stable_api_owned_strings", |b| {
        b.iter(|| typical.call(request(&uri)))
    });

    let layer = MetricsBuilder::http_server(&meter)
        .route_fn(|req| {
            req.uri()
                .path()
                .starts_with("/users/")
                .then_some("/users/{id}")
        })
        .build();
    let mut ours = layer.layer(inner());
    let name = if cfg!(feature = "bound-instruments") {
        "metrics_layer_bound_instruments"
    } else {
        "metrics_layer_stable_api"
    };
    g.bench_function(name, |b| b.iter(|| run(ours.call(request(&uri))).unwrap()));

    let layer = MetricsBuilder::http_server(&meter)
        .route_fn(|req| {
            req.uri()
                .path()
                .starts_with("/users/")
                .then_some("/users/{id}")
        })
        .active_requests(true)
        .body_size(true)
        .build();
    let mut full = layer.layer(inner());
    g.bench_function(format!("{name}_active_and_body_size"), |b| {
        b.iter(|| {
            let res = run(full.call(request(&uri))).unwrap();
            drop(res); // finishes the body: active count and body size
        })
    });

    // The least any layer recording the latency histogram can cost: two clock reads around the
    // call and one record on a histogram already bound to its attributes (nothing looked up,
    // nothing built). Kept beside the rows above to show what a ratio to (a) can reach.
    #[cfg(feature = "bound-instruments")]
    {
        let attrs = [
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("http.response.status_code", 200_i64),
            KeyValue::new("network.protocol.version", "1.1"),
            KeyValue::new("http.route", "/users/{id}"),
        ];
        let bound = meter
            .f64_histogram("floor.http.server.request.duration")
            .with_unit("s")
            .with_boundaries(DEFAULT_DURATION_BOUNDARIES.to_vec())
            .build()
            .bind(&attrs);
        let mut bare = inner();
        g.bench_function("floor_two_clock_reads_and_one_bound_record", |b| {
            b.iter(|| {
                let start = Instant::now();
                let res = run(bare.call(request(&uri))).unwrap();
                bound.record(start.elapsed().as_secs_f64());
                res
            })
        });
    }

    // No SDK installed: what the layer itself costs.
    let noop = opentelemetry::metrics::NoopMeterProvider::new().meter("noop");
    let mut ours_noop = MetricsBuilder::http_server(&noop)
        .route_fn(|req| {
            req.uri()
                .path()
                .starts_with("/users/")
                .then_some("/users/{id}")
        })
        .build()
        .layer(inner());
    g.bench_function("metrics_layer_no_sdk", |b| {
        b.iter(|| run(ours_noop.call(request(&uri))).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
