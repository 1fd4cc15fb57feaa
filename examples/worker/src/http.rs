//! The worker's own HTTP endpoint: `GET /metrics` (when metrics are on), `/healthz`, `/readyz`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_bounded_queue::{QueueHandle, QueueStatus};
use tower_metrics_layer::prometheus::PrometheusMetrics;

#[derive(Clone)]
struct State {
    metrics: Option<PrometheusMetrics>,
    queues: Vec<QueueHandle>,
}

/// Serves until the process ends.
pub async fn serve(
    listener: TcpListener,
    metrics: Option<PrometheusMetrics>,
    queues: Vec<QueueHandle>,
) {
    let state = State { metrics, queues };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &request)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn answer(state: &State, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        // Not ready when any pool is full: a balancer should send work elsewhere.
        "/readyz" => {
            let mut body = String::new();
            let mut critical = false;
            for queue in &state.queues {
                let status = queue.status();
                critical |= status == QueueStatus::Critical;
                body.push_str(&format!("{} {}\n", queue.name(), status.as_str()));
            }
            let status = if critical {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            text(
                status,
                if body.is_empty() {
                    "ready\n".into()
                } else {
                    body
                },
            )
        }
        "/metrics" => match &state.metrics {
            Some(metrics) => match metrics.render() {
                Ok(body) => {
                    let mut response = text(StatusCode::OK, body);
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    response
                }
                Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
            },
            None => text(
                StatusCode::NOT_FOUND,
                "metrics are off (CP2_OBSERVABILITY_METRICS_ENABLED)\n".into(),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
