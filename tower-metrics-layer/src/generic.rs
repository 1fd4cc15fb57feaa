//! [`GenericMetricsLayer`]: duration metrics for any `Service<Req>`, labelled by
//! user functions (for workers, queues, RPC-less jobs).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use opentelemetry::metrics::Meter;
use opentelemetry::{Key, KeyValue};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::attributes::NONE_U32;
use crate::buckets::{DEFAULT_DURATION_BOUNDARIES, normalize_boundaries};
use crate::config::DEFAULT_MAX_SERIES;
use crate::instruments::Instruments;
use crate::label_guard::LabelGuard;
use crate::series::SeriesCache;

/// Most labels a [`GenericMetricsLayer`] records besides `outcome`.
pub const MAX_GENERIC_LABELS: usize = 4;

type LabelFn<Req> = Arc<dyn Fn(&Req) -> Option<&str> + Send + Sync>;
type OutcomeFn<Res, E> = Arc<dyn Fn(Result<&Res, &E>) -> &'static str + Send + Sync>;

struct GenericLabel<Req> {
    key: Key,
    get: LabelFn<Req>,
    guard: LabelGuard,
}

impl<Req> Clone for GenericLabel<Req> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            get: Arc::clone(&self.get),
            guard: self.guard.clone(),
        }
    }
}

struct GenericConfig<Req, Res, E> {
    meter: Meter,
    name: Cow<'static, str>,
    boundaries: Vec<f64>,
    labels: Vec<GenericLabel<Req>>,
    outcome: OutcomeFn<Res, E>,
    max_series: usize,
}

impl<Req, Res, E> Clone for GenericConfig<Req, Res, E> {
    fn clone(&self) -> Self {
        Self {
            meter: self.meter.clone(),
            name: self.name.clone(),
            boundaries: self.boundaries.clone(),
            labels: self.labels.clone(),
            outcome: Arc::clone(&self.outcome),
            max_series: self.max_series,
        }
    }
}

/// Settings of a [`GenericMetricsLayer`]; [`build`](Self::build) creates its histogram and
/// series cache, once. Settings are clamped to their documented bounds, never ignored.
///
/// ```
/// use opentelemetry::global;
/// use tower::{ServiceBuilder, service_fn};
/// use tower_metrics_layer::{GenericMetricsBuilder, LabelGuard, MetricsBuilder};
///
/// struct Step { tenant: String, kind: &'static str }
///
/// let layer = GenericMetricsBuilder::<Step, (), std::io::Error>::new(
///         &global::meter("worker"), "worker.step.duration")
///     .label("tenant", |s: &Step| Some(s.tenant.as_str()), LabelGuard::default())
///     .label("step.type", |s: &Step| Some(s.kind), LabelGuard::allowlist(["fetch", "parse"]))
///     .outcome(|r| match r { Ok(()) => "ok", Err(_) => "failed" })
///     .build();
/// let _svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|_s: Step| async { Ok::<(), std::io::Error>(()) }));
/// ```
pub struct GenericMetricsBuilder<Req, Res, E> {
    config: GenericConfig<Req, Res, E>,
}

impl<Req, Res, E> Clone for GenericMetricsBuilder<Req, Res, E> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<Req, Res, E> fmt::Debug for GenericMetricsBuilder<Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericMetricsBuilder")
            .field("name", &self.config.name)
            .field("labels", &self.config.labels.len())
            .finish_non_exhaustive()
    }
}

impl<Req, Res, E> GenericMetricsBuilder<Req, Res, E> {
    /// A histogram named `name` on `meter`; outcome `"ok"` / `"error"` until
    /// [`outcome`](Self::outcome) is set.
    pub fn new(meter: &Meter, name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            config: GenericConfig {
                meter: meter.clone(),
                name: name.into(),
                boundaries: DEFAULT_DURATION_BOUNDARIES.to_vec(),
                labels: Vec::new(),
                outcome: Arc::new(|r| if r.is_ok() { "ok" } else { "error" }),
                max_series: DEFAULT_MAX_SERIES,
            },
        }
    }

    fn with(mut self, f: impl FnOnce(&mut GenericConfig<Req, Res, E>)) -> Self {
        f(&mut self.config);
        self
    }

    /// Add a label `key` read from the request by `get`, bounded by `guard`. A
    /// `None` omits the label. Clamped to the first [`MAX_GENERIC_LABELS`] labels (a
    /// series per combination of four guarded labels is already a lot).
    pub fn label<F>(self, key: &'static str, get: F, guard: LabelGuard) -> Self
    where
        F: Fn(&Req) -> Option<&str> + Send + Sync + 'static,
    {
        guard.name(key);
        self.with(|c| {
            if c.labels.len() < MAX_GENERIC_LABELS {
                c.labels.push(GenericLabel {
                    key: Key::from_static_str(key),
                    get: Arc::new(get),
                    guard,
                });
            }
        })
    }

    /// Name the outcome of a call (the `outcome` attribute); return a
    /// low-cardinality constant such as `"ok"`, `"retry"`, `"failed"`.
    pub fn outcome<F>(self, f: F) -> Self
    where
        F: Fn(Result<&Res, &E>) -> &'static str + Send + Sync + 'static,
    {
        self.with(|c| c.outcome = Arc::new(f))
    }

    /// Histogram bucket boundaries in seconds (clamped like
    /// [`MetricsBuilder::duration_boundaries`](crate::MetricsBuilder::duration_boundaries)).
    pub fn duration_boundaries(self, boundaries: impl Into<Vec<f64>>) -> Self {
        let b = normalize_boundaries(boundaries.into());
        self.with(|c| c.boundaries = b)
    }

    /// Creates the histogram and the series cache: the one place they are made. Every service
    /// the layer builds, and every clone of the layer, shares them.
    pub fn build(self) -> GenericMetricsLayer<Req, Res, E> {
        GenericMetricsLayer {
            shared: {
                let c = self.config;
                let duration = c
                    .meter
                    .f64_histogram(c.name.clone())
                    .with_unit("s")
                    .with_boundaries(c.boundaries.clone())
                    .build();
                let overflow = c
                    .meter
                    .u64_counter("tower.metrics.cardinality.overflow")
                    .build();
                Arc::new(GenericShared {
                    instruments: Instruments {
                        duration,
                        response_size: None,
                        request_size: None,
                        active: None,
                        overflow,
                    },
                    series: SeriesCache::new(c.max_series),
                    config: c,
                })
            },
        }
    }
}

