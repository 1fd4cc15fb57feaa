//! Overload-aware balancing across workers: two real workers in one queue group, `a` with its
//! only slot taken, `b` free. A job `a` answers `overloaded` is sent again by the caller's
//! client (`worker::client`) and completes on `b`; with retries off, or no budget left, the
//! caller gets `a`'s `overloaded` itself. Every job sent gets an outcome.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use tower_retry_classified::RetryBudget;
use worker::client::{Answer, JobClient};
use worker::protocol::{JobSpec, Status, Step};

use worker_harness::*;

/// Each job's deadline: room for every retry of the first test after `a`'s 1 s hint.
const DEADLINE: Duration = Duration::from_secs(25);
/// The worker `a` says when it expects room again: its queue's `Retry-After`.
const HINT: Duration = Duration::from_secs(1);

/// A short job for the `cpu` pool.
fn job(i: usize) -> JobSpec {
    JobSpec {
        id: Some(format!("j{i}")),
        tenant: Some("acme".into()),
        pool: Some("cpu".into()),
        steps: vec![Step::Sleep { ms: 10 }],
    }
}

fn answer(worker: &str, status: Status) -> Answer {
    Answer {
        worker: Some(worker.into()),
        status,
    }
}

/// `a`'s rejections, as its queue counts them.
fn rejections(worker: &Worker) -> f64 {
    sample_sum(
        &worker.metrics(),
        "tower_queue_rejections_total",
        &[r#"tower_queue_name="cpu""#, r#"reason="full""#],
    )
}

/// Worker `a` with one `cpu` slot and no waiting room, held by a job that outlasts the test,
/// then worker `b` (default pools) in the same queue group.
async fn a_full_and_b_free(nats: &NatsServer) -> (Worker, Worker) {
    let a_env: Vec<(&str, &str)> = ALL_ON
        .into_iter()
        .chain([
            ("WORKER_ID", "a"),
            ("WORKER_POOLS", "cpu=0/1"),
            ("WORKER_TIMEOUT_MS", "120000"),
        ])
        .collect();
    let a = Worker::start(nats, &a_env);
    // Alone in the group, `a` takes the job that holds its slot; published without a reply
    // subject, as nobody waits for it.
    let client = connect(nats).await;
    let hold = json!({"id": "hold", "pool": "cpu", "steps": [{"type": "sleep", "ms": 110_000}]});
    client
        .publish("jobs", serde_json::to_vec(&hold).unwrap().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let start = Instant::now();
    let in_flight = &[r#"tower_queue_name="cpu""#][..];
    while sample_sum(&a.metrics(), "tower_queue_in_flight", in_flight) < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the holding job never reached a"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b_env: Vec<(&str, &str)> = ALL_ON.into_iter().chain([("WORKER_ID", "b")]).collect();
    let b = Worker::start(nats, &b_env);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_job_is_retried_and_completes_on_the_other_worker() {
    let nats = NatsServer::start();
    let (a, b) = a_full_and_b_free(&nats).await;
    // The group hands each attempt to `a` or `b` at random, so a retry meets the full `a` again
    // half the time: 20 retries leave a job that first met `a` stranded once in a million.
    let client = JobClient::builder(connect(&nats).await)
        .max_retries(20)
        .build();

    const JOBS: usize = 16;
    let outcomes = join_all((0..JOBS).map(|i| {
        let client = client.clone();
        async move {
            let start = Instant::now();
            let outcome = client.send(&job(i), DEADLINE).await;
            (outcome.expect("every job is answered"), start.elapsed())
        }
    }))
    .await;

    assert_eq!(outcomes.len(), JOBS, "one outcome per job");
    let mut retried = 0;
    let mut turned_away = 0;
    for (i, (outcome, took)) in outcomes.iter().enumerate() {
        let reply = &outcome.reply;
        assert_eq!(reply.id, format!("j{i}"));
        assert_eq!(reply.status, Status::Ok, "{outcome:?}");
        assert_eq!(reply.worker.as_deref(), Some("b"), "b completes every job");
        // Every attempt but the last met the full `a`; the last was `b`'s.
        let (last, before) = outcome.answers.split_last().unwrap();
        assert_eq!(last, &answer("b", Status::Ok));
        assert!(
            before.iter().all(|a| a == &answer("a", Status::Overloaded)),
            "{outcome:?}"
        );
        if outcome.retries() > 0 {
            retried += 1;
            turned_away += outcome.retries();
            assert!(outcome.completed_elsewhere(), "{outcome:?}");
            // Each retry waited for the hint `a` gave, not the client's 100 ms backoff.
            assert!(
                *took >= HINT * outcome.retries() as u32,
                "{took:?} for {outcome:?}"
            );
        }
    }
    // Half the jobs meet `a` first: none of 16 doing so happens once in 65,536 runs.
    assert!(retried >= 1, "no job met the full worker a");

    // `a` turned away exactly the attempts the client saw turned away and ran none of them;
    // `b` ran every job once.
    assert_eq!(rejections(&a), turned_away as f64);
    let ran = |worker: &Worker| {
        sample_sum(
            &worker.metrics(),
            "worker_job_duration_seconds_count",
            &[r#"outcome="ok""#],
        )
    };
    assert_eq!(ran(&a), 0.0);
    assert_eq!(ran(&b), JOBS as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_or_budget_the_caller_gets_overloaded_not_nothing() {
    let nats = NatsServer::start();
    let (a, _b) = a_full_and_b_free(&nats).await;
    let nats_client = connect(&nats).await;
    let no_retries = JobClient::builder(nats_client.clone())
        .max_retries(0)
        .build();
    // A budget that allows no retry at all: what a long overload leaves of one.
    let no_budget = JobClient::builder(nats_client)
        .budget(RetryBudget::new(Duration::from_secs(1), 0, 0.0))
        .build();

    let mut turned_away = 0;
    for client in [no_retries, no_budget] {
        // Jobs one at a time until one meets `a` (each does with probability 1/2).
        let mut sent = 0;
        let overloaded = loop {
            assert!(sent < 64, "64 jobs and none met worker a");
            let outcome = client
                .send(&job(sent), DEADLINE)
                .await
                .expect("every job is answered");
            sent += 1;
            match outcome.reply.status {
                Status::Overloaded => break outcome,
                Status::Ok => assert_eq!(outcome.reply.worker.as_deref(), Some("b")),
                other => panic!("{other:?}: {outcome:?}"),
            }
        };
        turned_away += 1;
        // `a`'s own answer, at once, with its numbers and its hint.
        let reply = &overloaded.reply;
        assert_eq!(reply.worker.as_deref(), Some("a"));
        assert_eq!(overloaded.answers, [answer("a", Status::Overloaded)]);
        assert_eq!(reply.pool.as_deref(), Some("cpu"));
        assert_eq!(reply.retry_after_ms, Some(HINT.as_millis() as u64));
        let error = reply.error.as_deref().unwrap_or_default();
        assert!(error.contains("queue full (0 of 0 waiting)"), "{error}");
    }
    assert_eq!(rejections(&a), turned_away as f64);
}
