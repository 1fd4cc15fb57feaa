//! Adaptive concurrency, exact on tokio's paused clock: the limit finds a real upstream's
//! concurrency, failures shrink it once per window, the queue still rejects at capacity, a
//! shrinking limit cancels nobody and a growing one admits waiters at once, and the floor and
//! ceiling hold. Every test counts one outcome per request sent.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{Gate, TestMetrics, client, serve};
use http::StatusCode;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_bounded_queue::{
    Adaptive, BoundedQueueBuilder, OverloadReason, Overloaded, QueueHandle, X_OVERLOADED,
};
use tower_layer::Layer;

/// The upstream's real concurrency.
const N: usize = 10;
/// How long the upstream takes with a permit at once.
const FAST: Duration = Duration::from_millis(10);
/// How long it takes, once it has a permit, when it had to wait for one (its pool was
/// exhausted: think of a connection pool that had to open a connection, or a cold cache).
const SLOW: Duration = Duration::from_millis(100);

/// A handler that serves `N` at once: a request that finds a free permit takes `FAST`, one that
/// must wait for a permit waits, then takes `SLOW`. Counts the requests that had to wait.
fn semaphore_upstream(waited: Arc<AtomicUsize>) -> Router {
    let permits = Arc::new(Semaphore::new(N));
    Router::new().route(
        "/",
        get(move || {
            let permits = permits.clone();
            let waited = waited.clone();
            async move {
                let (permit, hold) = match permits.clone().try_acquire_owned() {
                    Ok(permit) => (permit, FAST),
                    Err(_) => {
                        waited.fetch_add(1, Ordering::SeqCst);
                        (permits.acquire_owned().await.unwrap(), SLOW)
                    }
                };
                tokio::time::sleep(hold).await;
                drop(permit);
                "ok"
            }
        }),
    )
}

/// The server runs the queue in front of a handler whose concurrency it does not know; 40 hyper
/// clients on loopback keep it saturated. Latency is timed inside the server, around the
/// handler, so loopback I/O (during which the paused clock may jump to the next timer) never
/// counts; the queue always holds waiters, so those jumps never starve the handler either.
#[tokio::test(start_paused = true)]
async fn converges_to_the_upstreams_real_concurrency() {
    const CALLERS: usize = 40;
    let metrics = TestMetrics::new();
    let waited = Arc::new(AtomicUsize::new(0));
    let layer = BoundedQueueBuilder::new(2)
        .capacity(1000)
        .adaptive(Adaptive::aimd().floor(1).ceiling(64))
        .name("upstream")
        .meter(&metrics.meter())
        .build()
        .http();
    let handle = layer.handle();
    let addr = serve(semaphore_upstream(waited.clone()).layer(layer)).await;
    let client = client();

    let start = Instant::now();
    let settled = start + Duration::from_secs(3);
    let end = start + Duration::from_secs(6);
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let (mut sent, mut ok, mut other) = (0, 0, 0);
                while Instant::now() < end {
                    sent += 1;
                    match common::get(&client, addr, "/").await.status {
                        StatusCode::OK => ok += 1,
                        _ => other += 1,
                    }
                }
                (sent, ok, other)
            })
        })
        .collect();

    // The limit over the second half, sampled every 5 ms.
    tokio::time::sleep_until(settled).await;
    let (mut low, mut high) = (usize::MAX, 0);
    while Instant::now() < end {
        let limit = handle.concurrency_limit();
        low = low.min(limit);
        high = high.max(limit);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut sent, mut ok, mut other) = (0, 0, 0);
    for caller in callers {
        let (s, o, x) = caller.await.unwrap();
        sent += s;
        ok += o;
        other += x;
    }

    assert_eq!(ok + other, sent, "one outcome per request");
    assert_eq!(other, 0, "capacity 1000: nobody rejected");
    assert!(sent > 1000, "{sent} requests in 6 s");
    // Within 10% of N: N - 1 to N + 1 for N = 10 (N = 8 would leave no room: 10% of 8 is
    // less than one request, and AIMD must probe past N to find it). The limit grows to 11,
    // the request that then waits upstream answers slowly, and it drops to floor(11 * 0.9) = 9:
    // a sawtooth 9, 10, 11, 9, ... every ~190 ms.
    let final_limit = handle.concurrency_limit();
    let band = (N - N / 10)..=(N + N / 10);
    assert!(
        band.contains(&final_limit),
        "final limit {final_limit}, expected {band:?}"
    );
    assert!(
        band.contains(&low) && band.contains(&high),
        "after 3 s the limit stayed within {band:?}, seen {low}..={high}"
    );
    assert!(waited.load(Ordering::SeqCst) > 0, "the limit probed past N");
    assert_eq!(handle.concurrency(), 2, "where it started");
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
    assert_eq!(
        metrics.value(
            "tower.queue.concurrency_limit",
            &[("tower.queue.name", "upstream")]
        ),
        Some(final_limit as f64)
    );
}

