//! The gateway's routes, as its router serves them and its metrics and traces name them; below
//! every module that needs them.

/// The proxied routes (every method, every path under `/v1/`), as the metrics name them.
pub const PROXY_ROUTE: &str = "/v1/{*path}";
/// Liveness.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: the queue is not closed.
pub const READYZ: &str = "/readyz";
/// The Prometheus endpoint.
pub const METRICS: &str = "/metrics";
/// The paths the gateway answers itself.
pub const KNOWN_ROUTES: [&str; 3] = [HEALTHZ, READYZ, METRICS];
