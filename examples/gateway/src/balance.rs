//! Several instances behind one provider: each attempt goes to the instance that looks least
//! loaded, and an instance that says it is overloaded leaves the rotation for as long as it asks.
//!
//! A provider named with several URLs (`name=http://a|http://b`, see the README) gets this layer
//! below its retry layer and breaker, so every attempt picks again:
//!
//! - **power of two choices over peak-EWMA latency** (as tower's `balance::p2c` over
//!   `load::PeakEwma`): two instances are drawn at random and the one with the lower
//!   `latency estimate x (requests in flight + 1)` gets the attempt. The estimate jumps to any
//!   slower answer at once and decays back over about 10 s (tower's default), so an instance
//!   that slows down is avoided quickly and tried again later. A failed attempt (an error, a
//!   5xx other than an overloaded answer) counts as a 1 s answer: an instance that fails fast
//!   must not look fast;
//! - **ejection**: an answer with `x-overloaded` or a `Retry-After` (429, 503) takes the
//!   instance out of the rotation for the time it asks (1 s without a hint, at most 60 s);
//!   never every instance: when all are out, the one ejected longest ago is used;
//! - **a retry goes elsewhere**: each request carries the instance its last attempt went to
//!   ([`Tried`], put in by [`mark`] above the retry layer), and the next attempt avoids it when
//!   another is in the rotation. The provider's retry layer then retries overloaded answers
//!   (`retry_overloaded_peers`): with another instance to go to, it is the hop that owns retries.
//!   An ejected instance's `Retry-After` is spent on its ejection and taken off the answer while
//!   another instance is in the rotation, so the retry follows the retry layer's own backoff.
//!
//! tower's `Balance` itself does not serve here: it needs `&mut self`, so the gateway's shared,
//! per-thread stacks would have to reach it through a `Buffer` (a channel and a task per
//! request), and it waits, rather than answers, when no instance is ready.
//!
//! Series: `gateway.balance.picks{provider,instance}` and
//! `gateway.balance.ejections{provider,instance}`, every instance at 0 from start-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{HeaderValue, Request, Response, Uri};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_reliability_core::X_OVERLOADED;

use crate::clock::now_ms;

/// How fast the latency estimate forgets (tower's `PeakEwma` default).
const DECAY: Duration = Duration::from_secs(10);
/// The estimate of an instance nothing was sent to yet: low, so that it gets tried.
const FIRST_ESTIMATE: Duration = Duration::from_millis(1);
/// What a failed attempt counts as.
const FAILURE_COST: Duration = Duration::from_secs(1);
/// How long an overloaded answer without a hint keeps the instance out; and the most any hint
/// may.
const EJECT_DEFAULT: Duration = Duration::from_secs(1);
const EJECT_MAX: Duration = Duration::from_secs(60);

/// One instance of a provider.
#[derive(Debug)]
struct Instance {
    authority: Authority,
    host: HeaderValue,
    estimate: Mutex<Estimate>,
    in_flight: AtomicU32,
    /// Out of the rotation until this time (`clock::now_ms`); 0: in it.
    ejected_until: AtomicU64,
    /// When it was last ejected (ms); 0: never.
    ejected_at: AtomicU64,
    picks: [KeyValue; 2],
}

#[derive(Debug)]
struct Estimate {
    /// Seconds.
    value: f64,
    at: Instant,
}

impl Instance {
    /// `estimate x (in flight + 1)`, the estimate decayed by the time since its last sample
    /// (as tower's `PeakEwma` reads it): an instance nobody picks because it once was slow or
    /// failing is picked again as its estimate fades.
    fn load(&self, now: Instant) -> f64 {
        let estimate = self
            .estimate
            .lock()
            .map_or(FIRST_ESTIMATE.as_secs_f64(), |e| {
                let idle = now.saturating_duration_since(e.at).as_secs_f64();
                e.value * (-idle / DECAY.as_secs_f64()).exp()
            });
        estimate * f64::from(self.in_flight.load(Ordering::Relaxed) + 1)
    }

    fn in_rotation(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) <= now
    }

    /// Peak EWMA: a slower answer is taken at once, a faster one blends in by elapsed time.
    fn observe(&self, took: Duration) {
        let Ok(mut estimate) = self.estimate.lock() else {
            return;
        };
        let now = Instant::now();
        let sample = took.as_secs_f64();
        if sample > estimate.value {
            estimate.value = sample;
        } else {
            let elapsed = now.saturating_duration_since(estimate.at).as_secs_f64();
            let keep = (-elapsed / DECAY.as_secs_f64()).exp();
            estimate.value = estimate.value * keep + sample * (1.0 - keep);
        }
        estimate.at = now;
    }
}

/// A provider's instances and what the balancer knows of them; shared by every attempt.
#[derive(Debug)]
pub struct Instances {
    list: Vec<Instance>,
    picks: Option<Counter<u64>>,
    ejections: Option<Counter<u64>>,
    next: AtomicUsize,
}

