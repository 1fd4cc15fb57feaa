//! Canary rollout: a flag at a share applies to that share of requests, a tenant stays on one
//! side, and every series says which side it counts (`otel_scope_cp2_mode`).

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::*;

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";
const PROXIED: &str = "http_route=\"/v1/{*path}\"";
const ON: &str = "otel_scope_cp2_mode=\"on\"";
const OFF: &str = "otel_scope_cp2_mode=\"off\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_goes_to_the_canary_and_a_tenant_never_flips() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(
        &[
            ("CP2_ADVANCED_RETRY_ENABLED", "10%"),
            ("CP2_COMPLETE_TIMEOUT_ENABLED", "true"),
            ("CP2_QUEUE_MANAGEMENT_ENABLED", "true"),
            ("CP2_OBSERVABILITY_METRICS_ENABLED", "true"),
        ],
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("METRICS_TENANT_LABEL_ALLOWLIST", "acme,globex,initech"),
        ],
    ));
    const REQUESTS: usize = 1000;
    const PER_TENANT: usize = 40;
    let tenants = ["acme", "globex", "initech"];
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let url = gateway.url("/v1/chat");
            tokio::spawn(async move {
                let client = client();
                let mut ok = 0;
                for id in (task..REQUESTS).step_by(8) {
                    let request = Request::get(&url)
                        .header("x-request-id", id.to_string())
                        .body(Full::default())
                        .unwrap();
                    ok += usize::from(send(&client, request).await.status == StatusCode::OK);
                }
                for tenant in tenants {
                    for n in (task..PER_TENANT).step_by(8) {
                        let request = Request::get(&url)
                            .header("x-tenant-id", tenant)
                            .header("x-request-id", format!("{tenant}-{n}"))
                            .body(Full::default())
                            .unwrap();
                        ok += usize::from(send(&client, request).await.status == StatusCode::OK);
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap();
    }
    let sent = REQUESTS + tenants.len() * PER_TENANT;
    assert_eq!(ok, sent, "every request answered 200");

    let metrics = get(&client(), &gateway.url("/metrics")).await.body;
    let on = sample_sum(&metrics, DURATION_COUNT, &[PROXIED, ON]);
    let off = sample_sum(&metrics, DURATION_COUNT, &[PROXIED, OFF]);
    assert_eq!(
        on + off,
        sent as f64,
        "each request counted once, on one side"
    );
    let untenanted_on = on
        - tenants
            .iter()
            .map(|t| {
                sample_sum(
                    &metrics,
                    DURATION_COUNT,
                    &[PROXIED, ON, &format!("tenant=\"{t}\"")],
                )
            })
            .sum::<f64>();
    let share = untenanted_on / REQUESTS as f64;
    assert!((0.08..=0.12).contains(&share), "canary share {share}");
    for tenant in tenants {
        let label = format!("tenant=\"{tenant}\"");
        let sides =
            [ON, OFF].map(|mode| sample_sum(&metrics, DURATION_COUNT, &[PROXIED, mode, &label]));
        assert!(
            sides.contains(&(PER_TENANT as f64)) && sides.contains(&0.0),
            "{tenant} on both sides: {sides:?}"
        );
    }
    // The crates' own series carry the mode too: the queue's, from the side that has one each.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tower_queue_depth") && l.contains(ON)),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tower_queue_depth") && l.contains(OFF)),
        "{metrics}"
    );
}
