//! SIGTERM: stop accepting, finish what was accepted, exit 0.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_loses_no_accepted_request() {
    for flags in [ALL_ON, ALL_OFF] {
        let upstream = Upstream::fixed(200, Duration::from_millis(500)).await;
        let list = upstreams(&[("slow", &upstream)]);
        let mut gateway = Gateway::start(&env(
            flags,
            &[
                ("GATEWAY_UPSTREAMS", &list),
                ("GATEWAY_MAX_CONCURRENCY", "4"),
                ("GATEWAY_QUEUE_CAPACITY", "100"),
            ],
        ));
        let load = tokio::spawn(parallel(gateway.url("/v1/chat"), 20));
        // Accepted: in flight at the upstream (4 with the queue, 20 without) and, with the
        // queue, 16 more waiting.
        assert!(eventually(Duration::from_secs(5), || upstream.calls() >= 4).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        gateway.terminate();
        let answers = tokio::time::timeout(Duration::from_secs(15), load)
            .await
            .expect("every request answered")
            .unwrap();
        let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        assert_eq!(upstream.calls(), 20);
        let status = gateway
            .wait(Duration::from_secs(10))
            .expect("the gateway exits");
        assert!(status.success(), "exit status {status:?}");
        // It no longer accepts connections.
        let refused = tokio::net::TcpStream::connect(gateway.addr).await;
        assert!(refused.is_err());
    }
}
