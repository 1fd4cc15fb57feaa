//! Body replay path: a request whose body the inner service reads in full, with 1 KiB and
//! 64 KiB bodies. Compared with no retry layer and with `tower::retry::Retry` cloning a `Full`
//! body (which only works for `Clone` bodies; ours also takes streamed bodies).
//!
//! `cargo bench -p tower-retry-classified --bench replay -- --warm-up-time 1 --measurement-time 3`

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Ready;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::retry::{Policy, Retry};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_retry_classified::RetryLayer;

/// Reads the whole body, answers 200.
#[derive(Clone, Copy)]
struct Drain;

impl<B> Service<Request<B>> for Drain
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    type Response = Response<usize>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<usize>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Box::pin(async move {
            let n = match req.into_body().collect().await {
                Ok(c) => c.to_bytes().len(),
                Err(_) => 0,
            };
            Ok(Response::new(n))
        })
    }
}

#[derive(Clone, Copy)]
struct CloneNeverRetry;

impl<B: Clone, Res, E> Policy<Request<B>, Res, E> for CloneNeverRetry {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut Request<B>, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

/// A streamed body of 1 KiB chunks with no size hint.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

fn chunks(data: &Bytes) -> Chunks {
    Chunks(
        (0..data.len())
            .step_by(1024)
            .map(|s| data.slice(s..(s + 1024).min(data.len())))
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for size in [1024usize, 64 * 1024] {
        let data = Bytes::from(vec![7u8; size]);
        let mut group = c.benchmark_group(format!("replay_{}k", size / 1024));
        group.bench_function("bare_full", |b| {
            b.to_async(&rt).iter(|| {
                let req = Request::post("/").body(Full::new(data.clone())).unwrap();
                async move { Drain.oneshot(req).await.unwrap() }
            })
        });
        let tower_retry = Retry::new(CloneNeverRetry, Drain);
        group.bench_function("tower_retry_full", |b| {
            b.to_async(&rt).iter(|| {
                let req = Request::post("/").body(Full::new(data.clone())).unwrap();
                let svc = tower_retry.clone();
                async move { svc.oneshot(req).await.unwrap() }
            })
        });
        let ours = rt.block_on(async { RetryLayer::for_http().layer(Drain) });
        group.bench_function("classified_full", |b| {
            b.to_async(&rt).iter(|| {
                let req = Request::post("/").body(Full::new(data.clone())).unwrap();
                let svc = ours.clone();
                async move { svc.oneshot(req).await.unwrap() }
            })
        });
        group.bench_function("bare_streamed", |b| {
            b.to_async(&rt).iter(|| {
                let req = Request::post("/").body(chunks(&data)).unwrap();
                async move { Drain.oneshot(req).await.unwrap() }
            })
        });
        let ours_streamed = rt.block_on(async { RetryLayer::for_http().layer(Drain) });
        group.bench_function("classified_streamed", |b| {
            b.to_async(&rt).iter(|| {
                let req = Request::post("/").body(chunks(&data)).unwrap();
                let svc = ours_streamed.clone();
                async move { svc.oneshot(req).await.unwrap() }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
