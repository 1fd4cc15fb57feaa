//! Client mode: a hyper-util client wrapped in the layer, talking to a real server.

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use common::{TestMetrics, serve};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_metrics_layer::{MetricsBuilder, MetricsLayer};

const DURATION: &str = "http.client.request.duration";

#[tokio::test]
async fn client_requests_are_recorded_per_server_and_status() {
    let m = TestMetrics::new();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/busy", get(|| async { StatusCode::TOO_MANY_REQUESTS }));
    let addr = serve(app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(
            MetricsBuilder::http_client(&m.meter())
                .provider("local-llm")
                .active_requests(true)
                .body_size(true)
                .build(),
        )
        .service(client);
    for path in ["/ok", "/ok", "/busy"] {
        let res = svc
            .clone()
            .oneshot(
                http::Request::get(format!("http://{addr}{path}"))
                    .body(Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
    }
    let port = addr.port().to_string();
    let ok = m.matching(DURATION, &[("http.response.status_code", "200")]);
    assert_eq!(ok.len(), 1, "{:#?}", m.points(DURATION));
    assert_eq!(ok[0].count, 2);
    assert_eq!(ok[0].attr("server.address"), Some("127.0.0.1"));
    assert_eq!(ok[0].attr("server.port"), Some(port.as_str()));
    assert_eq!(ok[0].attr("provider.name"), Some("local-llm"));
    assert_eq!(ok[0].attr("http.route"), None);
    assert_eq!(ok[0].attr("error.type"), None);
    // Clients treat 4xx as errors (semantic conventions).
    let busy = m.matching(DURATION, &[("http.response.status_code", "429")]);
    assert_eq!(busy[0].attr("error.type"), Some("429"));
    assert_eq!(m.sum_total("http.client.active_requests"), 0.0);
    let active = m.points("http.client.active_requests");
    assert_eq!(active.len(), 1, "{active:#?}");
    assert_eq!(active[0].attr("server.address"), Some("127.0.0.1"));
    assert_eq!(active[0].attr("server.port"), Some(port.as_str()));
    let sizes = m.points("http.client.response.body.size");
    assert_eq!(sizes.iter().map(|p| p.sum).sum::<f64>(), 4.0); // "ok" twice, 429 empty
}

#[tokio::test]
async fn connect_errors_pass_through_and_get_a_low_cardinality_name() {
    let m = TestMetrics::new();
    // Bind then drop a listener so the port is (very likely) closed.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(
            MetricsBuilder::http_client(&m.meter())
                .error_type_fn(|e| {
                    let e = e.downcast_ref::<hyper_util::client::legacy::Error>()?;
                    e.is_connect().then_some("connect_error")
                })
                .build(),
        )
        .service(client);
    let err = svc
        .oneshot(
            http::Request::get(format!("http://{addr}/"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap_err();
    // The inner error is returned unchanged.
    assert!(err.is_connect());
    let p = m.matching(DURATION, &[("error.type", "connect_error")]);
    assert_eq!(p.len(), 1, "{:#?}", m.points(DURATION));
    assert_eq!(p[0].attr("http.response.status_code"), None);
}

#[tokio::test]
async fn unclassified_errors_are_other() {
    let m = TestMetrics::new();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::http_server(&m.meter()))
        .service(tower::service_fn(|_req: http::Request<()>| async {
            Err::<http::Response<String>, _>(std::io::Error::other("boom"))
        }));
    let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    let p = m.matching("http.server.request.duration", &[("error.type", "_OTHER")]);
    assert_eq!(p[0].count, 1);
}

#[tokio::test]
async fn panicking_inner_service_releases_active_count() {
    let m = TestMetrics::new();
    let svc = ServiceBuilder::new()
        .layer(
            MetricsBuilder::http_server(&m.meter())
                .active_requests(true)
                .build(),
        )
        .service(tower::service_fn(|_req: http::Request<()>| async {
            if true {
                panic!("handler bug");
            }
            Ok::<http::Response<String>, std::convert::Infallible>(http::Response::new(
                String::new(),
            ))
        }));
    let joined = tokio::spawn(svc.oneshot(http::Request::new(()))).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(m.sum_total("http.server.active_requests"), 0.0);
    let p = m.matching(
        "http.server.request.duration",
        &[("error.type", "cancelled")],
    );
    assert_eq!(p[0].count, 1);
}

#[cfg(feature = "deadline")]
#[tokio::test]
async fn deadline_errors_are_named_timeout() {
    let m = TestMetrics::new();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::http_client(&m.meter()))
        .service(tower::service_fn(|_req: http::Request<()>| async {
            let e = tower_deadline::DeadlineExceeded::new(
                tower_deadline::Stage::Outgoing,
                std::time::Duration::from_millis(50),
                std::time::Duration::from_millis(51),
            );
            Err::<http::Response<String>, tower::BoxError>(Box::new(e))
        }));
    let req = http::Request::get("http://upstream.example:8080/v1")
        .body(())
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(err.is::<tower_deadline::DeadlineExceeded>());
    let p = m.matching("http.client.request.duration", &[("error.type", "timeout")]);
    assert_eq!(p[0].attr("server.address"), Some("upstream.example"));
    assert_eq!(p[0].attr("server.port"), Some("8080"));
}

#[tokio::test]
async fn server_address_falls_back_to_the_host_header() {
    let m = TestMetrics::new();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::http_client(&m.meter()))
        .service(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    let req = http::Request::get("/v1")
        .header("host", "api.internal:9000")
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let p = m.points("http.client.request.duration");
    assert_eq!(p[0].attr("server.address"), Some("api.internal"));
    assert_eq!(p[0].attr("server.port"), Some("9000"));
}

#[tokio::test]
async fn no_server_known_records_neither_address_nor_port() {
    let m = TestMetrics::new();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::http_client(&m.meter()))
        .service(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    svc.oneshot(http::Request::get("/v1").body(()).unwrap())
        .await
        .unwrap();
    let p = m.points("http.client.request.duration");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].attr("server.address"), None);
    assert_eq!(p[0].attr("server.port"), None, "not a guessed 80");
}

/// A client stack forwarding origin-form requests (as a proxy does with what it received): the
/// metrics see the caller's `Host`, a layer below points the URI at the real server, and a
/// hyper-util client sends it. The server echoes the `Host` it got.
async fn forwarding_client(
    layer: MetricsLayer,
) -> (
    impl tower::Service<
        http::Request<Empty<Bytes>>,
        Response = http::Response<impl http_body::Body<Error: std::fmt::Debug>>,
        Error: std::fmt::Debug,
    > + Clone,
    std::net::SocketAddr,
) {
    let app = Router::new().route(
        "/v1",
        get(|headers: http::HeaderMap| async move {
            headers[http::header::HOST].to_str().unwrap().to_owned()
        }),
    );
    let addr = serve(app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .map_request(move |mut req: http::Request<Empty<Bytes>>| {
            let path = req.uri().path_and_query().unwrap().clone();
            *req.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
            req
        })
        .service(client);
    (svc, addr)
}

#[tokio::test]
async fn origin_form_requests_name_the_server_by_host_with_the_schemes_default_port() {
    let m = TestMetrics::new();
    let (plain, _) = forwarding_client(MetricsLayer::http_client(&m.meter())).await;
    let (tls, _) =
        forwarding_client(MetricsBuilder::http_client(&m.meter()).https(true).build()).await;
    for (svc, host) in [
        (plain.clone(), "api.internal"),
        (plain.clone(), "api.internal:9000"),
        (plain, "[::1]:8080"),
        (tls, "secure.internal"),
    ] {
        let req = http::Request::get("/v1")
            .header(http::header::HOST, host)
            .body(Empty::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let echoed = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(echoed, host, "the request reached the server with its Host");
    }
    let server = |p: &common::Point| {
        (
            p.attr("server.address").unwrap().to_owned(),
            p.attr("server.port").unwrap().to_owned(),
            p.attr("url.scheme").unwrap().to_owned(),
        )
    };
    let mut seen: Vec<_> = m.points(DURATION).iter().map(server).collect();
    seen.sort();
    let want = [
        ("[::1]", "8080", "http"),
        ("api.internal", "80", "http"),
        ("api.internal", "9000", "http"),
        ("secure.internal", "443", "https"),
    ]
    .map(|(a, p, s)| (a.to_owned(), p.to_owned(), s.to_owned()));
    assert_eq!(seen, want);
}

#[tokio::test]
async fn absolute_uris_name_the_server_without_userinfo() {
    let m = TestMetrics::new();
    let app = Router::new().route("/", get(|| async { "ok" }));
    let addr = serve(app).await;
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::http_client(&m.meter()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let req = http::Request::get(format!("http://user:secret@{addr}/"))
        .body(Empty::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let p = m.points(DURATION);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].attr("server.address"), Some("127.0.0.1"));
    assert_eq!(
        p[0].attr("server.port"),
        Some(addr.port().to_string().as_str())
    );
}

#[tokio::test]
async fn one_address_on_many_ports_stays_within_the_cap() {
    let m = TestMetrics::new();
    let svc = ServiceBuilder::new()
        .layer(
            MetricsBuilder::http_client(&m.meter())
                .max_targets(2)
                .build(),
        )
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let mut ports = Vec::new();
    for _ in 0..3 {
        let addr = serve(Router::new().route("/", get(|| async { "ok" }))).await;
        ports.push(addr.port());
        for _ in 0..2 {
            let req = http::Request::get(format!("http://{addr}/"))
                .body(Empty::new())
                .unwrap();
            assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
        }
    }
    let points = m.points(DURATION);
    for port in &ports[..2] {
        let port = port.to_string();
        let p = m.matching(DURATION, &[("server.port", port.as_str())]);
        assert_eq!(p.len(), 1, "{points:#?}");
        assert_eq!(p[0].count, 2);
        assert_eq!(p[0].attr("server.address"), Some("127.0.0.1"));
    }
    // The third pair is refused: recorded with neither attribute (a port alone would keep
    // growing), and counted.
    let third = ports[2].to_string();
    assert!(
        m.matching(DURATION, &[("server.port", third.as_str())])
            .is_empty()
    );
    let unnamed: Vec<_> = points
        .iter()
        .filter(|p| p.attr("server.port").is_none())
        .collect();
    assert_eq!(unnamed.len(), 1, "{points:#?}");
    assert_eq!(unnamed[0].count, 2);
    assert_eq!(unnamed[0].attr("server.address"), None);
    let overflow = m.matching(
        "tower.metrics.cardinality.overflow",
        &[("dimension", "server.address")],
    );
    assert_eq!(overflow[0].sum, 2.0);
}

#[tokio::test]
async fn client_request_body_sizes_count_bytes_sent() {
    let m = TestMetrics::new();
    let app = axum::Router::new().route(
        "/upload",
        axum::routing::post(|body: Bytes| async move { body.len().to_string() }),
    );
    let addr = serve(app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<
        tower_metrics_layer::request_body::MeteredRequestBody<http_body_util::Full<Bytes>>,
    >();
    let svc = ServiceBuilder::new()
        .layer(
            MetricsBuilder::http_client(&m.meter())
                .request_body_size()
                .build(),
        )
        .service(client);
    let req = http::Request::post(format!("http://{addr}/upload"))
        .body(http_body_util::Full::new(Bytes::from(vec![b'z'; 4321])))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "4321");
    let p = m.points("http.client.request.body.size");
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].sum, 4321.0);
    assert_eq!(p[0].attr("http.response.status_code"), Some("200"));
}
