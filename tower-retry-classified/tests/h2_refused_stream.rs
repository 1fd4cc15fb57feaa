//! HTTP/2 REFUSED_STREAM proves the request was not processed: retried even for a POST without
//! `Idempotency-Key`. The upstream is a real h2 server on 127.0.0.1 that refuses the first stream.
#![cfg(feature = "h2")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_retry_classified::{Attempts, ReplayBody, RetryLayer};

async fn refusing_upstream(refuse: u32) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = Arc::new(AtomicU32::new(0));
    let seen = streams.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(socket).await.unwrap();
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    if n < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    } else {
                        let _ = respond.send_response(Response::new(()), true);
                    }
                }
            });
        }
    });
    (addr, streams)
}

#[tokio::test(start_paused = true)]
async fn refused_stream_is_retried_for_post_without_key() {
    let (addr, streams) = refusing_upstream(2).await;
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(None)
        .http2_only(true)
        .build_http::<ReplayBody<Full<Bytes>>>();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http())
        .service(client);
    let req = Request::post(format!("http://{addr}/charge"))
        .body(Full::new(Bytes::from_static(b"amount=5")))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(streams.load(Ordering::SeqCst), 3);
    assert_eq!(Attempts::of(&resp), 3);
}
