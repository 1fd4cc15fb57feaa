//! gRPC mode over real HTTP/2 (h2c) between an axum server and a hyper-util client.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use common::{TestMetrics, serve};
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_metrics_layer::{MetricsBuilder, MetricsLayer};

const SERVER: &str = "rpc.server.call.duration";
const CLIENT: &str = "rpc.client.call.duration";

/// One length-prefixed message, then trailers carrying `grpc-status`.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

fn grpc_response(code: &'static str) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(code));
    let body = GrpcBody {
        data: Some(Bytes::from_static(b"\0\0\0\0\x02hi")),
        trailers: Some(trailers),
    };
    let mut res = Response::new(Body::new(body));
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    res
}

fn trailers_only(code: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    res.headers_mut()
        .insert("grpc-status", HeaderValue::from_static(code));
    res
}

fn app(layer: MetricsLayer) -> Router {
    Router::new()
        .route("/pkg.Echo/Ok", post(|| async { grpc_response("0") }))
        .route("/pkg.Echo/Busy", post(|| async { grpc_response("14") }))
        .route("/pkg.Echo/Missing", post(|| async { grpc_response("5") }))
        .route("/pkg.Echo/Unimpl", post(|| async { trailers_only("12") }))
        .fallback(|| async { trailers_only("12") })
        .layer(layer)
}

async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    layer: MetricsLayer,
    addr: std::net::SocketAddr,
    method: &str,
) -> Option<HeaderMap> {
    let svc = ServiceBuilder::new().layer(layer).service(client.clone());
    let req = http::Request::post(format!("http://{addr}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let collected = res.into_body().collect().await.unwrap();
    collected.trailers().cloned()
}

#[tokio::test]
async fn status_from_trailers_and_headers_is_recorded_on_both_sides() {
    let server = TestMetrics::new();
    let clientm = TestMetrics::new();
    let addr = serve(app(MetricsLayer::grpc_server(&server.meter()))).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let layer = MetricsLayer::grpc_client(&clientm.meter());
    for _ in 0..2 {
        let t = call(&client, layer.clone(), addr, "pkg.Echo/Busy")
            .await
            .unwrap();
        assert_eq!(t["grpc-status"], "14");
    }
    call(&client, layer.clone(), addr, "pkg.Echo/Ok").await;
    call(&client, layer.clone(), addr, "pkg.Echo/Missing").await;
    call(&client, layer.clone(), addr, "pkg.Echo/Unimpl").await;

    let busy = server.matching(SERVER, &[("rpc.method", "pkg.Echo/Busy")]);
    assert_eq!(busy.len(), 1, "{:#?}", server.points(SERVER));
    assert_eq!(busy[0].count, 2);
    assert_eq!(busy[0].attr("rpc.system.name"), Some("grpc"));
    assert_eq!(busy[0].attr("rpc.status_code"), Some("UNAVAILABLE"));
    assert_eq!(busy[0].attr("error.type"), Some("UNAVAILABLE"));

    let ok = server.matching(SERVER, &[("rpc.method", "pkg.Echo/Ok")]);
    assert_eq!(ok[0].attr("rpc.status_code"), Some("OK"));
    assert_eq!(ok[0].attr("error.type"), None);

    // NOT_FOUND is not a server error, but it is one for the client.
    let missing = server.matching(SERVER, &[("rpc.method", "pkg.Echo/Missing")]);
    assert_eq!(missing[0].attr("error.type"), None);
    let missing = clientm.matching(CLIENT, &[("rpc.method", "pkg.Echo/Missing")]);
    assert_eq!(missing[0].attr("error.type"), Some("NOT_FOUND"));

    let unimpl = server.matching(SERVER, &[("rpc.method", "pkg.Echo/Unimpl")]);
    assert_eq!(unimpl[0].attr("rpc.status_code"), Some("UNIMPLEMENTED"));

    let c_busy = clientm.matching(CLIENT, &[("rpc.method", "pkg.Echo/Busy")]);
    assert_eq!(c_busy[0].count, 2);
    assert_eq!(c_busy[0].attr("rpc.status_code"), Some("UNAVAILABLE"));
    assert_eq!(c_busy[0].attr("server.address"), Some("127.0.0.1"));
    let port = addr.port().to_string();
    assert_eq!(c_busy[0].attr("server.port"), Some(port.as_str()));
    assert_eq!(clientm.points(CLIENT).len(), 4);
}

#[tokio::test]
async fn unknown_methods_beyond_the_cap_become_other() {
    let server = TestMetrics::new();
    let addr = serve(app(MetricsBuilder::grpc_server(&server.meter())
        .max_targets(2)
        .build()))
    .await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let plain = MetricsLayer::grpc_client(&opentelemetry::global::meter("unused"));
    for i in 0..10 {
        call(&client, plain.clone(), addr, &format!("scan.Svc/M{i}")).await;
    }
    let points = server.points(SERVER);
    assert_eq!(points.len(), 3, "{points:#?}");
    let other = server.matching(SERVER, &[("rpc.method", "_OTHER")]);
    assert_eq!(other[0].count, 8);
}
