//! End to end: a real nats-server, the real worker binary, jobs by NATS request-reply.
//! Every test checks that the number of outcomes equals the number of jobs sent.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use worker_harness::*;

const REPLY_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_executed_once_and_replied_to() {
    let nats = NatsServer::start();
    // Two workers in one queue group: each job must run on exactly one of them.
    let fs = temp_dir("shared-fs");
    let fs_root = fs.to_str().unwrap();
    let env: Vec<(&str, &str)> = ALL_ON
        .into_iter()
        .chain([("WORKER_FS_ROOT", fs_root)])
        .collect();
    let a = Worker::start(&nats, &env);
    let b = Worker::start(&nats, &env);
    let provider = Provider::start(200).await;
    let client = connect(&nats).await;

    const JOBS: usize = 20;
    let replies = join_all((0..JOBS).map(|i| {
        let job = json!({
            "id": format!("j{i}"),
            "tenant": "acme",
            "pool": "io",
            "steps": [
                {"type": "fs_write", "path": format!("out/j{i}.txt"), "data": format!("job {i}")},
                {"type": "fs_read", "path": format!("out/j{i}.txt")},
                {"type": "http_call", "url": format!("{}/v1/work", provider.url), "method": "POST", "body": "{}"},
                {"type": "sleep", "ms": 5}
            ]
        });
        let client = client.clone();
        async move { request(&client, &job, &[], REPLY_WITHIN).await }
    }))
    .await;

    assert_eq!(replies.len(), JOBS, "one outcome per job");
    for (i, reply) in replies.iter().enumerate() {
        let reply = reply.as_ref().expect("every job is answered");
        assert_eq!(status(reply), "ok", "{reply}");
        assert_eq!(reply["id"], format!("j{i}"));
        assert_eq!(reply["pool"], "io");
        let steps = reply["steps"].as_array().unwrap();
        let kinds: Vec<_> = steps.iter().map(|s| s["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["fs_write", "fs_read", "http_call", "sleep"]);
        assert!(steps.iter().all(|s| s["status"] == "ok"), "{reply}");
        assert_eq!(
            std::fs::read_to_string(fs.join(format!("out/j{i}.txt"))).unwrap(),
            format!("job {i}")
        );
    }
    // Executed once: one provider call per job across both workers, and both together ran
    // exactly JOBS jobs.
    assert_eq!(provider.hits(), JOBS);
    let ran: f64 = [&a, &b]
        .iter()
        .map(|w| sample_sum(&w.metrics(), "worker_job_duration_seconds_count", &[]))
        .sum();
    assert_eq!(ran as usize, JOBS);

    // Not a job: answered `invalid` at once, nothing runs.
    let bad = request(
        &client,
        &json!({"steps": [{"type": "rm_rf"}]}),
        &[],
        REPLY_WITHIN,
    )
    .await
    .unwrap();
    assert_eq!(status(&bad), "invalid", "{bad}");
    let unknown = request(
        &client,
        &json!({"pool": "tpu", "steps": [{"type": "sleep", "ms": 1}]}),
        &[],
        REPLY_WITHIN,
    )
    .await
    .unwrap();
    assert_eq!(status(&unknown), "invalid", "{unknown}");
    assert_eq!(provider.hits(), JOBS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fs_step_times_out_with_a_typed_timeout() {
    let nats = NatsServer::start();
    let worker = Worker::start(&nats, &ALL_ON);
    // A FIFO with no writer: opening it for reading blocks, as a hung network filesystem would.
    std::fs::create_dir_all(&worker.fs_root).unwrap();
    let fifo = worker.fs_root.join("slow.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let client = connect(&nats).await;
    let job = json!({"id": "slow", "tenant": "acme", "pool": "io",
        "steps": [{"type": "fs_read", "path": "slow.fifo"}, {"type": "sleep", "ms": 1}]});

    // Within the job's deadline (500 ms from its header) ...
    let by_deadline = async {
        let start = Instant::now();
        let reply = request(
            &client,
            &job,
            &[("x-request-timeout-ms", "500")],
            REPLY_WITHIN,
        )
        .await;
        (reply, start.elapsed())
    };
    // ... and, with no header, within `tower_deadline::fs`'s read budget (5 s), well under the 30 s cap.
    let by_budget = async {
        let start = Instant::now();
        let reply = request(&client, &job, &[], REPLY_WITHIN).await;
        (reply, start.elapsed())
    };
    let ((deadline_reply, deadline_took), (budget_reply, budget_took)) =
        tokio::join!(by_deadline, by_budget);

    let mut outcomes = 0;
    // The budget in the detail is the time the read got: the job's remaining ~500 ms, or the
    // `tower_deadline::fs`'s 5 s read budget.
    for (reply, took, is_read_budget, min, max) in [
        (deadline_reply, deadline_took, false, 0.4, 4.0),
        (budget_reply, budget_took, true, 4.5, 15.0),
    ] {
        let reply = reply.expect("answered");
        outcomes += 1;
        assert_eq!(status(&reply), "timeout", "{reply}");
        let steps = reply["steps"].as_array().unwrap();
        assert_eq!(
            steps.len(),
            1,
            "the steps after the timeout do not run: {reply}"
        );
        assert_eq!(steps[0]["type"], "fs_read");
        assert_eq!(steps[0]["status"], "timeout");
        let detail = steps[0]["detail"].as_str().unwrap();
        assert!(detail.contains("during an operation"), "{detail:?}");
        assert_eq!(detail.contains("budget 5s"), is_read_budget, "{detail:?}");
        let took = took.as_secs_f64();
        assert!(
            (min..max).contains(&took),
            "took {took:.2} s, expected {min} to {max}"
        );
    }
    assert_eq!(outcomes, 2);
    let metrics = worker.metrics();
    assert_eq!(
        sample_sum(
            &metrics,
            "worker_step_duration_seconds_count",
            &[r#"step_type="fs_read""#, r#"outcome="timeout""#]
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        sample_sum(
            &metrics,
            "worker_job_duration_seconds_count",
            &[r#"outcome="timeout""#]
        ),
        2.0
    );
    // The crate's own count of operations cut by a deadline or budget.
    assert_eq!(
        sample_sum(
            &metrics,
            "tower_deadline_exceeded_total",
            &[r#"where="operation""#]
        ),
        2.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_rejects_with_overloaded_and_the_counts_add_up() {
    let nats = NatsServer::start();
    // gpu: one job at a time, two waiting.
    let env: Vec<_> = ALL_ON
        .into_iter()
        .chain([("WORKER_POOLS", "cpu=1000/10,gpu=2/1,io=500/20")])
        .collect();
    let worker = Worker::start(&nats, &env);
    let client = connect(&nats).await;

    const JOBS: usize = 10;
    let replies = join_all((0..JOBS).map(|i| {
        let client = client.clone();
        async move {
            let job = json!({"id": format!("g{i}"), "tenant": "acme", "pool": "gpu",
                "steps": [{"type": "sleep", "ms": 1500}]});
            let start = Instant::now();
            let reply = request(&client, &job, &[], REPLY_WITHIN).await;
            (reply.expect("every job is answered"), start.elapsed())
        }
    }))
    .await;

    let ok = replies.iter().filter(|(r, _)| status(r) == "ok").count();
    let overloaded: Vec<_> = replies
        .iter()
        .filter(|(r, _)| status(r) == "overloaded")
        .collect();
    assert_eq!(ok + overloaded.len(), JOBS, "{replies:?}");
    assert_eq!(ok, 3, "one running and two waiting: {replies:?}");
    for (reply, took) in &overloaded {
        assert_eq!(reply["pool"], "gpu");
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains("queue full (2 of 2 waiting)"), "{error}");
        // Answered at once, not after the 1.5 s jobs ahead of it.
        assert!(*took < Duration::from_millis(1200), "took {took:?}");
    }

    let metrics = worker.metrics();
    let rejected = overloaded.len() as f64;
    assert_eq!(
        sample_sum(
            &metrics,
            "tower_queue_rejections_total",
            &[r#"tower_queue_name="gpu""#, r#"reason="full""#]
        ),
        rejected,
        "{metrics}"
    );
    let job_count = |outcome: &str| {
        sample_sum(
            &metrics,
            "worker_job_duration_seconds_count",
            &[r#"pool="gpu""#, &format!(r#"outcome="{outcome}""#)],
        )
    };
    assert_eq!(job_count("overloaded"), rejected);
    assert_eq!(job_count("ok"), ok as f64);
    // Per-pool depth and status are exported, and the pool is empty again.
    assert_eq!(
        sample_sum(
            &metrics,
            "tower_queue_depth",
            &[r#"tower_queue_name="gpu""#]
        ),
        0.0
    );
    assert!(metrics.contains("tower_queue_status"), "{metrics}");
    assert_eq!(sample_sum(&metrics, "worker_jobs_active", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_provider_is_retried_within_the_budget_then_fails() {
    let nats = NatsServer::start();
    let worker = Worker::start(&nats, &ALL_ON);
    let failing = Provider::start(503).await;
    let client = connect(&nats).await;
    let call = |url: String| {
        json!({"tenant": "acme", "pool": "io",
        "steps": [{"type": "http_call", "url": url}, {"type": "sleep", "ms": 1}]})
    };

    let (dead, unavailable_job, dead_tight) = (
        call(dead_url()),
        call(format!("{}/v1/x", failing.url)),
        call(dead_url()),
    );
    let start = Instant::now();
    let (refused, unavailable, tight) = tokio::join!(
        request(
            &client,
            &dead,
            &[("x-request-timeout-ms", "10000")],
            REPLY_WITHIN
        ),
        request(
            &client,
            &unavailable_job,
            &[("grpc-timeout", "10S")],
            REPLY_WITHIN
        ),
        request(
            &client,
            &dead_tight,
            &[("x-request-timeout-ms", "300")],
            REPLY_WITHIN
        ),
    );
    let took = start.elapsed();
    let replies = [refused.unwrap(), unavailable.unwrap(), tight.unwrap()];
    assert_eq!(replies.len(), 3, "one outcome per job");
    // Default backoff: at most 100 + 200 + 400 + 800 ms of sleeps, far inside 10 s.
    assert!(took < Duration::from_secs(8), "took {took:?}");

    let [refused, unavailable, tight] = &replies;
    assert_eq!(status(refused), "failed", "{refused}");
    assert_eq!(
        refused["steps"].as_array().unwrap().len(),
        1,
        "later steps do not run"
    );
    assert!(
        refused["error"].as_str().unwrap().contains("onnect"),
        "a connect error: {refused}"
    );
    // The 503 provider saw the first attempt and four retries; the caller sees its last answer.
    assert_eq!(status(unavailable), "failed", "{unavailable}");
    assert_eq!(failing.hits(), 5);
    assert!(
        unavailable["error"]
            .as_str()
            .unwrap()
            .contains("503 Service Unavailable after 5 attempt(s)"),
        "{unavailable}"
    );
    // With 300 ms left no backoff fits past the deadline: an answer, failed or timeout, early.
    assert!(["failed", "timeout"].contains(&status(tight)), "{tight}");

    let metrics = worker.metrics();
    let failures = sample_sum(
        &metrics,
        "tower_retry_attempts_total",
        &[r#"outcome="failure""#],
    );
    assert!(
        failures >= 10.0,
        "attempts of both 10 s jobs counted: {metrics}"
    );
    assert_eq!(
        sample_sum(
            &metrics,
            "worker_step_duration_seconds_count",
            &[r#"step_type="http_call""#]
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_beyond_the_allowlist_become_other() {
    let nats = NatsServer::start();
    let env: Vec<_> = ALL_ON
        .into_iter()
        .chain([("METRICS_TENANT_LABEL_ALLOWLIST", "t0,t1,t2")])
        .collect();
    let worker = Worker::start(&nats, &env);
    let client = connect(&nats).await;

    const JOBS: usize = 1000;
    const TENANTS: usize = 50;
    let mut replies = Vec::with_capacity(JOBS);
    for batch in 0..JOBS / 100 {
        replies.extend(
            join_all((0..100).map(|i| {
                let n = batch * 100 + i;
                let job = json!({"id": format!("n{n}"), "tenant": format!("t{}", n % TENANTS),
                    "steps": [{"type": "sleep", "ms": 0}]});
                let client = client.clone();
                async move { request(&client, &job, &[], REPLY_WITHIN).await }
            }))
            .await,
        );
    }
    assert_eq!(replies.len(), JOBS);
    assert!(
        replies
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| status(r) == "ok")),
        "every job ran"
    );

    let metrics = worker.metrics();
    for name in [
        "worker_job_duration_seconds_count",
        "worker_step_duration_seconds_count",
    ] {
        let tenants = label_values(&metrics, name, "tenant");
        assert!(tenants.len() <= 3 + 1, "{name}: {tenants:?}");
        assert_eq!(
            tenants.into_iter().collect::<Vec<_>>(),
            ["other", "t0", "t1", "t2"]
        );
        assert_eq!(sample_sum(&metrics, name, &[]), JOBS as f64, "{name}");
    }
    // 20 of every 50 jobs carry an allowed tenant.
    assert_eq!(
        sample_sum(
            &metrics,
            "worker_job_duration_seconds_count",
            &[r#"tenant="other""#]
        ),
        (JOBS - JOBS / TENANTS * 3) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_pulling_and_answers_every_started_job() {
    let nats = NatsServer::start();
    let mut worker = Worker::start(&nats, &ALL_ON);
    let client = connect(&nats).await;

    const STARTED: usize = 5;
    let started: Vec<_> = (0..STARTED)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let job = json!({"id": format!("d{i}"), "pool": "gpu",
                    "steps": [{"type": "sleep", "ms": 1000}]});
                request(&client, &job, &[], REPLY_WITHIN).await
            })
        })
        .collect();
    // Wait until the worker holds all five (2 running in gpu, 3 waiting).
    let start = Instant::now();
    while sample_sum(&worker.metrics(), "worker_jobs_active", &[]) < STARTED as f64 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "jobs never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = tokio::task::spawn_blocking(move || {
        let status = worker.terminate(Duration::from_secs(20));
        (status, worker)
    });
    let mut outcomes = 0;
    for job in started {
        let reply = job.await.unwrap().expect("a started job is answered");
        assert_eq!(status(&reply), "ok", "{reply}");
        outcomes += 1;
    }
    let (status, worker) = exit.await.unwrap();
    assert!(
        status.success(),
        "exit {status:?}; log:\n{}",
        worker.log_text()
    );
    // Pulling stopped: a job sent now finds no worker, and the caller is told at once.
    let late = request(
        &client,
        &json!({"steps": [{"type": "sleep", "ms": 1}]}),
        &[],
        Duration::from_secs(5),
    )
    .await;
    let error = late.expect_err("no worker is left to answer");
    assert!(error.contains("NoResponders"), "{error}");
    outcomes += 1;
    assert_eq!(outcomes, STARTED + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_layer_off_jobs_still_run() {
    let nats = NatsServer::start();
    let worker = Worker::start(&nats, &[]);
    let client = connect(&nats).await;
    let replies = join_all((0..10).map(|i| {
        let job = json!({"id": format!("o{i}"), "pool": "gpu", "steps": [
            {"type": "fs_write", "path": format!("o{i}"), "data": "x"},
            {"type": "sleep", "ms": 50}]});
        let client = client.clone();
        async move {
            request(
                &client,
                &job,
                &[("x-request-timeout-ms", "1")],
                REPLY_WITHIN,
            )
            .await
        }
    }))
    .await;
    assert_eq!(replies.len(), 10);
    // No queue: all ten run at once in gpu; no deadline: the 1 ms header is ignored.
    for reply in replies {
        let reply = reply.unwrap();
        assert_eq!(status(&reply), "ok", "{reply}");
    }
    let (code, _) = http_get(&worker.http, "/metrics");
    assert_eq!(code, 404, "no /metrics with metrics off");
}

#[test]
fn invalid_settings_exit_2_naming_the_setting() {
    for (key, value) in [
        ("WORKER_POOLS", "cpu=10"),
        ("CP2_QUEUE_MANAGEMENT_ENABLED", "maybe"),
        ("WORKER_TIMEOUT_MS", "0"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
            .env(key, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{key}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nats_server_gone_still_exits_within_the_drain_limit() {
    let mut nats = NatsServer::start();
    let env: Vec<(&str, &str)> = ALL_ON
        .into_iter()
        .chain([("WORKER_TIMEOUT_MS", "1000")])
        .collect();
    let mut worker = Worker::start(&nats, &env);
    nats.kill();
    // Drain is bounded by the deadline cap + 1 s per step that needs the server (unsubscribe,
    // final flush): well under 10 s. Unbounded, async-nats would keep reconnecting forever.
    let status = tokio::task::spawn_blocking(move || {
        let status = worker.terminate(Duration::from_secs(10));
        (status, worker.log_text())
    });
    let (status, log) = status.await.unwrap();
    // Replies that could not be flushed are an error, said as such: never a silent success.
    assert_eq!(status.code(), Some(1), "log:\n{log}");
    assert!(
        log.contains("replies not sent before exiting"),
        "log:\n{log}"
    );
}