/// Overload answers from a real server shrink the limit (HTTP mode classifies them); other
/// answers leave it alone.
#[tokio::test(start_paused = true)]
async fn failing_answers_shrink_the_limit_and_others_do_not() {
    let layer = BoundedQueueBuilder::new(64)
        .adaptive(Adaptive::aimd().floor(1).ceiling(64).backoff(0.5))
        .build()
        .http();
    let handle = layer.handle();
    let router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/404", get(|| async { StatusCode::NOT_FOUND }))
        .route("/500", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/503", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/429", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
        .route(
            "/grpc-unavailable",
            get(|| async { ([("grpc-status", "14")], "") }),
        )
        .route(
            "/grpc-not-found",
            get(|| async { ([("grpc-status", "5")], "") }),
        )
        .layer(layer);
    let addr = serve(router).await;
    let client = client();

    // (path, status seen, limit after it)
    let script = [
        ("/ok", 200, 64),
        ("/404", 404, 64),
        ("/500", 500, 32),
        ("/grpc-not-found", 200, 32),
        ("/503", 503, 16),
        ("/429", 429, 8),
        ("/grpc-unavailable", 200, 4),
        ("/ok", 200, 4),
        ("/500", 500, 2),
        ("/500", 500, 1),
        ("/500", 500, 1),
    ];
    let mut outcomes = 0;
    for (path, status, limit) in script {
        let answer = common::get(&client, addr, path).await;
        outcomes += 1;
        assert_eq!(answer.status, status, "{path}");
        assert!(!answer.headers.contains_key(&X_OVERLOADED), "{path}");
        assert_eq!(handle.concurrency_limit(), limit, "after {path}");
    }
    assert_eq!(outcomes, script.len());
}

/// A service whose requests wait at the gate, then fail if asked to.
fn held(
    gate: &Gate,
) -> impl Service<bool, Response = (), Error = BoxError, Future: Send> + Clone + Send + use<> {
    let gate = gate.clone();
    service_fn(move |fail: bool| {
        let gate = gate.clone();
        async move {
            gate.pass().await;
            if fail {
                Err::<(), BoxError>("upstream failed".into())
            } else {
                Ok(())
            }
        }
    })
}

/// Lets spawned tasks run (no timer is involved, so the paused clock stays put).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn overloaded(error: &BoxError) -> &Overloaded {
    error
        .downcast_ref::<Overloaded>()
        .unwrap_or_else(|| panic!("expected Overloaded, got {error}"))
}

