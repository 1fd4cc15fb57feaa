//! The caller's side of a job: a tower `Service` that sends it by NATS request-reply, wrapped in
//! `tower_retry_classified::RetryLayer`, so that a job a worker turned away (`overloaded`) is
//! sent again and, the subject being served by a queue group, can be taken by another worker.
//!
//! ```text
//! JobClient::send -> retry (classify: `overloaded` retryable, everything else final; a shared
//!                    RetryBudget; at most `max_retries`; after the worker's `retry_after_ms`,
//!                    else the backoff; never past the job's deadline)
//!                 -> Requester (one NATS request per attempt, `x-request-timeout-ms` = time left)
//! ```
//!
//! Why the caller retries, and only the caller (ARCHITECTURE.md, "Only one layer retries"): an
//! overload answer is a shed request, retried by the single hop that owns retries and by no
//! other. The worker never resubmits a job (at most once, see the README's acknowledgement
//! section); the caller, which holds the deadline, does, and NATS hands the new request to any
//! member of the queue group: a worker with room, when there is one. Everything else is the
//! job's outcome: `ok`, `failed` and `timeout` (the job ran), `invalid` (it would be refused
//! again), and a missing reply (a request that timed out may still be running, so sending it
//! again could run it twice; "no responders" means no worker is there).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::{HeaderMap, RequestError, RequestErrorKind, Subject};
use bytes::Bytes;
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_deadline::Deadline;
use tower_retry_classified::{
    Backoff, Classification, DEFAULT_MAX_RETRIES, Generic, Reason, Retry, RetryBudget, RetryLayer,
};

use crate::protocol::{JobSpec, REQUEST_TIMEOUT_HEADER, Reply, Status};

/// How long past a job's deadline the client still waits for its reply: a worker answers
/// `timeout` at the deadline, and that answer needs a moment to arrive.
pub const REPLY_GRACE: Duration = Duration::from_secs(1);

/// The subject workers serve unless told otherwise (`WORKER_SUBJECT`).
pub const DEFAULT_SUBJECT: &str = "jobs";

/// Reasons of the final answers, as `tower.retry.attempts` and `tower.retry.skipped` name them.
const JOB_FAILED: Reason = Reason::new("job_failed");
const JOB_TIMEOUT: Reason = Reason::new("job_timeout");
const JOB_INVALID: Reason = Reason::new("job_invalid");
const NO_REPLY: Reason = Reason::new("no_reply");
const NO_RESPONDERS: Reason = Reason::new("no_responders");

/// What the retry layer asks of each attempt's outcome.
///
/// `overloaded` is retryable ([`Reason::PEER_OVERLOADED`]), after the worker's
/// `retry_after_ms` when the reply carries one (else the backoff): the job never started. `ok`
/// is a success. Every other reply, and every error (no reply in time, no responders), is
/// final.
pub fn classify(outcome: Result<&Reply, &BoxError>) -> Classification {
    match outcome {
        Ok(reply) => match reply.status {
            Status::Ok => Classification::Success,
            Status::Overloaded => Classification::Retryable {
                reason: Reason::PEER_OVERLOADED,
                after: reply.retry_after_ms.map(Duration::from_millis),
            },
            Status::Failed => Classification::permanent(JOB_FAILED),
            Status::Timeout => Classification::permanent(JOB_TIMEOUT),
            Status::Invalid => Classification::permanent(JOB_INVALID),
        },
        Err(error) => Classification::permanent(
            match error.downcast_ref::<RequestError>().map(RequestError::kind) {
                Some(RequestErrorKind::TimedOut) => NO_REPLY,
                Some(RequestErrorKind::NoResponders) => NO_RESPONDERS,
                _ => Reason::OTHER_ERROR,
            },
        ),
    }
}

type Classifier = fn(Result<&Reply, &BoxError>) -> Classification;

/// Sends jobs and sends again the ones a worker turned away. Cheap to clone: clones share the
/// NATS connection and the retry budget.
#[derive(Clone, Debug)]
pub struct JobClient {
    retry: Retry<Requester, Classifier, Generic>,
}

/// Settings of a [`JobClient`]: [`JobClient::builder`].
#[derive(Debug)]
pub struct JobClientBuilder {
    client: async_nats::Client,
    subject: String,
    max_retries: u32,
    backoff: Backoff,
    budget: RetryBudget,
}

impl JobClient {
    /// A client with the defaults of [`JobClient::builder`].
    pub fn new(client: async_nats::Client) -> Self {
        Self::builder(client).build()
    }

