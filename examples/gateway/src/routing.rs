//! Picking a provider for each request, and tracking which providers keep failing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Histogram, Meter};
use tower_retry_classified::CircuitHandle;

use crate::config::Routing;

/// Consecutive failed calls after which a provider is skipped.
const FAILURES_TO_SKIP: u32 = 3;
/// How long a failing provider is skipped before it gets another chance.
const SKIP_FOR: Duration = Duration::from_secs(5);

/// Why the router picked a provider: the `reason` label of `gateway.routing.decisions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Round robin, every provider healthy.
    RoundRobin,
    /// Round robin, some providers skipped: picked among the healthy ones.
    OnlyHealthy,
    /// Failover mode, the first provider is healthy.
    Primary,
    /// Failover mode, an earlier provider is failing: picked the next healthy one.
    Failover,
    /// Every provider is failing: picked one anyway (a failing provider beats none).
    AllUnhealthy,
}

impl Reason {
    const ALL: [Reason; 5] = [
        Reason::RoundRobin,
        Reason::OnlyHealthy,
        Reason::Primary,
        Reason::Failover,
        Reason::AllUnhealthy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RoundRobin => "round_robin",
            Reason::OnlyHealthy => "only_healthy",
            Reason::Primary => "primary",
            Reason::Failover => "failover",
            Reason::AllUnhealthy => "all_unhealthy",
        }
    }
}

/// Health of one provider: consecutive failures and, once they reach the threshold, when it may
/// be tried again (milliseconds since the router started; 0 = not skipped).
#[derive(Debug, Default)]
struct Health {
    failures: AtomicU32,
    skip_until_ms: AtomicU64,
}

/// The router: a provider index for each request, plus the two routing instruments.
pub struct Router {
    mode: Routing,
    skip_for: Duration,
    health: Vec<Health>,
    /// Each provider's circuit breaker, when breakers are on (may be empty).
    circuits: Vec<Option<CircuitHandle>>,
    next: AtomicUsize,
    started: Instant,
    decisions: Counter<u64>,
    duration: Histogram<f64>,
    /// Prepared attributes per (provider, reason), so a decision allocates nothing.
    attributes: Vec<[KeyValue; 2]>,
    /// Instruments bound to those attributes on first use: recording through them skips the
    /// SDK's per-call attribute hashing (one series is created only once it is taken).
    bound: Vec<OnceLock<(BoundCounter<u64>, BoundHistogram<f64>)>>,
}

impl Router {
    /// `circuits`: each provider's breaker, when breakers are on; a provider whose breaker
    /// refuses calls is skipped like one that keeps failing.
    pub fn new(
        mode: Routing,
        providers: &[String],
        circuits: Vec<Option<CircuitHandle>>,
        meter: &Meter,
    ) -> Self {
        let attributes = providers
            .iter()
            .flat_map(|name| {
                Reason::ALL.iter().map(move |reason| {
                    [
                        KeyValue::new("provider", name.clone()),
                        KeyValue::new("reason", reason.as_str()),
                    ]
                })
            })
            .collect::<Vec<_>>();
        let bound = attributes.iter().map(|_| OnceLock::new()).collect();
        let router = Self {
            bound,
            mode,
            skip_for: SKIP_FOR,
            health: providers.iter().map(|_| Health::default()).collect(),
            circuits,
            next: AtomicUsize::new(0),
            started: Instant::now(),
            decisions: meter
                .u64_counter("gateway.routing.decisions")
                .with_description(
                    "Provider choices of the gateway's router, by provider and reason",
                )
                .build(),
            duration: meter
                .f64_histogram("gateway.routing.duration")
                .with_unit("s")
                .with_description("Time the router took to choose a provider")
                .with_boundaries(vec![
                    1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 1e-4, 1e-3,
                ])
                .build(),
            attributes,
        };
        // Each provider's decisions under its usual reason exist from the first scrape, at 0: a
        // rate over a series that appears only with its first event is empty, not zero (the
        // tower layers make their counters' series the same way). Same series as `pick` binds.
        for index in 0..providers.len() {
            let series = index * Reason::ALL.len() + router.usual(index) as usize;
            router.decisions.add(0, &router.attributes[series]);
        }
        router
    }

    /// The reason provider `index` is picked for while every provider is healthy.
    fn usual(&self, index: usize) -> Reason {
        match self.mode {
            Routing::RoundRobin => Reason::RoundRobin,
            Routing::Failover if index == 0 => Reason::Primary,
            Routing::Failover => Reason::Failover,
        }
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// `at` in milliseconds since the router started: the clock health decisions use.
    fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    fn healthy(&self, index: usize, now_ms: u64) -> bool {
        let until = self.health[index].skip_until_ms.load(Ordering::Relaxed);
        (until == 0 || now_ms >= until)
            && !self
                .circuits
                .get(index)
                .and_then(Option::as_ref)
                .is_some_and(CircuitHandle::refuses)
    }

    /// Chooses a provider and records the decision.
    pub fn pick(&self) -> (usize, Reason) {
        // One clock read serves both the health check and the decision's duration.
        let started = Instant::now();
        let (index, reason) = self.choose(self.ms_at(started));
        let series = index * Reason::ALL.len() + reason as usize;
        let (decisions, duration) = self.bound[series].get_or_init(|| {
            let attributes = &self.attributes[series];
            (
                self.decisions.bind(attributes),
                self.duration.bind(attributes),
            )
        });
        decisions.add(1);
        duration.record(started.elapsed().as_secs_f64());
        (index, reason)
    }

    fn choose(&self, now: u64) -> (usize, Reason) {
        let n = self.health.len();
        match self.mode {
            Routing::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
                if self.healthy(start, now) {
                    let all = (0..n).all(|i| self.healthy(i, now));
                    let reason = if all {
                        Reason::RoundRobin
                    } else {
                        Reason::OnlyHealthy
                    };
                    return (start, reason);
                }
                (1..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| self.healthy(i, now))
                    .map_or((start, Reason::AllUnhealthy), |i| (i, Reason::OnlyHealthy))
            }
            Routing::Failover => match (0..n).find(|&i| self.healthy(i, now)) {
                Some(0) => (0, Reason::Primary),
                Some(i) => (i, Reason::Failover),
                None => (0, Reason::AllUnhealthy),
            },
        }
    }

