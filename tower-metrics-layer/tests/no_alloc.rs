//! The success path allocates nothing per request once its series has been seen.

use std::convert::Infallible;
use std::future::{Future, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Empty;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use tower::{Layer, Service, service_fn};
use tower_metrics_layer::{LabelGuard, MetricsBuilder};

#[global_allocator]
static METER: alloc_meter::Meter = alloc_meter::Meter;

fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("service completes immediately"),
    }
}

#[test]
fn steady_state_requests_do_not_allocate() {
    let provider = SdkMeterProvider::builder()
        .with_reader(ManualReader::builder().build())
        .build();
    let meter = provider.meter("alloc");
    let layer = MetricsBuilder::http_server(&meter)
        .route_fn(|req| {
            req.uri()
                .path()
                .starts_with("/users/")
                .then_some("/users/{id}")
        })
        .active_requests(true)
        .body_size(true)
        .label_from_header(
            "tenant",
            http::HeaderName::from_static("x-tenant-id"),
            LabelGuard::first_seen(5),
        )
        .build();
    let mut svc = layer.layer(service_fn(|_req: Request<()>| {
        ready(Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())))
    }));
    let uri = Uri::from_static("/users/42");
    let tenant = http::HeaderValue::from_static("acme");
    let request = || {
        let mut req = Request::new(());
        *req.uri_mut() = uri.clone();
        req.headers_mut().insert("x-tenant-id", tenant.clone());
        req
    };
    // Warm up: the first request builds the series.
    for _ in 0..3 {
        drop(run(svc.call(request())).unwrap());
    }
    let reqs: Vec<_> = (0..1000).map(|_| request()).collect();
    let ((), used) = alloc_meter::measure(|| {
        for req in reqs {
            let res = run(svc.call(req)).unwrap();
            drop(res);
        }
    });
    let per_request = used.allocations as f64 / 1000.0;
    // The SDK's own recording is part of the path; none of it may allocate either.
    assert_eq!(per_request, 0.0, "allocations per request");
}