    /// A client over `client` sending on `jobs`, with at most 4 retries, 100 ms exponential
    /// backoff with full jitter when a reply carries no `retry_after_ms`, and a retry budget
    /// of its own (20% of jobs over 10 s, plus 10 retries a second).
    pub fn builder(client: async_nats::Client) -> JobClientBuilder {
        JobClientBuilder {
            client,
            subject: DEFAULT_SUBJECT.to_string(),
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: Backoff::default(),
            budget: RetryBudget::default(),
        }
    }

    /// Sends `job` with `timeout` as its deadline and returns the last reply with every
    /// attempt's answer; an error when no reply came (none in time, or no worker there).
    ///
    /// Each attempt tells the worker the time left (`x-request-timeout-ms`) and waits for the
    /// reply that long plus [`REPLY_GRACE`]; no retry starts past the deadline.
    pub async fn send(&self, job: &JobSpec, timeout: Duration) -> Result<Outcome, BoxError> {
        let deadline = Deadline::after(timeout);
        let answers = Arc::new(Mutex::new(Vec::new()));
        let request = JobRequest {
            payload: serde_json::to_vec(job)?.into(),
            deadline,
            answers: Arc::clone(&answers),
        };
        // In the deadline's scope the retry layer sleeps no backoff past it.
        let reply = deadline.scope(self.retry.clone().oneshot(request)).await?;
        let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(Outcome { reply, answers })
    }
}

impl JobClientBuilder {
    /// The subject jobs are sent on (default `jobs`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Retries after the first attempt (default 4; 0 sends every job once).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The wait before a retry when the reply gives none (default 100 ms exponential, full
    /// jitter).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The retry budget, which clients given the same one share (default: one of its own).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The client.
    pub fn build(self) -> JobClient {
        let requester = Requester {
            client: self.client,
            subject: Subject::from(self.subject),
        };
        JobClient {
            retry: retry_layer(self.max_retries, self.backoff, self.budget).layer(requester),
        }
    }
}

/// The retry layer around each attempt: [`classify`] and the builder's settings.
fn retry_layer(
    max_retries: u32,
    backoff: Backoff,
    budget: RetryBudget,
) -> RetryLayer<Classifier, Generic> {
    RetryLayer::new(classify as Classifier)
        .max_retries(max_retries)
        .backoff(backoff)
        .budget(budget)
}

/// A job's last reply and the answers that led to it.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The last attempt's reply.
    pub reply: Reply,
    /// Every attempt's answer, in order (the last is `reply`'s): one when the job was sent once.
    pub answers: Vec<Answer>,
}

/// One attempt's answer: who gave it, and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The answering worker's id (`WORKER_ID`).
    pub worker: Option<String>,
    /// The reply's status.
    pub status: Status,
}

impl Outcome {
    /// How many times the job was sent again.
    pub fn retries(&self) -> usize {
        self.answers.len().saturating_sub(1)
    }

    /// Whether the first worker turned the job away (`overloaded`) and a different worker then
    /// took it (answered anything but `overloaded`): the balancing the retries are for.
    pub fn completed_elsewhere(&self) -> bool {
        self.answers.first().is_some_and(|first| {
            first.status == Status::Overloaded
                && self.reply.status != Status::Overloaded
                && self.reply.worker != first.worker
        })
    }
}

/// One job on its way, as each attempt sends it (the retry layer clones it per attempt): the
/// encoded job, its deadline, and the answers so far, shared by the attempts.
#[derive(Clone, Debug)]
pub(crate) struct JobRequest {
    payload: Bytes,
    deadline: Deadline,
    answers: Arc<Mutex<Vec<Answer>>>,
}

/// One attempt: one NATS request carrying the time left, its reply decoded and noted.
#[derive(Clone, Debug)]
pub(crate) struct Requester {
    client: async_nats::Client,
    subject: Subject,
}

