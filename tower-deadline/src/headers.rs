//! Which headers carry a deadline, and reading the budget they announce.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{grpc_timeout, millis};

/// `x-request-timeout-ms`: the millisecond header we read and write by default.
pub const REQUEST_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-request-timeout-ms");
/// Envoy's `x-envoy-expected-rq-timeout-ms`, read by default.
pub const ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
/// `grpc-timeout`, read on every request and written on gRPC ones.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The millisecond headers a layer reads (the first one is also the one it writes).
#[derive(Clone, Debug)]
pub(crate) struct MillisHeaders {
    names: Vec<HeaderName>,
}

impl Default for MillisHeaders {
    fn default() -> Self {
        Self {
            names: vec![REQUEST_TIMEOUT_MS, ENVOY_EXPECTED_RQ_TIMEOUT_MS],
        }
    }
}

impl MillisHeaders {
    /// Replaces the primary header name, keeping the others.
    pub(crate) fn set_primary(&mut self, name: HeaderName) {
        self.names.retain(|n| *n != name);
        self.names[0] = name;
    }

    /// Adds one more header to read.
    pub(crate) fn also_read(&mut self, name: HeaderName) {
        if !self.names.contains(&name) {
            self.names.push(name);
        }
    }

    #[cfg(test)]
    pub(crate) fn primary(&self) -> &HeaderName {
        &self.names[0]
    }
}

/// What the incoming headers said.
#[derive(Debug, Default)]
pub(crate) struct Announced {
    /// The tightest well-formed budget, if any header had one.
    pub(crate) budget: Option<Duration>,
    /// Which header `budget` came from: 0 for `grpc-timeout`, `i + 1` for millisecond header
    /// `i`. An index, so that reading costs no header-name clone; see [`Announced::source`].
    source: usize,
    /// The first header whose value was malformed.
    pub(crate) malformed: Option<HeaderName>,
}

impl Announced {
    fn offer(&mut self, index: usize, name: &HeaderName, parsed: Option<Duration>) {
        match parsed {
            Some(budget) => {
                if self.budget.is_none_or(|b| budget < b) {
                    self.budget = Some(budget);
                    self.source = index;
                }
            }
            None => {
                if self.malformed.is_none() {
                    self.malformed = Some(name.clone());
                }
            }
        }
    }

    /// The name of the header `budget` came from, if any.
    pub(crate) fn source<'a>(&self, millis_names: &'a MillisHeaders) -> Option<&'a str> {
        self.budget?;
        match self.source {
            0 => Some("grpc-timeout"),
            i => millis_names.names.get(i - 1).map(HeaderName::as_str),
        }
    }
}

/// Up to this many header values, [`read`] walks the map once instead of looking each name up.
///
/// A lookup hashes the whole name (30 bytes for Envoy's), so three lookups cost about 450
/// instructions on any request, while the walk compares lengths first and costs about 35 per
/// header (callgrind, `xtask-bench instructions`, deadline only). Past 12 headers the lookups win.
const WALK_AT_MOST: usize = 12;

/// Reads every deadline header present; several are combined by taking the tightest. Of a header
/// sent more than once, the first value counts, as with [`HeaderMap::get`].
pub(crate) fn read(headers: &HeaderMap, millis_names: &MillisHeaders) -> Announced {
    let mut announced = Announced::default();
    if headers.is_empty() {
        return announced;
    }
    if headers.len() > WALK_AT_MOST {
        if let Some(value) = headers.get(GRPC_TIMEOUT) {
            offer_grpc(&mut announced, value);
        }
        for (i, name) in millis_names.names.iter().enumerate() {
            if let Some(value) = headers.get(name) {
                announced.offer(i + 1, name, millis::decode(value.as_bytes()));
            }
        }
        return announced;
    }
    // Bit 0: `grpc-timeout` seen; bit i + 1: millisecond header i seen.
    let mut seen = 0u64;
    for (name, value) in headers {
        if *name == GRPC_TIMEOUT {
            if seen & 1 == 0 {
                seen |= 1;
                offer_grpc(&mut announced, value);
            }
            continue;
        }
        let Some(i) = millis_names.names.iter().position(|n| n == name) else {
            continue;
        };
        // More names than bits: the later ones are read every time they appear, which only
        // matters for a header sent twice with different values.
        let bit = 1u64.checked_shl(i as u32 + 1).unwrap_or(0);
        if seen & bit == 0 {
            seen |= bit;
            announced.offer(i + 1, name, millis::decode(value.as_bytes()));
        }
    }
    announced
}

fn offer_grpc(announced: &mut Announced, value: &HeaderValue) {
    announced.offer(
        0,
        &GRPC_TIMEOUT,
        grpc_timeout::decode(value.as_bytes()).ok(),
    );
}