    /// Records the final outcome of a call to provider `index` (after any retries).
    pub fn outcome(&self, index: usize, ok: bool) {
        let health = &self.health[index];
        if ok {
            // Read before writing: on the common all-healthy path this keeps the cache line
            // shared between cores instead of bouncing it on every request.
            if health.failures.load(Ordering::Relaxed) != 0 {
                health.failures.store(0, Ordering::Relaxed);
            }
            if health.skip_until_ms.load(Ordering::Relaxed) != 0 {
                health.skip_until_ms.store(0, Ordering::Relaxed);
            }
            return;
        }
        let failures = health.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= FAILURES_TO_SKIP {
            // Skip it for a while; the first call after that is its trial.
            let until = self.now_ms() + self.skip_for.as_millis() as u64;
            health.skip_until_ms.store(until.max(1), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(mode: Routing, n: usize) -> Router {
        let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        Router::new(
            mode,
            &names,
            Vec::new(),
            &opentelemetry::global::meter("test"),
        )
    }

    #[tokio::test]
    async fn failover_skips_a_provider_whose_breaker_is_open() {
        use tower::{Service, ServiceExt};
        let breaker = tower_retry_classified::CircuitBreakerBuilder::new()
            .min_volume(1)
            .build();
        let handle = breaker.handle();
        let names: Vec<String> = vec!["primary".into(), "backup".into()];
        let r = Router::new(
            Routing::Failover,
            &names,
            vec![Some(handle.clone()), None],
            &opentelemetry::global::meter("test"),
        );
        assert_eq!(r.pick(), (0, Reason::Primary));
        // One 503 through the primary's breaker (volume 1, ratio 0.5): open.
        let mut primary = tower::ServiceBuilder::new()
            .layer(breaker)
            .service(tower::service_fn(|_: ()| async {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(503)
                        .body(String::new())
                        .unwrap(),
                )
            }));
        primary.ready().await.unwrap().call(()).await.unwrap();
        assert!(handle.refuses());
        assert_eq!(r.pick(), (1, Reason::Failover));
    }

    #[test]
    fn round_robin_takes_turns_and_skips_failing_providers() {
        let r = router(Routing::RoundRobin, 3);
        let picks: Vec<_> = (0..3).map(|_| r.pick()).collect();
        assert_eq!(
            picks,
            vec![
                (0, Reason::RoundRobin),
                (1, Reason::RoundRobin),
                (2, Reason::RoundRobin)
            ]
        );
        for _ in 0..FAILURES_TO_SKIP {
            r.outcome(1, false);
        }
        let picks: Vec<_> = (0..3).map(|_| r.pick().0).collect();
        assert_eq!(picks, vec![0, 2, 2]);
        r.outcome(1, true);
        let picks: Vec<_> = (0..2).map(|_| r.pick()).collect();
        assert_eq!(
            picks,
            vec![(0, Reason::RoundRobin), (1, Reason::RoundRobin)]
        );
    }

    #[test]
    fn a_skipped_provider_gets_a_trial_after_the_skip_period() {
        let mut r = router(Routing::Failover, 2);
        r.skip_for = Duration::from_millis(500);
        for _ in 0..FAILURES_TO_SKIP {
            r.outcome(0, false);
        }
        assert_eq!(r.pick(), (1, Reason::Failover));
        std::thread::sleep(Duration::from_millis(550));
        assert_eq!(
            r.pick(),
            (0, Reason::Primary),
            "trial after the skip period"
        );
        r.outcome(0, false);
        assert_eq!(
            r.pick(),
            (1, Reason::Failover),
            "a failed trial skips it again"
        );
        std::thread::sleep(Duration::from_millis(550));
        r.outcome(0, true);
        assert_eq!(r.pick(), (0, Reason::Primary));
    }

    #[test]
    fn failover_prefers_the_first_healthy_provider() {
        let r = router(Routing::Failover, 2);
        assert_eq!(r.pick(), (0, Reason::Primary));
        r.outcome(0, false);
        assert_eq!(r.pick(), (0, Reason::Primary), "one failure is not enough");
        for _ in 0..FAILURES_TO_SKIP {
            r.outcome(0, false);
        }
        assert_eq!(r.pick(), (1, Reason::Failover));
        for _ in 0..FAILURES_TO_SKIP {
            r.outcome(1, false);
        }
        assert_eq!(r.pick(), (0, Reason::AllUnhealthy));
    }
}
