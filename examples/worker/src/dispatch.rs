//! From a NATS message to a reply: parse, resolve pool and deadline, admit, run, answer.
//!
//! Admission happens here, in the receive loop: the pool's queue decides in `call`, at once,
//! so a full pool's `overloaded` reply never waits behind other jobs, and the loop never holds
//! more than the pools admit (a rejected job's task ends at once).
//!
//! Every reply leaves through [`send`], which signs it with the worker's id: in a queue group
//! that is how a caller sees which worker answered (and, after a retry, which one took the job).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message, Subject};
use opentelemetry::Context;
use opentelemetry::context::FutureExt as _;
use opentelemetry_sdk::trace::SdkTracer;
use tokio_util::task::TaskTracker;
use tower::{BoxError, Service, ServiceExt};
use tower_bounded_queue::Overloaded;
use tower_deadline::{Deadline, DeadlineExceeded, wire};
use tower_reliability_core::Rejection;
use worker::protocol::REQUEST_TIMEOUT_HEADER;

use crate::config::Settings;
use crate::job::{self, Job, Reply, Status};
use crate::pools::PoolService;
use crate::traces;

/// Deadline headers, as the HTTP side reads them (the tightest wins).
const GRPC_TIMEOUT: &str = "grpc-timeout";
const MILLIS_HEADERS: [&str; 2] = [REQUEST_TIMEOUT_HEADER, "x-envoy-expected-rq-timeout-ms"];

pub struct Dispatcher {
    /// `WORKER_ID`, put in every reply.
    worker: Arc<str>,
    pools: HashMap<String, PoolService>,
    default_pool: String,
    /// `Some(cap)` when deadlines are on.
    cap: Option<Duration>,
    client: Client,
    tasks: TaskTracker,
    received: AtomicU64,
    anonymous: AtomicU64,
    /// Present when traces are exported (`traces`).
    tracer: Option<SdkTracer>,
}

/// The job's deadline: the tightest header, capped by the worker's own limit. Malformed values
/// are ignored (the cap still applies).
pub fn deadline_from(headers: Option<&HeaderMap>, cap: Duration) -> Duration {
    let mut budget = cap;
    if let Some(headers) = headers {
        if let Some(value) = headers.get(GRPC_TIMEOUT)
            && let Some(timeout) = wire::decode_grpc_timeout(value.as_str().as_bytes())
        {
            budget = budget.min(timeout);
        }
        for name in MILLIS_HEADERS {
            if let Some(value) = headers.get(name)
                && let Some(timeout) = wire::decode_millis(value.as_str().as_bytes())
            {
                budget = budget.min(timeout);
            }
        }
    }
    budget
}

impl Dispatcher {
    pub fn new(
        settings: &Settings,
        pools: HashMap<String, PoolService>,
        client: Client,
        tasks: TaskTracker,
        tracer: Option<SdkTracer>,
    ) -> Self {
        Self {
            worker: Arc::from(settings.id.as_str()),
            pools,
            default_pool: settings.default_pool.clone(),
            cap: settings.flags.timeout.then_some(settings.timeout),
            client,
            tasks,
            received: AtomicU64::new(0),
            anonymous: AtomicU64::new(0),
            tracer,
        }
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub async fn dispatch(&mut self, message: Message) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let reply_to = message.reply.clone();
        let spec = match job::parse(&message.payload, &self.default_pool) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::debug!(%error, "invalid job");
                let reply = Reply::refused(String::new(), None, Status::Invalid, error);
                self.send(reply_to, reply).await;
                return;
            }
        };
        let id = spec
            .id
            .clone()
            .unwrap_or_else(|| format!("job-{}", self.anonymous.fetch_add(1, Ordering::Relaxed)));
        let pool = spec.pool.clone().unwrap_or_default();
        let Some(service) = self.pools.get_mut(&pool) else {
            let error = format!("no pool named {pool:?}");
            let reply = Reply::refused(id, Some(pool), Status::Invalid, error);
            self.send(reply_to, reply).await;
            return;
        };
        let deadline = self
            .cap
            .map(|cap| Deadline::after(deadline_from(message.headers.as_ref(), cap)));
        let job = Job {
            id: id.clone(),
            tenant: spec.tenant.unwrap_or_default(),
            pool: pool.clone(),
            steps: spec.steps,
            deadline,
        };
        // Always ready (the queue decides in `call`); awaited for form's sake.
        let service = match service.ready().await {
            Ok(service) => service,
            Err(error) => {
                let reply = Reply::refused(id, Some(pool), Status::Failed, error.to_string());
                self.send(reply_to, reply).await;
                return;
            }
        };
        // The job's span, current while it runs: its `http_call` attempts are its children.
        let span = self.tracer.as_ref().map(|tracer| {
            traces::job_span(
                tracer,
                message.headers.as_ref(),
                message.subject.as_str(),
                &id,
                &pool,
            )
        });
        let _current = span.clone().map(Context::attach);
        // Admission sees the job's deadline (a waiter whose deadline passes leaves the queue).
        let future = match deadline {
            Some(deadline) => deadline.sync_scope(|| service.call(job)),
            None => service.call(job),
        };
        let client = self.client.clone();
        let worker = Arc::clone(&self.worker);
        let job = async move {
            let reply = match future.await {
                Ok(reply) => reply,
                Err(error) => refusal(id, pool, &error),
            };
            let status = reply.status;
            send(&client, &worker, reply_to, reply).await;
            status
        };
        match span {
            Some(cx) => {
                self.tasks.spawn(async move {
                    let status = job.with_context(cx.clone()).await;
                    traces::end_job(&cx, status.as_str());
                });
            }
            None => {
                self.tasks.spawn(async move {
                    job.await;
                });
            }
        }
    }

    async fn send(&self, reply_to: Option<Subject>, reply: Reply) {
        send(&self.client, &self.worker, reply_to, reply).await;
    }
}