#[tokio::test(start_paused = true)]
async fn failures_of_one_window_shrink_it_once_and_slow_cancellations_count() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(16)
        .adaptive(
            Adaptive::aimd()
                .floor(1)
                .ceiling(64)
                .backoff(0.5)
                .max_latency(Duration::from_millis(100)),
        )
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));

    // Eight requests inside at once, all failing: they started in one window, one decrease.
    let calls: Vec<_> = (0..8).map(|_| tokio::spawn(svc.call(true))).collect();
    settle().await;
    assert_eq!(gate.entered(), 8);
    gate.release(8);
    let mut outcomes = 0;
    for call in calls {
        assert!(call.await.unwrap().is_err());
        outcomes += 1;
    }
    assert_eq!(
        handle.concurrency_limit(),
        8,
        "16 halved once, not eight times"
    );

    // A failure that started after that decrease is a new window.
    let call = tokio::spawn(svc.call(true));
    settle().await;
    gate.release(1);
    assert!(call.await.unwrap().is_err());
    outcomes += 1;
    assert_eq!(handle.concurrency_limit(), 4);

    // A caller that gives up (a timeout above) after 150 ms, past the 100 ms threshold:
    // congestion. One that gives up after 50 ms: nothing.
    let gave_up = tokio::time::timeout(Duration::from_millis(150), svc.call(false)).await;
    assert!(gave_up.is_err());
    outcomes += 1;
    assert_eq!(handle.concurrency_limit(), 2);
    let gave_up = tokio::time::timeout(Duration::from_millis(50), svc.call(false)).await;
    assert!(gave_up.is_err());
    outcomes += 1;
    assert_eq!(handle.concurrency_limit(), 2);

    // An answer slower than the threshold: congestion too.
    let call = tokio::spawn(svc.call(false));
    tokio::time::sleep(Duration::from_millis(101)).await;
    gate.release(1);
    assert!(call.await.unwrap().is_ok());
    outcomes += 1;
    assert_eq!(handle.concurrency_limit(), 1);
    assert_eq!(outcomes, 8 + 1 + 2 + 1);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn rejects_at_capacity_while_adaptive_and_a_limit_change_cancels_nobody() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(2)
        .capacity(3)
        .adaptive(
            Adaptive::aimd()
                .floor(1)
                .ceiling(8)
                .backoff(0.5)
                .max_latency(Duration::from_secs(3600)),
        )
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));
    let counts = |h: &QueueHandle| (h.concurrency_limit(), h.in_flight(), h.depth());

    // 2 inside, 3 waiting, 5 rejected at once.
    let first = tokio::spawn(svc.call(true)); // will fail
    let second = tokio::spawn(svc.call(false));
    settle().await;
    let waiting: Vec<_> = (0..3).map(|_| tokio::spawn(svc.call(false))).collect();
    settle().await;
    assert_eq!(counts(&handle), (2, 2, 3));
    let mut rejected = 0;
    for _ in 0..5 {
        let error = svc.call(false).await.unwrap_err();
        let e = overloaded(&error);
        assert_eq!(
            (e.reason(), e.capacity(), e.depth()),
            (OverloadReason::Full, 3, 3)
        );
        rejected += 1;
    }

    // The first fails: the limit halves to 1 while 2 are inside. Its slot is retired, not
    // handed on; the second keeps running; the queue stays full and still rejects.
    gate.release(1);
    assert!(first.await.unwrap().is_err());
    assert_eq!(
        counts(&handle),
        (1, 1, 3),
        "nobody cancelled, nobody admitted"
    );
    let error = svc.call(false).await.unwrap_err();
    assert_eq!(overloaded(&error).reason(), OverloadReason::Full);
    rejected += 1;
    assert_eq!(gate.entered(), 2);

    // The second succeeds (it started before the decrease: no growth); its slot goes to the
    // oldest waiter, as in_flight is within the limit again.
    gate.release(1);
    assert!(second.await.unwrap().is_ok());
    settle().await;
    assert_eq!(counts(&handle), (1, 1, 2));
    assert_eq!(gate.entered(), 3);

    // That waiter entered at full use (1 inside, limit 1): the one probe of the new window. It
    // succeeds, so the limit grows to 2, which admits a waiter at once, and the finishing
    // request hands its own slot to the last one.
    gate.release(1);
    settle().await;
    assert_eq!(counts(&handle), (2, 2, 0));
    assert_eq!(gate.entered(), 5);

    gate.release(2);
    let mut served = 0;
    for call in waiting {
        assert!(call.await.unwrap().is_ok());
        served += 1;
    }
    assert_eq!(served + 2 + rejected, 2 + 3 + 6, "one outcome per request");
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_limit_stays_between_floor_and_ceiling() {
    const CALLERS: usize = 20;
    let failing = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicUsize::new(0));
    let most_inside = Arc::new(AtomicUsize::new(0));
    let svc = service_fn({
        let (failing, inside, most_inside) = (failing.clone(), inside.clone(), most_inside.clone());
        move |_: ()| {
            let (failing, inside, most_inside) =
                (failing.clone(), inside.clone(), most_inside.clone());
            async move {
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most_inside.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                if failing.load(Ordering::SeqCst) {
                    Err::<(), BoxError>("down".into())
                } else {
                    Ok(())
                }
            }
        }
    });
    let layer = BoundedQueueBuilder::new(3)
        .capacity(100)
        .adaptive(Adaptive::aimd().floor(2).ceiling(6).backoff(0.5))
        .build();
    let handle = layer.handle();
    let svc = layer.layer(svc);

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let mut svc = svc.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut sent, mut ok, mut failed) = (0, 0, 0);
                while !stop.load(Ordering::SeqCst) {
                    sent += 1;
                    match svc.ready().await.unwrap().call(()).await {
                        Ok(()) => ok += 1,
                        Err(error) => {
                            assert!(!error.is::<Overloaded>(), "capacity 100: {error}");
                            failed += 1;
                        }
                    }
                }
                (sent, ok, failed)
            })
        })
        .collect();

    // Fast answers at full use: up to the ceiling, never past it.
    let (mut low, mut high) = (usize::MAX, 0);
    for _ in 0..1000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        high = high.max(handle.concurrency_limit());
    }
    assert_eq!(handle.concurrency_limit(), 6);
    assert_eq!(high, 6);
    assert_eq!(
        most_inside.load(Ordering::SeqCst),
        6,
        "never more inside than the ceiling"
    );

    // Every answer fails: down to the floor, never below it.
    failing.store(true, Ordering::SeqCst);
    for _ in 0..1000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        low = low.min(handle.concurrency_limit());
    }
    assert_eq!(handle.concurrency_limit(), 2);
    assert_eq!(low, 2);

    stop.store(true, Ordering::SeqCst);
    let (mut sent, mut ok, mut failed) = (0, 0, 0);
    for caller in callers {
        let (s, o, f) = caller.await.unwrap();
        sent += s;
        ok += o;
        failed += f;
    }
    assert_eq!(ok + failed, sent, "one outcome per request");
    assert!(ok > 0 && failed > 0);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

