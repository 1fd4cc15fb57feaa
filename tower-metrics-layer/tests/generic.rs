//! Generic mode over a non-HTTP service.

mod common;

use std::time::Duration;

use common::TestMetrics;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_metrics_layer::{GenericMetricsBuilder, GenericMetricsLayer, LabelGuard};

struct Step {
    tenant: String,
    kind: &'static str,
    fail: bool,
}

#[tokio::test]
async fn steps_are_recorded_per_tenant_type_and_outcome() {
    let m = TestMetrics::new();
    let layer = GenericMetricsBuilder::<Step, u32, String>::new(&m.meter(), "worker.step.duration")
        .label(
            "tenant",
            |s: &Step| Some(s.tenant.as_str()),
            LabelGuard::first_seen(2),
        )
        .label(
            "step.type",
            |s: &Step| Some(s.kind),
            LabelGuard::allowlist(["fetch", "parse"]),
        )
        .outcome(|r| match r {
            Ok(_) => "ok",
            Err(e) if e.contains("retry") => "retry",
            Err(_) => "failed",
        })
        .build();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|s: Step| async move {
            if s.fail {
                Err(String::from("please retry"))
            } else {
                Ok(1u32)
            }
        }));
    let steps = [
        ("a", "fetch", false),
        ("a", "fetch", false),
        ("b", "parse", true),
        ("c", "upload", false),
    ];
    for (tenant, kind, fail) in steps {
        let step = Step {
            tenant: tenant.into(),
            kind,
            fail,
        };
        let _ = svc.ready().await.unwrap().call(step).await;
    }
    let name = "worker.step.duration";
    let a = m.matching(
        name,
        &[("tenant", "a"), ("step.type", "fetch"), ("outcome", "ok")],
    );
    assert_eq!(a[0].count, 2);
    assert_eq!(
        m.matching(name, &[("tenant", "b"), ("outcome", "retry")])[0].count,
        1
    );
    let c = m.matching(name, &[("tenant", "other"), ("step.type", "other")]);
    assert_eq!(c[0].count, 1);
    assert_eq!(m.points(name).len(), 3);
}

#[tokio::test]
async fn dropped_calls_are_recorded_as_cancelled() {
    let m = TestMetrics::new();
    let layer = GenericMetricsLayer::<(), (), ()>::new(&m.meter(), "job.duration");
    let svc = layer.layer_service(service_fn(|()| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<(), ()>(())
    }));
    let call = svc.oneshot(());
    let _ = tokio::time::timeout(Duration::from_millis(10), call).await;
    assert_eq!(
        m.matching("job.duration", &[("outcome", "cancelled")])[0].count,
        1
    );
}

trait LayerExt<S>: tower::Layer<S> + Sized {
    fn layer_service(self, s: S) -> Self::Service {
        self.layer(s)
    }
}
impl<S, L: tower::Layer<S>> LayerExt<S> for L {}
