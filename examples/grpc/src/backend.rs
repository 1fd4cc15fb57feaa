//! The backend: answers `Echo` calls as each request's knobs say, and records what it saw so
//! tests can check it (calls made, the `grpc-timeout` that arrived, work dropped unfinished).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use crate::pb::echo_server::Echo;
use crate::pb::{EchoReply, EchoRequest};

/// What the backend observed; shared with whoever built it.
#[derive(Debug, Default)]
pub struct Observed {
    /// Calls that reached the handler (past every layer).
    pub calls: AtomicUsize,
    /// Handler futures dropped before they finished (the deadline cut them off).
    pub dropped: AtomicUsize,
    /// The last `grpc-timeout` received, in milliseconds (0: none).
    pub last_timeout_ms: AtomicU64,
}

/// The `Echo` backend.
#[derive(Clone, Debug, Default)]
pub struct Backend {
    observed: Arc<Observed>,
}

impl Backend {
    pub fn new() -> Self {
        Self::default()
    }

    /// What this backend has seen so far.
    pub fn observed(&self) -> Arc<Observed> {
        Arc::clone(&self.observed)
    }

    fn arrive<T>(&self, request: &Request<T>) -> u64 {
        self.observed.calls.fetch_add(1, Ordering::SeqCst);
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(timeout_ms)
            .unwrap_or(0);
        self.observed
            .last_timeout_ms
            .store(timeout, Ordering::SeqCst);
        timeout
    }
}

/// Counts a drop unless disarmed: tells a finished handler from one cut off mid-work.
struct DropWatch {
    observed: Arc<Observed>,
    armed: bool,
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        if self.armed {
            self.observed.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A `grpc-timeout` value in milliseconds, rounded down (the backend's own reading, so a
/// test sees what arrived without going through the layers' parser).
fn timeout_ms(value: &str) -> Option<u64> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => n * 3_600_000,
        "M" => n * 60_000,
        "S" => n * 1_000,
        "m" => n,
        "u" => n / 1_000,
        "n" => n / 1_000_000,
        _ => return None,
    })
}

fn failure(code: u32) -> Option<Status> {
    (code != 0).then(|| {
        Status::new(
            Code::from_i32(code as i32),
            format!("asked to fail with {code}"),
        )
    })
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for Backend {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let received_timeout_ms = self.arrive(&request);
        let request = request.into_inner();
        let mut watch = DropWatch {
            observed: self.observed(),
            armed: true,
        };
        tokio::time::sleep(Duration::from_millis(u64::from(request.delay_ms))).await;
        watch.armed = false;
        if let Some(status) = failure(request.fail_code) {
            return Err(status);
        }
        Ok(Response::new(EchoReply {
            message: request.message,
            received_timeout_ms,
            index: 0,
        }))
    }

    type StreamStream = ReplyStream;

    async fn stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let received_timeout_ms = self.arrive(&request);
        let request = request.into_inner();
        if request.fail_after == 0 {
            if let Some(status) = failure(request.fail_code) {
                return Err(status);
            }
        }
        let count = request.count.max(1);
        let delay = Duration::from_millis(u64::from(request.delay_ms));
        Ok(Response::new(replies(
            count,
            delay,
            request,
            received_timeout_ms,
        )))
    }
}

/// `count` replies `delay` apart; with `fail_code` and `fail_after > 0`, the status after
/// `fail_after` of them (so it arrives in trailers, after a streamed body). A task feeds a
/// channel, as tonic's own streaming examples do; it stops when the caller goes away.
fn replies(
    count: u32,
    delay: Duration,
    request: EchoRequest,
    received_timeout_ms: u64,
) -> ReplyStream {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for index in 0..count {
            tokio::time::sleep(delay).await;
            let item = match failure(request.fail_code) {
                Some(status) if request.fail_after > 0 && index == request.fail_after => {
                    Err(status)
                }
                _ => Ok(EchoReply {
                    message: request.message.clone(),
                    received_timeout_ms,
                    index,
                }),
            };
            let last = item.is_err();
            if sender.send(item).await.is_err() || last {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}
