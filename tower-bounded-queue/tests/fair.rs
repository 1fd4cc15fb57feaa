//! Fair share between keys, exact: shares, evictions and the order waiters are served in, on
//! tokio's paused clock with one slot held at a gate.

mod common;

use std::sync::{Arc, Mutex};

use common::{Gate, TestMetrics};
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_bounded_queue::{BoundedQueueBuilder, OverloadReason, Overloaded};
use tower_layer::Layer;

/// A request: its tenant and its number.
type Job = (char, u32);

/// A service that records each job as it starts, then holds it at the gate.
fn recording(
    gate: &Gate,
    started: &Arc<Mutex<Vec<Job>>>,
) -> impl Service<Job, Response = Job, Error = BoxError, Future: Send> + Clone + Send + use<> {
    let gate = gate.clone();
    let started = Arc::clone(started);
    service_fn(move |job: Job| {
        let gate = gate.clone();
        started.lock().unwrap().push(job);
        async move {
            gate.pass().await;
            Ok::<_, BoxError>(job)
        }
    })
}

fn reason(error: &BoxError) -> OverloadReason {
    error
        .downcast_ref::<Overloaded>()
        .unwrap_or_else(|| panic!("expected Overloaded, got {error}"))
        .reason()
}

#[tokio::test(start_paused = true)]
async fn a_flooding_key_keeps_only_its_share_and_keys_are_served_in_turn() {
    let metrics = TestMetrics::new();
    let gate = Gate::new();
    let started = Arc::new(Mutex::new(Vec::new()));
    let layer = BoundedQueueBuilder::new(1)
        .capacity(10)
        .meter(&metrics.meter())
        .fair_by(|job: &Job| Some(job.0))
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(recording(&gate, &started));
    let mut call = |job: Job| {
        let future = svc.call(job);
        tokio::spawn(future)
    };

    // A takes the slot and, alone, may fill the whole queue.
    let mut a: Vec<_> = (0..=10).map(|n| call(('a', n))).collect();
    assert_eq!(handle.depth(), 10);
    // B arrives at a full queue: with two keys waiting A's share is 5, so A's newest waiter
    // makes room for B.
    let b = call(('b', 1));
    assert_eq!(handle.depth(), 10);
    let evicted = a.pop().unwrap().await.unwrap().unwrap_err();
    assert_eq!(reason(&evicted), OverloadReason::FairShare);
    // A is over its share: its next request is refused at once.
    let refused = call(('a', 11)).await.unwrap().unwrap_err();
    assert_eq!(reason(&refused), OverloadReason::FairShare);
    // C arrives: three keys, shares of 4; A's newest makes room again.
    let c = call(('c', 1));
    let evicted = a.pop().unwrap().await.unwrap().unwrap_err();
    assert_eq!(reason(&evicted), OverloadReason::FairShare);
    assert_eq!(handle.depth(), 10);

    // Served in turn: A, B, C, then A's remaining waiters in their order.
    gate.release(100);
    for task in a.into_iter().chain([b, c]) {
        task.await.unwrap().unwrap();
    }
    let order: Vec<Job> = started.lock().unwrap().clone();
    assert_eq!(
        order,
        [
            ('a', 0),
            ('a', 1),
            ('b', 1),
            ('c', 1),
            ('a', 2),
            ('a', 3),
            ('a', 4),
            ('a', 5),
            ('a', 6),
            ('a', 7),
            ('a', 8),
        ]
    );
    assert_eq!(
        metrics.sum("tower.queue.rejections", &[("reason", "fair_share")]),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn keys_beyond_the_cap_and_requests_without_a_key_share_one() {
    let gate = Gate::new();
    let started = Arc::new(Mutex::new(Vec::new()));
    // One key of its own at most; tenant 'x' has no key.
    let layer = BoundedQueueBuilder::new(1)
        .capacity(4)
        .fair_keys(1)
        .fair_by(|job: &Job| (job.0 != 'x').then_some(job.0))
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(recording(&gate, &started));
    let mut call = |job: Job| {
        let future = svc.call(job);
        tokio::spawn(future)
    };

    let held = call(('a', 0));
    // The first keyed tenant to wait gets the one line of its own; 'x' (no key) and 'c'
    // (beyond the cap) share the other.
    let b1 = call(('b', 1));
    let x1 = call(('x', 1));
    let c1 = call(('c', 1));
    assert_eq!(handle.depth(), 3);
    // 'a' has no waiter, but shares the line that already holds its share (2 of 4).
    let refused = call(('a', 1)).await.unwrap().unwrap_err();
    assert_eq!(reason(&refused), OverloadReason::FairShare);
    let b2 = call(('b', 2));
    assert_eq!(handle.depth(), 4);
    let refused = call(('d', 1)).await.unwrap().unwrap_err();
    assert_eq!(reason(&refused), OverloadReason::FairShare);

    gate.release(10);
    for task in [held, b1, x1, c1, b2] {
        task.await.unwrap().unwrap();
    }
    // The two lines in turn, each in arrival order.
    let order: Vec<Job> = started.lock().unwrap().clone();
    assert_eq!(order, [('a', 0), ('b', 1), ('x', 1), ('b', 2), ('c', 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_leaving_its_line_keeps_the_turns_in_order() {
    let gate = Gate::new();
    let started = Arc::new(Mutex::new(Vec::new()));
    let layer = BoundedQueueBuilder::new(1)
        .capacity(10)
        .max_wait(std::time::Duration::from_secs(1))
        .fair_by(|job: &Job| Some(job.0))
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(recording(&gate, &started));

    let held = tokio::spawn(svc.ready().await.unwrap().call(('a', 0)));
    let b1 = tokio::spawn(svc.ready().await.unwrap().call(('b', 1)));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let c1 = tokio::spawn(svc.ready().await.unwrap().call(('c', 1)));
    let b2 = tokio::spawn(svc.ready().await.unwrap().call(('b', 2)));
    // b1 waited its second and leaves; b keeps its place in the turns with b2.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(b1.await.unwrap().is_err());
    assert_eq!(handle.depth(), 2);
    gate.release(10);
    for task in [held, c1, b2] {
        task.await.unwrap().unwrap();
    }
    let order: Vec<Job> = started.lock().unwrap().clone();
    assert_eq!(order, [('a', 0), ('b', 2), ('c', 1)]);
}