/// A fixed queue reports its limit the same way and never moves it.
#[tokio::test(start_paused = true)]
async fn a_fixed_limit_is_reported_and_never_moves() {
    let metrics = TestMetrics::new();
    let layer = BoundedQueueBuilder::new(3)
        .meter(&metrics.meter())
        .name("fixed")
        .build();
    let handle = layer.handle();
    assert!(handle.adaptive().is_none());
    let mut svc = layer.layer(service_fn(|fail: bool| async move {
        if fail {
            Err::<(), &str>("no")
        } else {
            Ok::<(), &str>(())
        }
    }));
    let mut outcomes = 0;
    for fail in [true, true, false, true] {
        let _ = svc.ready().await.unwrap().call(fail).await;
        outcomes += 1;
    }
    assert_eq!(outcomes, 4);
    assert_eq!(handle.concurrency_limit(), 3);
    assert_eq!(
        metrics.value(
            "tower.queue.concurrency_limit",
            &[("tower.queue.name", "fixed")]
        ),
        Some(3.0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_inner_service_counts_as_a_failure() {
    let layer = BoundedQueueBuilder::new(8)
        .adaptive(Adaptive::aimd().backoff(0.5))
        .build();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|panic: bool| async move {
        tokio::task::yield_now().await;
        assert!(!panic, "inner service bug");
        Ok::<_, BoxError>(())
    }));
    let mut outcomes = 0;
    let panicked = tokio::spawn(svc.clone().oneshot(true)).await;
    assert!(panicked.unwrap_err().is_panic());
    outcomes += 1;
    assert_eq!(handle.concurrency_limit(), 4);
    assert_eq!(handle.in_flight(), 0, "the slot was freed while unwinding");
    assert!(
        svc.oneshot(false).await.is_ok(),
        "and the queue keeps serving"
    );
    outcomes += 1;
    assert_eq!(outcomes, 2);
}