impl Instances {
    /// The instances at `bases` (`http://host:port`, validated at start-up) of `provider`.
    pub fn new(provider: &str, bases: &[String], meter: Option<&Meter>) -> Arc<Instances> {
        let list: Vec<Instance> = bases
            .iter()
            .map(|base| {
                let uri: Uri = base.parse().unwrap_or_default();
                let authority = uri
                    .authority()
                    .cloned()
                    .unwrap_or_else(|| Authority::from_static("localhost"));
                Instance {
                    host: HeaderValue::from_str(authority.as_str())
                        .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                    picks: [
                        KeyValue::new("provider", provider.to_string()),
                        KeyValue::new("instance", authority.to_string()),
                    ],
                    authority,
                    estimate: Mutex::new(Estimate {
                        value: FIRST_ESTIMATE.as_secs_f64(),
                        at: Instant::now(),
                    }),
                    in_flight: AtomicU32::new(0),
                    ejected_until: AtomicU64::new(0),
                    ejected_at: AtomicU64::new(0),
                }
            })
            .collect();
        let picks = meter.map(|meter| {
            meter
                .u64_counter("gateway.balance.picks")
                .with_description("Attempts sent to each instance of a provider.")
                .with_unit("{attempt}")
                .build()
        });
        let ejections = meter.map(|meter| {
            meter
                .u64_counter("gateway.balance.ejections")
                .with_description("Times an instance left the rotation after an overloaded answer.")
                .with_unit("{ejection}")
                .build()
        });
        // Every instance from the first scrape, at 0.
        for instance in &list {
            if let Some(picks) = &picks {
                picks.add(0, &instance.picks);
            }
            if let Some(ejections) = &ejections {
                ejections.add(0, &instance.picks);
            }
        }
        Arc::new(Instances {
            list,
            picks,
            ejections,
            next: AtomicUsize::new(0),
        })
    }

    /// The instance for an attempt whose request last went to `avoid` (if any).
    fn pick(&self, avoid: Option<usize>) -> usize {
        let now = now_ms();
        let n = self.list.len();
        let usable = |i: usize| self.list[i].in_rotation(now) && Some(i) != avoid;
        let candidates: Vec<usize> = (0..n).filter(|&i| usable(i)).collect();
        let chosen = match candidates.len() {
            0 => {
                // Everyone is out (or the only one in was just tried): an instance still in
                // the rotation, else the one ejected longest ago.
                (0..n)
                    .filter(|&i| self.list[i].in_rotation(now))
                    .min_by_key(|&i| self.list[i].ejected_at.load(Ordering::Relaxed))
                    .or_else(|| {
                        (0..n).min_by_key(|&i| self.list[i].ejected_at.load(Ordering::Relaxed))
                    })
                    .unwrap_or(0)
            }
            1 => candidates[0],
            len => {
                let a = candidates[fastrand::usize(..len)];
                let mut b = candidates[fastrand::usize(..len - 1)];
                if b == a {
                    b = candidates[len - 1];
                }
                let at = Instant::now();
                let (la, lb) = (self.list[a].load(at), self.list[b].load(at));
                if la < lb || (la == lb && self.next.fetch_add(1, Ordering::Relaxed) % 2 == 0) {
                    a
                } else {
                    b
                }
            }
        };
        if let Some(picks) = &self.picks {
            picks.add(1, &self.list[chosen].picks);
        }
        chosen
    }

    /// Whether an instance other than `index` is in the rotation now.
    fn others_in_rotation(&self, index: usize) -> bool {
        let now = now_ms();
        (0..self.list.len()).any(|i| i != index && self.list[i].in_rotation(now))
    }

    fn eject(&self, index: usize, for_how_long: Duration) {
        let instance = &self.list[index];
        let now = now_ms();
        let until = now + for_how_long.min(EJECT_MAX).as_millis() as u64;
        instance.ejected_until.store(until, Ordering::Relaxed);
        instance.ejected_at.store(now, Ordering::Relaxed);
        if let Some(ejections) = &self.ejections {
            ejections.add(1, &instance.picks);
        }
        tracing::debug!(instance = %instance.authority, ?for_how_long, "instance out of rotation");
    }
}

/// The instance a request's last attempt went to, shared by its attempts (they are clones of
/// one request, extensions included).
#[derive(Clone, Debug, Default)]
pub struct Tried(Arc<AtomicUsize>);

/// `usize::MAX`: no attempt yet.
const NONE_TRIED: usize = usize::MAX;

/// Puts a fresh [`Tried`] in `request`, above the retry layer.
pub fn mark<B>(mut request: Request<B>) -> Request<B> {
    request
        .extensions_mut()
        .insert(Tried(Arc::new(AtomicUsize::new(NONE_TRIED))));
    request
}

/// Sends each attempt to one of a provider's [`Instances`].
#[derive(Clone, Debug)]
pub struct BalanceLayer {
    instances: Arc<Instances>,
}

impl BalanceLayer {
    pub fn new(instances: Arc<Instances>) -> Self {
        BalanceLayer { instances }
    }
}

