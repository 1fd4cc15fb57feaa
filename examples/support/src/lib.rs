//! What the example programs (`examples/gateway`, `examples/worker`) share, written once: their
//! traces (OTLP export, trace context, client spans) and their settings grammar; and the
//! upstream HTTP client the gateway and the benchmark's bare proxy share. Not published.

pub mod settings;
pub mod traces;
pub mod upstream_client;

/// Resolves on SIGTERM or Ctrl-C (Ctrl-C alone where there is no SIGTERM): when a program
/// starts draining.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