/// Records a duration histogram (seconds) for any service, with an `outcome`
/// attribute named by a user function and up to four guarded labels; configured and built by
/// [`GenericMetricsBuilder`]. Clones share one histogram and series cache.
pub struct GenericMetricsLayer<Req, Res, E> {
    shared: Arc<GenericShared<Req, Res, E>>,
}

impl<Req, Res, E> GenericMetricsLayer<Req, Res, E> {
    /// A histogram named `name` on `meter` with every default (see
    /// [`GenericMetricsBuilder::new`]).
    pub fn new(meter: &Meter, name: impl Into<Cow<'static, str>>) -> Self {
        GenericMetricsBuilder::new(meter, name).build()
    }

    fn shared(&self) -> Arc<GenericShared<Req, Res, E>> {
        Arc::clone(&self.shared)
    }
}

impl<Req, Res, E> Clone for GenericMetricsLayer<Req, Res, E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Req, Res, E> fmt::Debug for GenericMetricsLayer<Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericMetricsLayer")
            .field("name", &self.shared.config.name)
            .finish_non_exhaustive()
    }
}

impl<S, Req, Res, E> Layer<S> for GenericMetricsLayer<Req, Res, E> {
    type Service = GenericMetricsService<S, Req, Res, E>;

    fn layer(&self, inner: S) -> Self::Service {
        GenericMetricsService {
            inner,
            shared: self.shared(),
        }
    }
}

type GenericKey = ([u32; MAX_GENERIC_LABELS], &'static str);

struct GenericShared<Req, Res, E> {
    config: GenericConfig<Req, Res, E>,
    instruments: Instruments,
    series: SeriesCache<GenericKey>,
}

impl<Req, Res, E> GenericShared<Req, Res, E> {
    fn record(&self, labels: [u32; MAX_GENERIC_LABELS], outcome: &'static str, start: Instant) {
        let seconds = start.elapsed().as_secs_f64();
        let attrs = || {
            let mut attrs = Vec::with_capacity(MAX_GENERIC_LABELS + 1);
            attrs.push(KeyValue::new("outcome", outcome));
            for (label, id) in self.config.labels.iter().zip(labels) {
                if id != NONE_U32 {
                    attrs.push(KeyValue::new(label.key.clone(), label.guard.value(id)));
                }
            }
            attrs
        };
        self.series
            .with((labels, outcome), &self.instruments, attrs, |series| {
                series.record_duration(&self.instruments, seconds)
            });
    }
}

/// Service produced by [`GenericMetricsLayer`].
pub struct GenericMetricsService<S, Req, Res, E> {
    inner: S,
    shared: Arc<GenericShared<Req, Res, E>>,
}

impl<S: Clone, Req, Res, E> Clone for GenericMetricsService<S, Req, Res, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, Req, Res, E> fmt::Debug for GenericMetricsService<S, Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericMetricsService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, Req, Res, E> Service<Req> for GenericMetricsService<S, Req, Res, E>
where
    S: Service<Req, Response = Res, Error = E>,
{
    type Response = Res;
    type Error = E;
    type Future = GenericResponseFuture<S::Future, Req, Res, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let start = Instant::now();
        let mut labels = [NONE_U32; MAX_GENERIC_LABELS];
        for (slot, label) in labels.iter_mut().zip(&self.shared.config.labels) {
            if let Some(v) = (label.get)(&req) {
                *slot = label.guard.id(v);
            }
        }
        GenericResponseFuture {
            inner: self.inner.call(req),
            state: Some(GenericState {
                start,
                labels,
                shared: Arc::clone(&self.shared),
            }),
        }
    }
}

struct GenericState<Req, Res, E> {
    start: Instant,
    labels: [u32; MAX_GENERIC_LABELS],
    shared: Arc<GenericShared<Req, Res, E>>,
}

pin_project! {
    /// Response future of [`GenericMetricsService`]; a drop before completion
    /// records `outcome="cancelled"`.
    pub struct GenericResponseFuture<F, Req, Res, E> {
        #[pin]
        inner: F,
        state: Option<GenericState<Req, Res, E>>,
    }

    impl<F, Req, Res, E> PinnedDrop for GenericResponseFuture<F, Req, Res, E> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(s) = this.project().state.take() {
                s.shared.record(s.labels, "cancelled", s.start);
            }
        }
    }
}

impl<F, Req, Res, E> Future for GenericResponseFuture<F, Req, Res, E>
where
    F: Future<Output = Result<Res, E>>,
{
    type Output = Result<Res, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(s) = this.state.take() {
            let outcome = (s.shared.config.outcome)(result.as_ref());
            s.shared.record(s.labels, outcome, s.start);
        }
        Poll::Ready(result)
    }
}
