//! Fault injection on calls to providers, off unless configured: abort a share of calls with a
//! status, delay a share, reset a share, and with header faults enabled also per request
//! (`x-fault-abort: STATUS|reset`, `x-fault-delay-ms: MS`).
//!
//! The settings follow Envoy's fault filter (a status and a percentage to abort, a delay and a
//! percentage to delay, headers honoured only when the operator allows them), but the faults
//! act where a provider's failures would: below the retry layer, on each attempt. An injected
//! 503 or reset is then retried, counted and answered exactly like a real one, which is what
//! one wants to see when trying the layers out. (Envoy's filter acts on the incoming request
//! before routing, so its aborts are never retried.) The `x-fault-*` headers are removed
//! before a request goes on to the provider.
//!
//! This lives in the example, not in a library crate: it is a tool for trying and testing a
//! deployment, not a reliability mechanism users stack in production.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use tower::{BoxError, Layer, Service, ServiceExt};

/// `x-fault-abort`: a status to answer with, or `reset`.
pub const X_FAULT_ABORT: HeaderName = HeaderName::from_static("x-fault-abort");
/// `x-fault-delay-ms`: a delay before the call goes on.
pub const X_FAULT_DELAY_MS: HeaderName = HeaderName::from_static("x-fault-delay-ms");

/// Longest delay a request header may ask for: a header must not hold a call forever.
const MAX_HEADER_DELAY: Duration = Duration::from_secs(60);

/// The configured faults; the default injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Answer this status for this percentage (0 to 100) of calls.
    pub abort: Option<(StatusCode, f64)>,
    /// Wait this long before this percentage of calls.
    pub delay: Option<(Duration, f64)>,
    /// Reset (as a provider closing the connection would) this percentage of calls.
    pub reset_percent: f64,
    /// Honour `x-fault-abort` and `x-fault-delay-ms` on requests.
    pub headers: bool,
}

impl Faults {
    /// Whether any fault can happen; when not, the gateway leaves the layer out.
    pub fn any(&self) -> bool {
        self.abort.is_some() || self.delay.is_some() || self.reset_percent > 0.0 || self.headers
    }
}

/// What happens to one call.
#[derive(Debug, PartialEq)]
enum Plan {
    Pass {
        delay: Option<Duration>,
    },
    Abort {
        status: StatusCode,
        delay: Option<Duration>,
    },
    Reset {
        delay: Option<Duration>,
    },
}

fn chance(percent: f64) -> bool {
    percent > 0.0 && fastrand::f64() * 100.0 < percent
}

impl Faults {
    /// Draws this call's faults; request headers (when allowed) decide over the percentages.
    fn plan(&self, headers: &http::HeaderMap) -> Plan {
        let header = |name: &HeaderName| {
            self.headers
                .then(|| headers.get(name)?.to_str().ok().map(str::trim))
                .flatten()
        };
        let delay = match header(&X_FAULT_DELAY_MS).and_then(|v| v.parse::<u64>().ok()) {
            Some(ms) => Some(Duration::from_millis(ms).min(MAX_HEADER_DELAY)),
            None => self
                .delay
                .and_then(|(delay, percent)| chance(percent).then_some(delay)),
        };
        match header(&X_FAULT_ABORT) {
            Some(v) if v.eq_ignore_ascii_case("reset") => return Plan::Reset { delay },
            Some(v) => {
                if let Some(status) = v
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    return Plan::Abort { status, delay };
                }
            }
            None => {}
        }
        if chance(self.reset_percent) {
            return Plan::Reset { delay };
        }
        if let Some((status, percent)) = self.abort {
            if chance(percent) {
                return Plan::Abort { status, delay };
            }
        }
        Plan::Pass { delay }
    }
}

/// The layer injecting [`Faults`].
#[derive(Clone, Debug)]
pub struct FaultLayer {
    faults: Arc<Faults>,
}

impl FaultLayer {
    pub fn new(faults: Faults) -> Self {
        Self {
            faults: Arc::new(faults),
        }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultService {
            inner,
            faults: Arc::clone(&self.faults),
        }
    }
}

/// The service of [`FaultLayer`].
#[derive(Clone, Debug)]
pub struct FaultService<S> {
    inner: S,
    faults: Arc<Faults>,
}

/// What an injected abort answers with: a short text body naming the fault.
pub type FaultBody<B> = Either<B, Full<Bytes>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<Request<B>> for FaultService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<FaultBody<RB>>;
    type Error = BoxError;
    // Boxed: the layer is present only when faults are configured, never on a hot path.
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let plan = self.faults.plan(request.headers());
        request.headers_mut().remove(X_FAULT_ABORT);
        request.headers_mut().remove(X_FAULT_DELAY_MS);
        // tower: the ready service takes this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (delay, outcome) = match plan {
                Plan::Pass { delay } => (delay, None),
                Plan::Abort { status, delay } => (delay, Some(Ok(status))),
                Plan::Reset { delay } => (delay, Some(Err(()))),
            };
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            match outcome {
                None => {
                    let response = inner.oneshot(request).await.map_err(Into::into)?;
                    Ok(response.map(Either::Left))
                }
                Some(Ok(status)) => {
                    let body = Full::new(Bytes::from(format!("injected fault: {status}\n")));
                    let mut response = Response::new(Either::Right(body));
                    *response.status_mut() = status;
                    Ok(response)
                }
                Some(Err(())) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected fault: connection reset",
                )) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.insert((*name).clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn nothing_is_injected_by_default() {
        let faults = Faults::default();
        assert!(!faults.any());
        let asked = headers(&[(&X_FAULT_ABORT, "503")]);
        assert_eq!(
            faults.plan(&asked),
            Plan::Pass { delay: None },
            "headers not allowed"
        );
    }

    #[test]
    fn headers_decide_when_allowed() {
        let faults = Faults {
            headers: true,
            ..Faults::default()
        };
        let plan = faults.plan(&headers(&[
            (&X_FAULT_ABORT, "429"),
            (&X_FAULT_DELAY_MS, "50"),
        ]));
        assert_eq!(
            plan,
            Plan::Abort {
                status: StatusCode::TOO_MANY_REQUESTS,
                delay: Some(Duration::from_millis(50))
            }
        );
        assert_eq!(
            faults.plan(&headers(&[(&X_FAULT_ABORT, "Reset")])),
            Plan::Reset { delay: None }
        );
        // Nonsense is ignored, an absurd delay capped.
        assert_eq!(
            faults.plan(&headers(&[
                (&X_FAULT_ABORT, "abc"),
                (&X_FAULT_DELAY_MS, "99999999999")
            ])),
            Plan::Pass {
                delay: Some(MAX_HEADER_DELAY)
            }
        );
    }

    #[test]
    fn percentages_are_shares_of_calls() {
        fastrand::seed(7);
        let faults = Faults {
            abort: Some((StatusCode::SERVICE_UNAVAILABLE, 25.0)),
            ..Faults::default()
        };
        let aborted = (0..10_000)
            .filter(|_| matches!(faults.plan(&http::HeaderMap::new()), Plan::Abort { .. }))
            .count();
        assert!((2_200..2_800).contains(&aborted), "{aborted} of 10000");
        let all = Faults {
            reset_percent: 100.0,
            ..Faults::default()
        };
        assert!(matches!(
            all.plan(&http::HeaderMap::new()),
            Plan::Reset { .. }
        ));
    }
}
