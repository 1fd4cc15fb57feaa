//! Network faults between the gateway and a provider (a TCP fault proxy with toxiproxy's
//! semantics in front of a real upstream), all flags on: every request ends in 200, 502, 503 or
//! 504 within its deadline plus 50 ms, nothing hangs, the gateway's own request counts add up
//! to the requests sent, and a healthy provider keeps being served meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use http::Request;
use http_body_util::Full;

use crate::common::fault_proxy::{Fault, FaultProxy};
use crate::common::*;

const REQUESTS: usize = 12;
const DEADLINE_MS: u64 = 400;
/// What the gateway may take beyond a request's deadline: writing the answer, loopback, a
/// loaded 2-core CI machine.
const SLACK: Duration = Duration::from_millis(50);
const PROXY_ROUTE: &str = "http_route=\"/v1/{*path}\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_ends_in_an_answer_within_the_deadline_and_the_counts_add_up() {
    // Each fault, and how the faulty provider's requests end: `None` when they are served.
    // Resets are retried while the deadline allows, so one may still be in flight when the
    // deadline ends it: 504 rather than 502.
    let faults: [(Fault, Option<&[u16]>); 7] = [
        (Fault::Latency(Duration::from_millis(100)), None),
        (Fault::Latency(Duration::from_secs(2)), Some(&[504])),
        (Fault::Bandwidth(2_000), None),
        (Fault::ResetPeerAfter(20), Some(&[502, 504])),
        (Fault::SlowClose(Duration::from_millis(300)), None),
        (Fault::Blackhole, Some(&[504])),
        (Fault::HalfOpen, Some(&[504])),
    ];
    for (fault, failure) in faults {
        let behind_fault = Upstream::fixed(200, Duration::ZERO).await;
        let proxy = FaultProxy::start(behind_fault.addr, fault).await;
        let healthy = Upstream::fixed(200, Duration::ZERO).await;
        let list = format!("faulty={},healthy={}", proxy.url(), healthy.url());
        let gateway = Gateway::start(&env(
            ALL_ON,
            &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_TIMEOUT_MS", "1000")],
        ));

        let url = gateway.url("/v1/chat");
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let request = Request::get(url)
                        .header("x-request-timeout-ms", DEADLINE_MS.to_string())
                        .body(Full::default())
                        .unwrap();
                    send(&client(), request).await
                })
            })
            .collect();
        let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
        for task in tasks {
            let answer = task.await.unwrap();
            let status = answer.status.as_u16();
            assert!(
                [200, 502, 503, 504].contains(&status),
                "{fault:?}: status {status}: {}",
                answer.body
            );
            assert!(
                answer.took <= Duration::from_millis(DEADLINE_MS) + SLACK,
                "{fault:?}: answered {status} after {:?}",
                answer.took
            );
            *seen.entry(status).or_default() += 1;
        }

        let ok = seen.get(&200).copied().unwrap_or(0);
        match failure {
            None => assert_eq!(ok, REQUESTS, "{fault:?}: {seen:?}"),
            Some(statuses) => {
                // Round robin sends every other request to the healthy provider (more once
                // the faulty one is skipped); the faulty one's requests fail, and only those.
                assert!(ok >= REQUESTS / 2, "{fault:?}: {seen:?}");
                assert_eq!(
                    healthy.calls(),
                    ok,
                    "{fault:?}: only the healthy provider served"
                );
                let failed: usize = statuses.iter().filter_map(|s| seen.get(s)).sum();
                assert_eq!(ok + failed, REQUESTS, "{fault:?}: {seen:?}");
            }
        }

        // The gateway's own count of the proxied requests, by status, is what the caller saw.
        let metrics = get(&client(), &gateway.url("/metrics")).await.body;
        let counted = |filters: &[&str]| {
            sample_sum(
                &metrics,
                "http_server_request_duration_seconds_count",
                filters,
            ) as usize
        };
        assert_eq!(counted(&[PROXY_ROUTE]), REQUESTS, "{fault:?}:\n{metrics}");
        for (status, n) in &seen {
            let label = format!("http_response_status_code=\"{status}\"");
            assert_eq!(counted(&[PROXY_ROUTE, &label]), *n, "{fault:?}: {status}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_act_like_a_failing_provider_and_headers_need_the_operators_consent() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("p", &upstream)]);
    let with = |headers: &[(&'static str, &'static str)]| {
        let mut request = Request::get("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    };

    // Header faults allowed, all flags on: an injected 503 is retried like a real one and
    // never reaches the provider; a delay delays; the x-fault-* headers are not forwarded.
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_FAULT_HEADERS", "true"),
            ("GATEWAY_RETRY_BASE_MS", "1"),
        ],
    ));
    let send_with = |headers: &[(&'static str, &'static str)]| {
        let request = with(headers)
            .uri(gateway.url("/v1/f"))
            .body(Full::default())
            .unwrap();
        async move { send(&client(), request).await }
    };
    let aborted = send_with(&[("x-fault-abort", "503")]).await;
    assert_eq!(aborted.status.as_u16(), 503, "{}", aborted.body);
    assert!(aborted.body.contains("injected fault"), "{}", aborted.body);
    assert_eq!(upstream.calls(), 0);
    let metrics = get(&client(), &gateway.url("/metrics")).await.body;
    let retries = sample_sum(&metrics, "tower_retry_attempts_total", &[]);
    assert_eq!(
        retries, 5.0,
        "1 + 4 attempts, each an injected 503:\n{metrics}"
    );

    let delayed = send_with(&[("x-fault-delay-ms", "150")]).await;
    assert_eq!(delayed.status.as_u16(), 200);
    assert!(
        delayed.took >= Duration::from_millis(150),
        "{:?}",
        delayed.took
    );
    let seen = upstream.seen().pop().unwrap();
    assert!(!seen.headers.contains_key("x-fault-delay-ms"));
    drop(gateway);

    // Without the operator's consent the headers do nothing.
    let gateway = Gateway::start(&env(
        ALL_OFF,
        &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_FAULT_RESET", "0")],
    ));
    let request = with(&[("x-fault-abort", "503")])
        .uri(gateway.url("/v1/f"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client(), request).await.status.as_u16(), 200);
    drop(gateway);

    // Percentages: every call reset (flags off: the caller gets 502), every call aborted.
    for (setting, value, status) in [
        ("GATEWAY_FAULT_RESET", "100", 502),
        ("GATEWAY_FAULT_ABORT", "429@100", 429),
    ] {
        let before = upstream.calls();
        let gateway = Gateway::start(&env(
            ALL_OFF,
            &[("GATEWAY_UPSTREAMS", &list), (setting, value)],
        ));
        let answer = get(&client(), &gateway.url("/v1/f")).await;
        assert_eq!(
            answer.status.as_u16(),
            status,
            "{setting}={value}: {}",
            answer.body
        );
        assert_eq!(
            upstream.calls(),
            before,
            "{setting}: the provider is never called"
        );
    }
}