/// Writes `budget` on an outgoing request in the format its protocol reads.
pub(crate) fn write(headers: &mut HeaderMap, budget: Duration, millis_name: &HeaderName) {
    if tower_reliability_core::is_grpc(headers) {
        headers.insert(GRPC_TIMEOUT, grpc_timeout::encode(budget));
    } else {
        let value: HeaderValue = millis::encode(budget);
        headers.insert(millis_name.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn tightest_of_all_headers_wins() {
        let got = read(
            &headers(&[
                ("grpc-timeout", "3S"),
                ("x-request-timeout-ms", "2500"),
                ("x-envoy-expected-rq-timeout-ms", "4000"),
            ]),
            &MillisHeaders::default(),
        );
        assert_eq!(got.budget, Some(Duration::from_millis(2500)));
        assert_eq!(got.malformed, None);
    }

    #[test]
    fn malformed_is_reported_and_valid_ones_still_count() {
        let got = read(
            &headers(&[
                ("grpc-timeout", "3s"),
                ("x-envoy-expected-rq-timeout-ms", "900"),
            ]),
            &MillisHeaders::default(),
        );
        assert_eq!(got.budget, Some(Duration::from_millis(900)));
        assert_eq!(got.malformed, Some(GRPC_TIMEOUT));
    }

    #[test]
    fn many_headers_read_the_same_as_few() {
        let pairs = [
            ("x-request-timeout-ms", "2500"),
            ("grpc-timeout", "3S"),
            ("x-request-timeout-ms", "100"),
            ("x-envoy-expected-rq-timeout-ms", "4000"),
        ];
        let few = read(&headers(&pairs), &MillisHeaders::default());
        assert_eq!(
            few.budget,
            Some(Duration::from_millis(2500)),
            "the first value counts"
        );
        let mut many = headers(&pairs);
        for filler in FILLERS {
            many.append(*filler, HeaderValue::from_static("x"));
        }
        assert!(many.len() > WALK_AT_MOST);
        let got = read(&many, &MillisHeaders::default());
        assert_eq!(got.budget, few.budget);
        assert_eq!(
            got.source(&MillisHeaders::default()),
            Some("x-request-timeout-ms")
        );

        let mut bad = headers(&[("grpc-timeout", "soon"), ("x-request-timeout-ms", "7")]);
        let few = read(&bad, &MillisHeaders::default());
        for filler in FILLERS {
            bad.append(*filler, HeaderValue::from_static("x"));
        }
        let many = read(&bad, &MillisHeaders::default());
        for got in [few, many] {
            assert_eq!(got.malformed, Some(GRPC_TIMEOUT));
            assert_eq!(got.budget, Some(Duration::from_millis(7)));
        }
    }

    const FILLERS: &[&str] = &[
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "cookie",
        "origin",
        "referer",
        "user-agent",
        "x-a",
        "x-b",
        "x-c",
        "x-d",
    ];

    #[test]
    fn configured_names_replace_and_extend() {
        let mut names = MillisHeaders::default();
        names.set_primary(HeaderName::from_static("x-budget-ms"));
        names.also_read(HeaderName::from_static("x-other-ms"));
        assert_eq!(names.primary(), "x-budget-ms");
        let got = read(&headers(&[("x-request-timeout-ms", "5")]), &names);
        assert_eq!(got.budget, None, "the replaced default is no longer read");
        let got = read(&headers(&[("x-other-ms", "7")]), &names);
        assert_eq!(got.budget, Some(Duration::from_millis(7)));
        let got = read(&headers(&[("x-envoy-expected-rq-timeout-ms", "8")]), &names);
        assert_eq!(
            got.budget,
            Some(Duration::from_millis(8)),
            "Envoy's is kept"
        );
    }

    #[test]
    fn writes_grpc_timeout_for_grpc_and_millis_otherwise() {
        let mut grpc = headers(&[("content-type", "application/grpc+proto")]);
        write(&mut grpc, Duration::from_millis(1500), &REQUEST_TIMEOUT_MS);
        assert_eq!(grpc.get("grpc-timeout").unwrap(), "1500000u");
        assert!(grpc.get("x-request-timeout-ms").is_none());

        let mut plain = headers(&[
            ("content-type", "application/json"),
            ("x-request-timeout-ms", "99999"),
        ]);
        write(&mut plain, Duration::from_millis(1500), &REQUEST_TIMEOUT_MS);
        assert_eq!(
            plain.get("x-request-timeout-ms").unwrap(),
            "1500",
            "overwrites a forwarded value"
        );
        assert!(plain.get("grpc-timeout").is_none());
    }
}
