//! Histogram bucket boundaries.

/// The 14 boundaries (seconds) OpenTelemetry's HTTP semantic conventions recommend
/// for `http.server.request.duration`.
pub const DEFAULT_DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Boundaries (seconds) for long requests (streaming, long polling, LLM calls): the
/// default ones extended up to 300 s.
pub const LONG_DURATION_BOUNDARIES: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 30.0,
    60.0, 120.0, 180.0, 300.0,
];

/// Boundaries (bytes) for body sizes: powers of four from 64 B to 64 MiB.
pub(crate) const BODY_SIZE_BOUNDARIES: [f64; 11] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Keeps finite, non-negative values, sorted and deduplicated; empty means default.
pub(crate) fn normalize_boundaries(mut b: Vec<f64>) -> Vec<f64> {
    b.retain(|v| v.is_finite() && *v >= 0.0);
    b.sort_by(f64::total_cmp);
    b.dedup();
    if b.is_empty() {
        DEFAULT_DURATION_BOUNDARIES.to_vec()
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_boundaries_are_clamped() {
        assert_eq!(
            normalize_boundaries(vec![2.0, f64::NAN, 1.0, -1.0, 1.0, f64::INFINITY]),
            vec![1.0, 2.0]
        );
        assert_eq!(
            normalize_boundaries(vec![]),
            DEFAULT_DURATION_BOUNDARIES.to_vec()
        );
    }
}
