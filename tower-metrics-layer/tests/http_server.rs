//! Server mode against a real axum server on 127.0.0.1.
#![cfg(feature = "axum")]

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use common::{TestMetrics, client, send, send_with, serve};
use http_body::Frame;
use tokio::sync::Notify;
use tower_metrics_layer::{LabelGuard, MetricsBuilder, MetricsLayer};

const DURATION: &str = "http.server.request.duration";
const ACTIVE: &str = "http.server.active_requests";

fn app(layer: MetricsLayer) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|| async { "user" }).post(|| async { "created" }),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(layer)
}

#[tokio::test]
async fn counts_per_route_and_status() {
    let m = TestMetrics::new();
    let addr = serve(app(MetricsLayer::http_server(&m.meter()))).await;
    let c = client();
    for i in 0..5 {
        assert_eq!(
            send(&c, "GET", format!("http://{addr}/users/{i}")).await.0,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            send(&c, "POST", format!("http://{addr}/users/7")).await.0,
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(send(&c, "GET", format!("http://{addr}/fail")).await.0, 500);
    }
    assert_eq!(
        send(&c, "GET", format!("http://{addr}/nowhere")).await.0,
        404
    );

    let points = m.points(DURATION);
    assert_eq!(points.len(), 4, "{points:#?}");
    let get_users = m.matching(
        DURATION,
        &[
            ("http.route", "/users/{id}"),
            ("http.request.method", "GET"),
        ],
    );
    assert_eq!(get_users.len(), 1);
    let p = &get_users[0];
    assert_eq!(p.count, 5);
    assert_eq!(p.attr("http.response.status_code"), Some("200"));
    assert_eq!(p.attr("url.scheme"), Some("http"));
    assert_eq!(p.attr("network.protocol.version"), Some("1.1"));
    assert_eq!(p.attr("error.type"), None);

    let post = m.matching(DURATION, &[("http.request.method", "POST")]);
    assert_eq!(post[0].count, 2);

    let fail = m.matching(DURATION, &[("http.route", "/fail")]);
    assert_eq!(fail[0].count, 3);
    assert_eq!(fail[0].attr("http.response.status_code"), Some("500"));
    assert_eq!(fail[0].attr("error.type"), Some("500"));

    let missing = m.matching(DURATION, &[("http.response.status_code", "404")]);
    assert_eq!(missing[0].count, 1);
    assert_eq!(
        missing[0].attr("http.route"),
        None,
        "raw path must never be a route"
    );
    assert_eq!(
        missing[0].attr("error.type"),
        None,
        "4xx is not a server error"
    );
}

#[tokio::test]
async fn unknown_methods_become_other() {
    let m = TestMetrics::new();
    let addr = serve(app(MetricsLayer::http_server(&m.meter()))).await;
    let c = client();
    send(&c, "PURGE", format!("http://{addr}/users/1")).await;
    send(&c, "FOOBAR", format!("http://{addr}/users/1")).await;
    let other = m.matching(DURATION, &[("http.request.method", "_OTHER")]);
    assert_eq!(other.len(), 1, "{other:#?}");
    assert_eq!(other[0].count, 2);
    assert!(
        m.points(DURATION)
            .iter()
            .all(|p| p.attr("http.request.method") == Some("_OTHER"))
    );
}

#[tokio::test]
async fn custom_method_list() {
    let m = TestMetrics::new();
    let purge = http::Method::from_bytes(b"PURGE").unwrap();
    let layer = MetricsBuilder::http_server(&m.meter())
        .known_methods([http::Method::GET, purge])
        .build();
    let addr = serve(app(layer)).await;
    let c = client();
    send(&c, "PURGE", format!("http://{addr}/users/1")).await;
    send(&c, "POST", format!("http://{addr}/users/1")).await;
    assert_eq!(
        m.matching(DURATION, &[("http.request.method", "PURGE")])
            .len(),
        1
    );
    assert_eq!(
        m.matching(DURATION, &[("http.request.method", "_OTHER")])
            .len(),
        1
    );
}

#[tokio::test]
async fn thousand_unmatched_paths_make_one_series() {
    let m = TestMetrics::new();
    let addr = serve(app(MetricsLayer::http_server(&m.meter()))).await;
    let c = client();
    for i in 0..1000 {
        let (status, _) = send(&c, "GET", format!("http://{addr}/scan/{i}/wp-admin.php")).await;
        assert_eq!(status, 404);
    }
    let points = m.points(DURATION);
    assert_eq!(points.len(), 1, "{points:#?}");
    assert_eq!(points[0].count, 1000);
    assert_eq!(points[0].attr("http.route"), None);
}

#[tokio::test]
async fn route_fn_names_routes_without_axum_matching() {
    let m = TestMetrics::new();
    let layer = MetricsBuilder::http_server(&m.meter())
        .route_fn(|req| {
            req.uri()
                .path()
                .starts_with("/files/")
                .then_some("/files/{*path}")
        })
        .build();
    let app = Router::new().fallback(|| async { "file" }).layer(layer);
    let addr = serve(app).await;
    let c = client();
    send(&c, "GET", format!("http://{addr}/files/a/b")).await;
    send(&c, "GET", format!("http://{addr}/files/c")).await;
    send(&c, "GET", format!("http://{addr}/other")).await;
    assert_eq!(
        m.matching(DURATION, &[("http.route", "/files/{*path}")])[0].count,
        2
    );
    assert_eq!(m.points(DURATION).len(), 2);
}

#[tokio::test]
async fn tenant_guard_maps_unknown_to_other() {
    let m = TestMetrics::new();
    let layer = MetricsBuilder::http_server(&m.meter())
        .label_from_header(
            "tenant",
            http::HeaderName::from_static("x-tenant-id"),
            LabelGuard::allowlist(["acme", "globex"]),
        )
        .build();
    let addr = serve(app(layer)).await;
    let c = client();
    let url = format!("http://{addr}/users/1");
    send_with(&c, "GET", url.clone(), &[("x-tenant-id", "acme")]).await;
    send_with(&c, "GET", url.clone(), &[("x-tenant-id", "acme")]).await;
    send_with(&c, "GET", url.clone(), &[("x-tenant-id", "evil-corp")]).await;
    send_with(&c, "GET", url.clone(), &[("x-tenant-id", "random-123")]).await;
    send(&c, "GET", url.clone()).await;

    assert_eq!(m.matching(DURATION, &[("tenant", "acme")])[0].count, 2);
    assert_eq!(m.matching(DURATION, &[("tenant", "other")])[0].count, 2);
    let without: Vec<_> = m
        .points(DURATION)
        .into_iter()
        .filter(|p| p.attr("tenant").is_none())
        .collect();
    assert_eq!(without[0].count, 1);
    assert_eq!(m.points(DURATION).len(), 3);
}

#[tokio::test]
async fn first_seen_guard_caps_tenants() {
    let m = TestMetrics::new();
    let guard = LabelGuard::first_seen(3);
    let layer = MetricsBuilder::http_server(&m.meter())
        .label_from_header(
            "tenant",
            http::HeaderName::from_static("x-tenant-id"),
            guard.clone(),
        )
        .build();
    let addr = serve(app(layer)).await;
    let c = client();
    for i in 0..10 {
        let t = format!("t{i}");
        send_with(
            &c,
            "GET",
            format!("http://{addr}/users/1"),
            &[("x-tenant-id", &t)],
        )
        .await;
    }
    assert_eq!(m.points(DURATION).len(), 4);
    assert_eq!(m.matching(DURATION, &[("tenant", "other")])[0].count, 7);
    assert_eq!(guard.refused(), 7);
}

/// A handler that signals it started, then never finishes.
fn hanging_app(layer: MetricsLayer, started: Arc<Notify>) -> Router {
    Router::new()
        .route(
            "/hang",
            get(move || {
                let started = started.clone();
                async move {
                    started.notify_one();
                    std::future::pending::<()>().await;
                    "never"
                }
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn request_dropped_mid_flight_returns_active_to_zero() {
    let m = TestMetrics::new();
    let started = Arc::new(Notify::new());
    let layer = MetricsBuilder::http_server(&m.meter())
        .active_requests(true)
        .build();
    let addr = serve(hanging_app(layer, started.clone())).await;
    let c = client();
    let req = tokio::spawn({
        let c = c.clone();
        async move { send(&c, "GET", format!("http://{addr}/hang")).await }
    });
    started.notified().await;
    assert_eq!(m.sum_total(ACTIVE), 1.0);
    // Abort the client request and drop the client: the connection closes, hyper
    // drops the in-flight service future.
    req.abort();
    let _ = req.await;
    drop(c);
    assert_eq!(common::wait_for_total(&m, ACTIVE, 0.0).await, 0.0);
    let cancelled = m.matching(DURATION, &[("error.type", "cancelled")]);
    assert_eq!(cancelled.len(), 1, "{:#?}", m.points(DURATION));
    assert_eq!(cancelled[0].count, 1);
    assert_eq!(cancelled[0].attr("http.route"), Some("/hang"));
    assert_eq!(cancelled[0].attr("http.response.status_code"), None);
}

/// A body yielding `chunks` frames of `size` bytes, one per poll, forever if `chunks` is None.
struct ChunkBody {
    left: Option<usize>,
    size: usize,
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.left {
            Some(0) => return Poll::Ready(None),
            Some(n) => *n -= 1,
            None => {}
        }
        // Yield between frames so the stream is genuinely incremental.
        cx.waker().wake_by_ref();
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
    }
}

#[tokio::test]
async fn body_dropped_mid_stream_returns_active_to_zero() {
    let m = TestMetrics::new();
    let layer = MetricsBuilder::http_server(&m.meter())
        .active_requests(true)
        .body_size(true)
        .build();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async {
                Body::new(ChunkBody {
                    left: None,
                    size: 16 * 1024,
                })
            }),
        )
        .layer(layer);
    let addr = serve(app).await;
    let c = client();
    let res = c
        .request(
            http::Request::get(format!("http://{addr}/stream"))
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = res.into_body();
    let first = http_body_util::BodyExt::frame(&mut body)
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_data());
    // The response head has been recorded, the body is still streaming.
    assert_eq!(
        m.matching(DURATION, &[("http.route", "/stream")])[0].count,
        1
    );
    assert_eq!(m.sum_total(ACTIVE), 1.0);
    drop(body);
    drop(c);
    assert_eq!(common::wait_for_total(&m, ACTIVE, 0.0).await, 0.0);
    // What was streamed before the drop is recorded as the response size.
    let sizes = m.points("http.server.response.body.size");
    assert_eq!(sizes.len(), 1);
    assert!(sizes[0].sum >= 16.0 * 1024.0, "{sizes:#?}");
}

#[tokio::test]
async fn body_sizes_equal_bytes_streamed() {
    let m = TestMetrics::new();
    let layer = MetricsBuilder::http_server(&m.meter())
        .active_requests(true)
        .body_size(true)
        .build();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async {
                Body::new(ChunkBody {
                    left: Some(7),
                    size: 1000,
                })
            }),
        )
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .layer(layer);
    let addr = serve(app).await;
    let c = client();
    for _ in 0..3 {
        let (status, body) = send(&c, "GET", format!("http://{addr}/stream")).await;
        assert_eq!(status, 200);
        assert_eq!(body.len(), 7000);
    }
    send(&c, "GET", format!("http://{addr}/empty")).await;
    assert_eq!(common::wait_for_total(&m, ACTIVE, 0.0).await, 0.0);
    let streamed = m.matching(
        "http.server.response.body.size",
        &[("http.route", "/stream")],
    );
    assert_eq!(streamed[0].count, 3);
    assert_eq!(streamed[0].sum, 21000.0);
    let empty = m.matching(
        "http.server.response.body.size",
        &[("http.route", "/empty")],
    );
    assert_eq!(empty[0].count, 1);
    assert_eq!(empty[0].sum, 0.0);
}

