//! The job stacks, one per resource pool, each layer present only when its flag is on.
//!
//! ```text
//! job:  metrics (worker.job.duration) -> bounded queue (the pool) -> job runner
//! step: metrics (worker.step.duration) -> step runner (see `steps`)
//! ```
//!
//! The queue sits below the job metrics so that a rejected job is counted (`outcome` =
//! `overloaded`); its own instruments give depth, in-flight, status and rejections per pool.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::metrics::Meter;
use opentelemetry_sdk::trace::SdkTracer;
use tower::util::Either;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_bounded_queue::{BoundedQueue, BoundedQueueBuilder, Overloaded, QueueHandle};
use tower_deadline::DeadlineExceeded;
use tower_metrics_layer::{GenericMetricsBuilder, GenericMetricsService, LabelGuard};

use crate::config::Settings;
use crate::job::{Job, Reply, STEP_KINDS, Status, StepReport};
use crate::steps::{StepCall, StepDone, StepError, StepRunner, http_service};

type Steps = Either<GenericMetricsService<StepRunner, StepCall, StepDone, StepError>, StepRunner>;

/// Runs a job's steps in order, stopping at the first that fails.
#[derive(Clone)]
pub struct JobRunner {
    steps: Steps,
}

impl Service<Job> for JobRunner {
    type Response = Reply;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, job: Job) -> Self::Future {
        let mut steps = self.steps.clone();
        Box::pin(async move {
            let mut reply = Reply {
                id: job.id.clone(),
                status: Status::Ok,
                // Signed by dispatch, which sends every reply.
                worker: None,
                pool: Some(job.pool.clone()),
                steps: Vec::with_capacity(job.steps.len()),
                error: None,
                retry_after_ms: None,
            };
            for (index, step) in job.steps.into_iter().enumerate() {
                let kind = step.kind();
                let call = StepCall {
                    job_id: job.id.clone(),
                    index,
                    tenant: job.tenant.clone(),
                    pool: job.pool.clone(),
                    step,
                    deadline: job.deadline,
                };
                let start = Instant::now();
                let result = steps.ready().await?.call(call).await;
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                let (status, detail) = match result {
                    Ok(done) => (Status::Ok, done.detail),
                    Err(StepError::Timeout(text)) => (Status::Timeout, Some(text)),
                    Err(StepError::Failed(text)) => (Status::Failed, Some(text)),
                };
                let failed = status != Status::Ok;
                if failed {
                    reply.status = status;
                    reply.error = Some(format!(
                        "step {index} ({kind}): {}",
                        detail.as_deref().unwrap_or(status.as_str())
                    ));
                }
                reply.steps.push(StepReport {
                    kind: kind.to_string(),
                    status,
                    ms,
                    detail,
                });
                if failed {
                    break;
                }
            }
            Ok(reply)
        })
    }
}

type JobMetrics<S> = GenericMetricsService<S, Job, Reply, BoxError>;
type Queued = Either<BoundedQueue<JobRunner>, JobRunner>;

/// One pool's stack.
pub type PoolService = Either<JobMetrics<Queued>, Queued>;

/// Every pool, by name, and the queue handles (readiness, drain).
pub struct Pools {
    pub services: HashMap<String, PoolService>,
    pub queues: Vec<QueueHandle>,
}

/// `outcome` of the job metrics: the reply's status, or what the error means.
pub fn job_outcome(result: Result<&Reply, &BoxError>) -> &'static str {
    match result {
        Ok(reply) => reply.status.as_str(),
        Err(error) if error.is::<Overloaded>() => Status::Overloaded.as_str(),
        Err(error) if error.is::<DeadlineExceeded>() => Status::Timeout.as_str(),
        Err(_) => Status::Failed.as_str(),
    }
}

pub fn build(settings: &Settings, meter: Option<&Meter>, tracer: Option<&SdkTracer>) -> Pools {
    let flags = settings.flags;
    // One guard for jobs and steps: the same tenants become labels in both.
    let tenants = LabelGuard::allowlist(settings.tenant_allowlist.iter().cloned());
    let pool_names: Vec<String> = settings.pools.iter().map(|p| p.name.clone()).collect();
    let step_metrics = meter.map(|meter| {
        GenericMetricsBuilder::<StepCall, StepDone, StepError>::new(meter, "worker.step.duration")
            .label(
                "step.type",
                |c: &StepCall| Some(c.step.kind()),
                LabelGuard::allowlist(STEP_KINDS),
            )
            .label("tenant", |c: &StepCall| Some(&c.tenant), tenants.clone())
            .label(
                "pool",
                |c: &StepCall| Some(&c.pool),
                LabelGuard::allowlist(pool_names.iter().cloned()),
            )
            .outcome(|r| match r {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            })
            .build()
    });
    let http = http_service(settings, meter, tracer);
    let runner = JobRunner {
        steps: ServiceBuilder::new()
            .option_layer(step_metrics)
            .service(StepRunner::new(settings, http)),
    };
    let job_metrics = meter.map(|meter| {
        GenericMetricsBuilder::<Job, Reply, BoxError>::new(meter, "worker.job.duration")
            .label(
                "pool",
                |j: &Job| Some(&j.pool),
                LabelGuard::allowlist(pool_names.iter().cloned()),
            )
            .label("tenant", |j: &Job| Some(&j.tenant), tenants.clone())
            .outcome(job_outcome)
            .build()
    });

    let mut services = HashMap::new();
    let mut queues = Vec::new();
    for pool in &settings.pools {
        let queue = flags.queue.then(|| {
            let builder = BoundedQueueBuilder::new(pool.concurrency)
                .capacity(pool.capacity)
                .name(pool.name.clone());
            match meter {
                Some(meter) => builder.meter(meter),
                None => builder,
            }
            .build()
        });
        if let Some(queue) = &queue {
            queues.push(queue.handle());
        }
        let service = ServiceBuilder::new()
            .option_layer(job_metrics.clone())
            .option_layer(queue)
            .service(runner.clone());
        services.insert(pool.name.clone(), service);
    }
    Pools { services, queues }
}
