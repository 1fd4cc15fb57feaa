//! Step execution: the service every step goes through, and the HTTP client of `http_call`.
//!
//! ```text
//! step: metrics (worker.step.duration) -> runner (deadline scope + enforce) -> http | fs | sleep
//! http_call: classified retry -> client span (per attempt, traces on) -> deadline propagation
//!            -> hyper-util client (connect budget)
//! ```

use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::metrics::Meter;
use opentelemetry_sdk::trace::SdkTracer;
use tower::util::{BoxCloneSyncService, MapRequestLayer};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_deadline::{
    ConnectDeadline, Deadline, DeadlineExceeded, PropagateDeadlineLayer, enforce,
};
use tower_retry_classified::{Attempts, Backoff, ReplayBody, RetryLayer};

use crate::config::Settings;
use crate::job::Step;
use crate::traces::ClientSpanLayer;

/// What the client sends: the retry layer's replayable body when retries are on, else the
/// step's body as it is.
pub type Outgoing = Either<ReplayBody<Full<Bytes>>, Full<Bytes>>;

/// The `http_call` stack, boxed once (every step type shares one runner type).
pub type HttpService =
    BoxCloneSyncService<Request<Full<Bytes>>, Response<hyper::body::Incoming>, BoxError>;

/// Most bytes of a provider's answer the worker reads.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Builds the `http_call` client stack with the layers that are on.
pub fn http_service(
    settings: &Settings,
    meter: Option<&Meter>,
    tracer: Option<&SdkTracer>,
) -> HttpService {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .build::<_, Outgoing>(ConnectDeadline::new(connector).budget(settings.connect_timeout));
    let flags = settings.flags;
    let retry = if flags.retry {
        let mut layer = RetryLayer::for_http()
            .max_retries(settings.retry_max)
            .backoff(Backoff::exponential(settings.retry_base))
            .attempt_body::<Outgoing>();
        if let Some(meter) = meter {
            layer = layer.meter(meter);
        }
        tower::util::Either::Left(layer)
    } else {
        tower::util::Either::Right(MapRequestLayer::new(|request: Request<Full<Bytes>>| {
            request.map(Either::Right)
        }))
    };
    let propagate = flags.timeout.then(|| {
        let layer = PropagateDeadlineLayer::new();
        match meter {
            Some(meter) => layer.meter(meter),
            None => layer,
        }
    });
    let stack = ServiceBuilder::new()
        .layer(retry)
        .layer(ClientSpanLayer::new(tracer.cloned()))
        .option_layer(propagate)
        .map_err(Into::<BoxError>::into)
        .service(client);
    BoxCloneSyncService::new(stack)
}

/// One step of one job, as the step service and its metrics see it.
#[derive(Clone, Debug)]
pub struct StepCall {
    pub job_id: String,
    pub index: usize,
    pub tenant: String,
    pub pool: String,
    pub step: Step,
    /// `None` when deadlines are off.
    pub deadline: Option<Deadline>,
}

/// A step that succeeded, with a short note (bytes read, provider status).
#[derive(Clone, Debug)]
pub struct StepDone {
    pub detail: Option<String>,
}

/// A step that did not.
#[derive(Clone, Debug)]
pub enum StepError {
    /// The job's deadline or the operation's own budget passed.
    Timeout(String),
    /// Anything else: provider error or refusal, I/O error, bad path.
    Failed(String),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Timeout(text) | StepError::Failed(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for StepError {}

impl StepError {
    pub fn outcome(&self) -> &'static str {
        match self {
            StepError::Timeout(_) => "timeout",
            StepError::Failed(_) => "failed",
        }
    }
}

/// Runs one step under the job's deadline (when on).
#[derive(Clone)]
pub struct StepRunner {
    http: HttpService,
    fs_root: Arc<PathBuf>,
    /// FS budgets through `tower_deadline::fs` (deadlines on) or plain `tokio::fs`.
    budgets: bool,
}

impl StepRunner {
    pub fn new(settings: &Settings, http: HttpService) -> Self {
        Self {
            http,
            fs_root: Arc::new(settings.fs_root.clone()),
            budgets: settings.flags.timeout,
        }
    }
}

impl Service<StepCall> for StepRunner {
    type Response = StepDone;
    type Error = StepError;
    type Future = Pin<Box<dyn Future<Output = Result<StepDone, StepError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), StepError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: StepCall) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let deadline = call.deadline;
            let work = this.execute(call);
            match deadline {
                // The scope makes the deadline visible to fs budgets, the queue, retries and
                // propagation; `enforce` stops the step when it passes.
                Some(deadline) => match deadline.scope(enforce(work)).await {
                    Ok(result) => result,
                    Err(exceeded) => Err(StepError::Timeout(exceeded.to_string())),
                },
                None => work.await,
            }
        })
    }
}