#[tokio::test]
async fn layer_around_whole_router_records_without_route() {
    // Outermost placement (DESIGN.md): MatchedPath is not visible yet, so routes are
    // omitted rather than guessed, and every request is still counted.
    let m = TestMetrics::new();
    let router = Router::new().route("/users/{id}", get(|| async { "user" }));
    let svc = tower::ServiceBuilder::new()
        .layer(MetricsLayer::http_server(&m.meter()))
        .service(router);
    let addr = serve(Router::new().fallback_service(svc)).await;
    let c = client();
    send(&c, "GET", format!("http://{addr}/users/1")).await;
    send(&c, "GET", format!("http://{addr}/users/2")).await;
    let p = m.points(DURATION);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].count, 2);
    assert_eq!(p[0].attr("http.route"), None);
}

#[tokio::test]
async fn latency_lands_in_the_right_bucket() {
    let m = TestMetrics::new();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(120)).await;
                "slow"
            }),
        )
        .layer(MetricsLayer::http_server(&m.meter()));
    let addr = serve(app).await;
    send(&client(), "GET", format!("http://{addr}/slow")).await;
    let p = &m.points(DURATION)[0];
    assert!(p.sum >= 0.12 && p.sum < 10.0, "{p:?}");
}

#[tokio::test]
async fn request_body_sizes_equal_bytes_read() {
    let m = TestMetrics::new();
    let layer = MetricsBuilder::http_server(&m.meter())
        .request_body_size_axum()
        .build();
    let app = Router::new()
        .route(
            "/upload",
            axum::routing::post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route("/ignore", axum::routing::post(|| async { "not read" }))
        .layer(layer);
    let addr = serve(app).await;
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    for size in [1000usize, 25_000] {
        let req = http::Request::post(format!("http://{addr}/upload"))
            .body(http_body_util::Full::new(Bytes::from(vec![b'a'; size])))
            .unwrap();
        let res = c.request(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), size.to_string());
    }
    let req = http::Request::post(format!("http://{addr}/ignore"))
        .body(http_body_util::Full::new(Bytes::from_static(b"unread")))
        .unwrap();
    c.request(req).await.unwrap();

    let name = "http.server.request.body.size";
    let upload = m.matching(name, &[("http.route", "/upload")]);
    assert_eq!(upload.len(), 1, "{:#?}", m.points(name));
    assert_eq!(upload[0].count, 2);
    assert_eq!(upload[0].sum, 26_000.0);
    assert_eq!(upload[0].attr("http.response.status_code"), Some("200"));
    // A body the handler never read counts what was read: nothing.
    let ignored = m.matching(name, &[("http.route", "/ignore")]);
    assert_eq!(ignored[0].count, 1);
    assert_eq!(ignored[0].sum, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_all_counted_and_released() {
    let m = TestMetrics::new();
    let layer = MetricsBuilder::http_server(&m.meter())
        .active_requests(true)
        .build();
    let app = Router::new()
        .route(
            "/work/{n}",
            get(|| async {
                tokio::task::yield_now().await;
                "done"
            }),
        )
        .layer(layer);
    let addr = serve(app).await;
    let c = client();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let (status, _) = send(&c, "GET", format!("http://{addr}/work/{t}-{i}")).await;
                assert_eq!(status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let p = m.matching(DURATION, &[("http.route", "/work/{n}")]);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].count, 400);
    assert_eq!(common::wait_for_total(&m, ACTIVE, 0.0).await, 0.0);
}

#[tokio::test]
async fn http2_requests_record_protocol_version_2() {
    let m = TestMetrics::new();
    let addr = serve(app(MetricsLayer::http_server(&m.meter()))).await;
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<Bytes>>();
    assert_eq!(
        send(&c, "GET", format!("http://{addr}/users/1")).await.0,
        200
    );
    let p = m.points(DURATION);
    assert_eq!(p[0].attr("network.protocol.version"), Some("2"));
}

#[tokio::test]
async fn label_fn_https_and_route_cap() {
    let m = TestMetrics::new();
    let layer = MetricsBuilder::http_server(&m.meter())
        .https(true)
        .max_targets(1)
        .label_fn(
            "plan",
            |req| {
                req.headers()
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|k| k.split('_').next())
            },
            LabelGuard::allowlist(["free", "pro"]),
        )
        .build();
    let addr = serve(app(layer)).await;
    let c = client();
    send_with(
        &c,
        "GET",
        format!("http://{addr}/users/1"),
        &[("x-api-key", "pro_abc123")],
    )
    .await;
    send_with(
        &c,
        "GET",
        format!("http://{addr}/users/2"),
        &[("x-api-key", "gold_zzz")],
    )
    .await;
    // A second distinct route exceeds max_targets(1): recorded without a route, counted.
    send(&c, "GET", format!("http://{addr}/fail")).await;

    let pro = m.matching(DURATION, &[("plan", "pro")]);
    assert_eq!(pro[0].count, 1);
    assert_eq!(pro[0].attr("url.scheme"), Some("https"));
    assert_eq!(pro[0].attr("http.route"), Some("/users/{id}"));
    assert_eq!(m.matching(DURATION, &[("plan", "other")])[0].count, 1);
    let fail = m.matching(DURATION, &[("http.response.status_code", "500")]);
    assert_eq!(fail[0].attr("http.route"), None);
    let overflow = m.matching(
        "tower.metrics.cardinality.overflow",
        &[("dimension", "http.route")],
    );
    assert_eq!(overflow[0].sum, 1.0);
}
