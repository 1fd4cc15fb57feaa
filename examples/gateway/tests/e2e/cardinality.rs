//! The cardinality check (`cargo xtask cardinality`) against the gateway after a
//! thousand distinct paths and five hundred distinct tenants: no label grows with them.

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::*;
use xtask_demo::cardinality::{Limits, scrape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_paths_and_tenants_leave_every_label_bounded() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("METRICS_TENANT_LABEL_ALLOWLIST", "acme,globex"),
        ],
    ));
    const PATHS: usize = 1000;
    const TENANTS: usize = 500;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let base = gateway.url("");
            tokio::spawn(async move {
                let client = client();
                let mut answered = 0;
                for i in (task..PATHS).step_by(8) {
                    // Half proxied, half unknown to the gateway (404): both kinds of path.
                    let path = if i % 2 == 0 {
                        format!("/v1/items/{i}")
                    } else {
                        format!("/page-{i}")
                    };
                    // 500 tenants, two of them allowlisted.
                    let tenant = match i % TENANTS {
                        0 => "acme".to_string(),
                        1 => "globex".to_string(),
                        n => format!("tenant-{n}"),
                    };
                    let request = Request::get(format!("{base}{path}"))
                        .header("x-tenant-id", tenant)
                        .body(Full::default())
                        .unwrap();
                    let status = send(&client, request).await.status;
                    answered +=
                        usize::from(status == StatusCode::OK || status == StatusCode::NOT_FOUND);
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        answered += task.await.unwrap();
    }
    assert_eq!(answered, PATHS);

    let url = gateway.url("/metrics");
    let report = scrape(&url).await.unwrap();
    // The widest labels are fixed sets known up front: `reason` (the edge's, the queue's, the
    // retry layer's retried and skipped reasons, all at 0 from start-up: about 40) and `le`
    // (the histograms' bucket bounds, 25 here). What must stay bounded is the paths and tenants
    // sent, checked below.
    let limits = Limits {
        max_series: 200,
        max_values_per_label: 60,
    };
    assert_eq!(
        report.breaches(limits),
        Vec::<String>::new(),
        "{}",
        report.table()
    );
    // The allowlist plus `other`, and the route templates only.
    assert_eq!(
        report.values["tenant"].len(),
        3,
        "{:?}",
        report.values["tenant"]
    );
    assert!(
        report.values["http_route"].len() <= 4,
        "{:?}",
        report.values["http_route"]
    );
    // The check does fail when a label passes its limit.
    let strict = Limits {
        max_series: 100,
        max_values_per_label: 2,
    };
    assert!(
        report
            .breaches(strict)
            .iter()
            .any(|b| b.starts_with("label tenant"))
    );
}