impl StepRunner {
    async fn execute(self, call: StepCall) -> Result<StepDone, StepError> {
        match call.step {
            Step::Sleep { ms } => {
                // `sleep 0` is a no-op: tokio's timer would round it up to its next 1 ms tick.
                if ms > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Ok(StepDone { detail: None })
            }
            Step::FsRead { path } => {
                let path = self.resolve(&path)?;
                let bytes = if self.budgets {
                    tower_deadline::fs::read(&path).await
                } else {
                    tokio::fs::read(&path).await
                }
                .map_err(io_error)?;
                Ok(StepDone {
                    detail: Some(format!("{} bytes", bytes.len())),
                })
            }
            Step::FsWrite { path, data } => {
                let path = self.resolve(&path)?;
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(io_error)?;
                }
                if self.budgets {
                    tower_deadline::fs::write(&path, data.as_bytes()).await
                } else {
                    tokio::fs::write(&path, data.as_bytes()).await
                }
                .map_err(io_error)?;
                Ok(StepDone {
                    detail: Some(format!("{} bytes", data.len())),
                })
            }
            Step::HttpCall { url, method, body } => {
                let method = match method.as_deref().map(str::trim) {
                    None | Some("") => Method::GET,
                    Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| StepError::Failed(format!("bad method {m:?}")))?,
                };
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| StepError::Failed(format!("bad url: {e}")))?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    return Err(StepError::Failed(
                        "url must be http://host[:port]/...".into(),
                    ));
                }
                let mut request = Request::builder().method(method).uri(uri);
                // A job's step is the same operation however often it is tried: retries of a
                // POST are safe for a provider that honours the key.
                if let Ok(key) = HeaderValue::from_str(&format!("{}-{}", call.job_id, call.index)) {
                    request = request.header("idempotency-key", key);
                }
                let request = request
                    .body(Full::new(Bytes::from(body.unwrap_or_default())))
                    .map_err(|e| StepError::Failed(format!("bad request: {e}")))?;
                let response = self
                    .http
                    .oneshot(request)
                    .await
                    .map_err(|e| http_error(&*e))?;
                let status = response.status();
                let attempts = Attempts::of(&response).max(1);
                let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| http_error(&*e))?
                    .to_bytes();
                let detail = format!("{status} after {attempts} attempt(s), {} bytes", body.len());
                if status.is_success() {
                    Ok(StepDone {
                        detail: Some(detail),
                    })
                } else {
                    Err(StepError::Failed(format!("provider answered {detail}")))
                }
            }
        }
    }

    /// A path relative to the FS root that stays inside it.
    fn resolve(&self, path: &str) -> Result<PathBuf, StepError> {
        let relative = Path::new(path);
        let inside = !path.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(StepError::Failed(format!(
                "path {path:?} must be relative to the FS root, without '..'"
            )));
        }
        Ok(self.fs_root.join(relative))
    }
}

/// `DeadlineExceeded` anywhere in an error's source chain.
fn find_deadline<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a DeadlineExceeded> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(exceeded) = e.downcast_ref::<DeadlineExceeded>() {
            return Some(exceeded);
        }
        current = e.source();
    }
    None
}

fn io_error(error: io::Error) -> StepError {
    match error.get_ref().and_then(|inner| find_deadline(inner)) {
        Some(exceeded) => StepError::Timeout(exceeded.to_string()),
        None if error.kind() == io::ErrorKind::TimedOut => StepError::Timeout(error.to_string()),
        None => StepError::Failed(error.to_string()),
    }
}

fn http_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> StepError {
    if let Some(exceeded) = find_deadline(error) {
        return StepError::Timeout(exceeded.to_string());
    }
    // The whole chain: hyper-util's "client error (Connect)" alone says little.
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    StepError::Failed(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(root: &Path) -> StepRunner {
        let http: HttpService =
            BoxCloneSyncService::new(tower::service_fn(|_: Request<Full<Bytes>>| async {
                Err::<Response<hyper::body::Incoming>, BoxError>("no network in unit tests".into())
            }));
        StepRunner {
            http,
            fs_root: Arc::new(root.to_path_buf()),
            budgets: true,
        }
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let r = runner(Path::new("/srv/jobs"));
        assert_eq!(
            r.resolve("a/b.txt").unwrap(),
            Path::new("/srv/jobs/a/b.txt")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
            assert!(r.resolve(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_past_the_deadline_is_a_typed_timeout() {
        let mut r = runner(Path::new("/nonexistent"));
        let call = StepCall {
            job_id: "j".into(),
            index: 0,
            tenant: "t".into(),
            pool: "cpu".into(),
            step: Step::Sleep { ms: 10_000 },
            deadline: Some(Deadline::after(Duration::from_secs(1))),
        };
        match r.call(call).await {
            Err(StepError::Timeout(text)) => assert!(text.contains("1s"), "{text}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}