impl<S> Layer<S> for BalanceLayer {
    type Service = Balance<S>;

    fn layer(&self, inner: S) -> Balance<S> {
        Balance {
            inner,
            instances: Arc::clone(&self.instances),
        }
    }
}

/// See [`BalanceLayer`].
#[derive(Clone, Debug)]
pub struct Balance<S> {
    inner: S,
    instances: Arc<Instances>,
}

impl<S, B, ResB> Service<Request<B>> for Balance<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BalanceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let tried = request.extensions().get::<Tried>().cloned();
        let avoid = tried
            .as_ref()
            .map(|t| t.0.load(Ordering::Relaxed))
            .filter(|&i| i != NONE_TRIED);
        let index = self.instances.pick(avoid);
        if let Some(tried) = &tried {
            tried.0.store(index, Ordering::Relaxed);
        }
        let instance = &self.instances.list[index];
        let mut parts = request.uri().clone().into_parts();
        parts.authority = Some(instance.authority.clone());
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
            request
                .headers_mut()
                .insert(http::header::HOST, instance.host.clone());
        }
        instance.in_flight.fetch_add(1, Ordering::Relaxed);
        BalanceFuture {
            inner: self.inner.call(request),
            guard: InFlight {
                instances: Arc::clone(&self.instances),
                index,
            },
            started: Instant::now(),
        }
    }
}

/// One attempt in flight on an instance, until its answer (or its drop).
struct InFlight {
    instances: Arc<Instances>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.instances.list[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The answer of one attempt, observed for the instance it went to.
    pub struct BalanceFuture<F> {
        #[pin]
        inner: F,
        guard: InFlight,
        started: Instant,
    }
}

impl<F, ResB, E> Future for BalanceFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut outcome = ready!(this.inner.poll(cx));
        let instances = &this.guard.instances;
        let index = this.guard.index;
        let took = this.started.elapsed();
        match &mut outcome {
            Ok(response) => {
                let overloaded = response.headers().contains_key(X_OVERLOADED);
                let hint = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let status = response.status();
                let shedding = status == http::StatusCode::TOO_MANY_REQUESTS
                    || status == http::StatusCode::SERVICE_UNAVAILABLE;
                if overloaded || (shedding && hint.is_some()) {
                    instances.eject(index, hint.unwrap_or(EJECT_DEFAULT));
                    // The hint was this instance's, and is spent on its ejection: a retry goes
                    // to another instance after the retry layer's own backoff, not after the
                    // wait this one asked for.
                    if instances.others_in_rotation(index) {
                        let headers = response.headers_mut();
                        headers.remove(http::header::RETRY_AFTER);
                        headers.remove("grpc-retry-pushback-ms");
                    }
                }
                // An overloaded answer is fast and says nothing of the instance's latency: the
                // ejection deals with it. Other server errors count as slow answers.
                let failed = !overloaded && !shedding && status.is_server_error();
                instances.list[index].observe(if failed { took.max(FAILURE_COST) } else { took });
            }
            Err(_) => instances.list[index].observe(took.max(FAILURE_COST)),
        }
        Poll::Ready(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(n: usize) -> Arc<Instances> {
        let bases: Vec<String> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 9000 + i))
            .collect();
        Instances::new("p", &bases, None)
    }

    #[test]
    fn the_least_loaded_of_two_wins_and_a_retry_avoids_the_last_instance() {
        let set = instances(2);
        set.list[0].observe(Duration::from_millis(200));
        set.list[1].observe(Duration::from_millis(2));
        for _ in 0..50 {
            assert_eq!(set.pick(None), 1);
        }
        // A retry after instance 1 goes to 0, however slow.
        assert_eq!(set.pick(Some(1)), 0);
    }

    #[test]
    fn ejected_instances_leave_the_rotation_but_never_all_of_them() {
        let set = instances(3);
        set.eject(0, Duration::from_secs(30));
        set.eject(1, Duration::from_secs(30));
        for _ in 0..50 {
            assert_eq!(set.pick(None), 2);
        }
        set.eject(2, Duration::from_secs(30));
        // All out: the one ejected longest ago (0; ejections in the same millisecond tie, and
        // the lowest index wins).
        let chosen = set.pick(None);
        assert!(
            set.list[chosen].ejected_at.load(Ordering::Relaxed)
                <= set.list[2].ejected_at.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn the_estimate_takes_peaks_at_once_and_forgets_them_slowly() {
        let set = instances(1);
        let instance = &set.list[0];
        instance.observe(Duration::from_millis(500));
        let now = Instant::now();
        assert!((instance.load(now) - 0.5).abs() < 1e-3);
        instance.observe(Duration::from_millis(1));
        // A fast answer right after blends in by the elapsed time: almost nothing yet.
        assert!(instance.load(Instant::now()) > 0.45);
        // Read 10 s later, the estimate has faded to about a third.
        let later = instance.load(Instant::now() + DECAY);
        assert!((0.15..0.2).contains(&later), "{later}");
    }
}