impl Service<JobRequest> for Requester {
    type Response = Reply;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // async-nats queues requests on its connection; `send_request` waits there.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, job: JobRequest) -> Self::Future {
        let client = self.client.clone();
        let subject = self.subject.clone();
        Box::pin(async move {
            let left = job.deadline.remaining().max(Duration::from_millis(1));
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_TIMEOUT_HEADER, left.as_millis().to_string());
            let request = async_nats::Request::new()
                .payload(job.payload)
                .headers(headers)
                .timeout(Some(left + REPLY_GRACE));
            let message = client.send_request(subject, request).await?;
            let reply: Reply = serde_json::from_slice(&message.payload)
                .map_err(|e| format!("not a job reply: {e}"))?;
            job.answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Answer {
                    worker: reply.worker.clone(),
                    status: reply.status,
                });
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};

    fn reply(status: Status, worker: &str, retry_after_ms: Option<u64>) -> Reply {
        Reply {
            worker: Some(worker.to_string()),
            retry_after_ms,
            ..Reply::refused("j".into(), Some("cpu".into()), status, String::new())
        }
    }

    #[test]
    fn only_overloaded_is_retried_after_the_workers_hint() {
        assert_eq!(
            classify(Ok(&reply(Status::Overloaded, "a", Some(1000)))),
            Classification::Retryable {
                reason: Reason::PEER_OVERLOADED,
                after: Some(Duration::from_secs(1)),
            }
        );
        assert_eq!(
            classify(Ok(&reply(Status::Overloaded, "a", None))),
            Classification::retryable(Reason::PEER_OVERLOADED)
        );
        assert_eq!(
            classify(Ok(&reply(Status::Ok, "a", None))),
            Classification::Success
        );
        for status in [Status::Failed, Status::Timeout, Status::Invalid] {
            let verdict = classify(Ok(&reply(status, "a", Some(1000))));
            assert!(
                matches!(verdict, Classification::Permanent { .. }),
                "{status:?}"
            );
        }
        let error: BoxError = "connection lost".into();
        assert_eq!(
            classify(Err(&error)),
            Classification::permanent(Reason::OTHER_ERROR)
        );
    }

    #[test]
    fn completed_elsewhere_means_turned_away_then_taken_by_another() {
        let answer = |worker: &str, status| Answer {
            worker: Some(worker.into()),
            status,
        };
        let outcome = |answers: Vec<Answer>| Outcome {
            reply: reply(answers.last().unwrap().status, "", None),
            answers,
        };
        let mut moved = outcome(vec![
            answer("a", Status::Overloaded),
            answer("b", Status::Ok),
        ]);
        moved.reply.worker = Some("b".into());
        assert!(moved.completed_elsewhere());
        assert_eq!(moved.retries(), 1);
        let mut back = outcome(vec![
            answer("a", Status::Overloaded),
            answer("a", Status::Ok),
        ]);
        back.reply.worker = Some("a".into());
        assert!(!back.completed_elsewhere());
        let mut once = outcome(vec![answer("b", Status::Ok)]);
        once.reply.worker = Some("b".into());
        assert!(!once.completed_elsewhere());
        assert_eq!(once.retries(), 0);
    }

    /// The layer as the client builds it, over a stand-in for NATS: worker `a` is full (and
    /// says so with a 1 s hint) for the first `full_for` attempts, then `b` answers.
    async fn through_the_layer(
        full_for: u32,
        max_retries: u32,
        budget: RetryBudget,
        timeout: Duration,
    ) -> (Reply, u32, Duration) {
        let calls = Arc::new(AtomicU32::new(0));
        let workers = tower::service_fn({
            let calls = Arc::clone(&calls);
            move |_: JobRequest| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let answer = if n < full_for {
                    reply(Status::Overloaded, "a", Some(1000))
                } else {
                    reply(Status::Ok, "b", None)
                };
                std::future::ready(Ok::<_, BoxError>(answer))
            }
        });
        let service = retry_layer(max_retries, Backoff::default(), budget).layer(workers);
        let deadline = Deadline::after(timeout);
        let request = JobRequest {
            payload: Bytes::new(),
            deadline,
            answers: Arc::default(),
        };
        let start = tokio::time::Instant::now();
        let reply = deadline
            .scope(service.oneshot(request))
            .await
            .expect("a reply");
        (reply, calls.load(Ordering::SeqCst), start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_overloaded_answer_is_sent_again_after_the_hint() {
        let (reply, calls, took) =
            through_the_layer(2, 4, RetryBudget::default(), Duration::from_secs(10)).await;
        assert_eq!(
            (reply.status, reply.worker.as_deref()),
            (Status::Ok, Some("b"))
        );
        assert_eq!(calls, 3);
        // Two retries, each after the worker's 1 s: the hint, not the 100 ms backoff.
        assert_eq!(took, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn without_retries_budget_or_time_the_caller_gets_overloaded() {
        let no_budget = RetryBudget::new(Duration::from_secs(1), 0, 0.0);
        for (max_retries, budget, timeout) in [
            (0, RetryBudget::default(), Duration::from_secs(10)),
            (4, no_budget, Duration::from_secs(10)),
            // A 1 s hint does not fit in a 500 ms deadline.
            (4, RetryBudget::default(), Duration::from_millis(500)),
        ] {
            let (reply, calls, took) = through_the_layer(1, max_retries, budget, timeout).await;
            assert_eq!(reply.status, Status::Overloaded);
            assert_eq!(reply.worker.as_deref(), Some("a"));
            assert_eq!(calls, 1);
            assert_eq!(took, Duration::ZERO);
        }
    }
}