/// The reply for a job that the pool turned away or that failed outside its steps. A full pool
/// says when it expects room (its queue's `Retry-After`), for the caller that resubmits.
fn refusal(id: String, pool: String, error: &BoxError) -> Reply {
    let mut retry_after = None;
    let status = if let Some(overloaded) = error.downcast_ref::<Overloaded>() {
        retry_after = overloaded.retry_after();
        Status::Overloaded
    } else if error.is::<DeadlineExceeded>() {
        Status::Timeout
    } else {
        Status::Failed
    };
    Reply {
        retry_after_ms: retry_after.map(|after| after.as_millis().try_into().unwrap_or(u64::MAX)),
        ..Reply::refused(id, Some(pool), status, error.to_string())
    }
}

/// Signs `reply` with the worker's id and sends it to `reply_to`.
async fn send(client: &Client, worker: &str, reply_to: Option<Subject>, mut reply: Reply) {
    let Some(subject) = reply_to else {
        return; // published without a reply subject: fire and forget
    };
    reply.worker = Some(worker.to_string());
    match serde_json::to_vec(&reply) {
        Ok(payload) => {
            if let Err(error) = client.publish(subject, payload.into()).await {
                tracing::warn!(%error, id = %reply.id, "cannot send the reply");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot encode the reply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_says_when_it_expects_room() {
        // One slot, no waiting room, taken by a job that never ends.
        let mut pool = tower::Layer::layer(
            &tower_bounded_queue::BoundedQueueBuilder::new(1)
                .capacity(0)
                .build(),
            tower::service_fn(|()| std::future::pending::<Result<(), BoxError>>()),
        );
        let _running = pool.ready().await.unwrap().call(());
        let overloaded = pool.ready().await.unwrap().call(()).await.unwrap_err();
        let reply = refusal("j".into(), "gpu".into(), &overloaded);
        assert_eq!(reply.status, Status::Overloaded);
        assert_eq!(reply.retry_after_ms, Some(1000));
        let other = refusal("j".into(), "gpu".into(), &"boom".into());
        assert_eq!((other.status, other.retry_after_ms), (Status::Failed, None));
    }

    #[test]
    fn deadline_headers_take_the_tightest_under_the_cap() {
        let cap = Duration::from_secs(30);
        assert_eq!(deadline_from(None, cap), cap);
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", "2S");
        assert_eq!(deadline_from(Some(&headers), cap), Duration::from_secs(2));
        headers.insert("x-request-timeout-ms", "1500");
        assert_eq!(
            deadline_from(Some(&headers), cap),
            Duration::from_millis(1500)
        );
        headers.insert("grpc-timeout", "99H");
        headers.insert("x-request-timeout-ms", "not a number");
        assert_eq!(deadline_from(Some(&headers), cap), cap);
    }
}
