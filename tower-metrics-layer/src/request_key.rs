//! A request head reduced to a [`RequestKey`]: small integers for every property that becomes
//! an attribute, so the series cache is searched without building a string.
//!
//! Free-form values (route or RPC method, server address and port, the extra label) pass
//! through bounded tables here; a value refused by a full table is counted in
//! `tower.metrics.cardinality.overflow` and recorded as absent.

use opentelemetry::metrics::Counter;
use opentelemetry::{KeyValue, StringValue};

use crate::attributes::{self as attr, NONE_U32};
use crate::config::{Config, LabelSource, Mode};
use crate::head::RequestHead;
use crate::intern::Interner;
use crate::table::Table;

/// Request properties captured in `call`, before the response exists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestKey {
    pub(crate) method: u8,
    pub(crate) scheme: u8,
    pub(crate) version: u8,
    pub(crate) port: u16,
    /// Interned `http.route` or `rpc.method`; `NONE_U32` if unknown.
    pub(crate) target: u32,
    /// Interned `server.address` (clients); `NONE_U32` if unknown.
    pub(crate) host: u32,
    /// Interned extra label; `NONE_U32` if absent.
    pub(crate) label: u32,
}

/// No `server.port` (no server address known, or not a client). Port 0 is never a destination.
pub(crate) const NO_PORT: u16 = 0;

/// Longest `rpc.method` or `http.route` admitted; longer ones are not a template.
const MAX_TARGET_LEN: usize = 512;
/// Longest `server.address` admitted (a DNS name has at most 253 characters).
const MAX_HOST_LEN: usize = 255;

/// The bounded tables behind a [`RequestKey`]'s interned ids.
pub(crate) struct Dimensions {
    /// `http.route` (HTTP server) or `rpc.method` (gRPC).
    targets: Interner,
    /// `server.address` (clients).
    hosts: Interner,
    /// Admitted `server.address` and `server.port` pairs (clients): the cap holds for the pair,
    /// so one address reached on many ports (dynamic ports, test servers) stays bounded too.
    endpoints: Table<(u32, u16), ()>,
    overflow: Counter<u64>,
}

impl Dimensions {
    /// Tables sized for `config`'s mode (only those it uses get room), counting refusals on
    /// `overflow`.
    pub(crate) fn new(config: &Config, overflow: Counter<u64>) -> Self {
        let mode = config.mode;
        let for_clients = if mode.is_client() {
            config.max_targets
        } else {
            0
        };
        Self {
            targets: Interner::new(
                Vec::new(),
                if mode == Mode::Client {
                    0
                } else {
                    config.max_targets
                },
                MAX_TARGET_LEN,
            ),
            hosts: Interner::new(Vec::new(), for_clients, MAX_HOST_LEN),
            endpoints: Table::new(for_clients),
            overflow,
        }
    }

    /// Reduces the request to compact ids. No allocation once values have been seen.
    #[inline]
    pub(crate) fn key(&self, config: &Config, head: &RequestHead<'_>) -> RequestKey {
        let method = config.methods.index(head.method);
        let scheme = attr::scheme_index(head.uri.scheme_str(), config.default_scheme);
        let version = attr::version_index(head.version);
        let target = match config.mode {
            Mode::Server => self.route_id(config, head),
            Mode::Client => NONE_U32,
            Mode::GrpcServer | Mode::GrpcClient => {
                let path = head.uri.path().trim_start_matches('/');
                self.intern(&self.targets, path, "rpc.method")
            }
        };
        let (host, port) = if config.mode.is_client() {
            self.server_id(head, scheme)
        } else {
            (NONE_U32, NO_PORT)
        };
        let label = match &config.label {
            None => NONE_U32,
            Some(extra) => {
                let raw = match &extra.source {
                    LabelSource::Header(name) => head.headers.get(name).map(|v| v.to_str()),
                    LabelSource::Fn(f) => f(head).map(Ok),
                };
                match raw {
                    None => NONE_U32,
                    Some(Ok(v)) => extra.guard.id(v),
                    // Not visible ASCII: refuse the value rather than lossy-convert it.
                    Some(Err(_)) => extra.guard.id(""),
                }
            }
        };
        RequestKey {
            method,
            scheme,
            version,
            port,
            target,
            host,
            label,
        }
    }

    /// The route or RPC method behind an interned id.
    pub(crate) fn target(&self, id: u32) -> Option<StringValue> {
        (id != NONE_U32).then(|| self.targets.value(id)).flatten()
    }

    /// The server address behind an interned id.
    pub(crate) fn host(&self, id: u32) -> Option<StringValue> {
        (id != NONE_U32).then(|| self.hosts.value(id)).flatten()
    }

    /// `server.address` and `server.port` of a client request, following the semantic
    /// conventions: the host and port of the absolute URI (userinfo never included) or, for an
    /// origin-form URI, of the `Host` header; the port defaults to 80 or 443 by scheme. Neither
    /// is recorded when no host is known (a port alone would be a guess) or when the pair is
    /// refused by the `max_targets` cap.
    #[inline]
    fn server_id(&self, head: &RequestHead<'_>, scheme: u8) -> (u32, u16) {
        let (host, port) = match head.uri.authority() {
            Some(authority) => split_authority(authority.as_str()),
            // Origin-form URI: the authority is in the Host header.
            None => match head.headers.get(http::header::HOST).map(|h| h.to_str()) {
                Some(Ok(value)) => match split_host_port(value) {
                    (Some(host), port) => (host, port),
                    (None, _) => return (NONE_U32, NO_PORT),
                },
                _ => return (NONE_U32, NO_PORT),
            },
        };
        let port = port.unwrap_or(if scheme == 1 { 443 } else { 80 });
        let host = self.intern(&self.hosts, host, "server.address");
        if host == NONE_U32 {
            return (NONE_U32, NO_PORT);
        }
        match self
            .endpoints
            .get_or_insert(&(host, port), || ((host, port), ()))
        {
            Some(_) => (host, port),
            None => (self.overflowed("server.address"), NO_PORT),
        }
    }

    #[inline]
    fn route_id(&self, config: &Config, head: &RequestHead<'_>) -> u32 {
        if let Some(f) = &config.route_fn {
            return match f(head) {
                Some(route) => match self.targets.lookup_static(route) {
                    Some(id) => id,
                    None => self.overflowed("http.route"),
                },
                None => NONE_U32,
            };
        }
        #[cfg(feature = "axum")]
        if config.matched_path {
            if let Some(m) = head.extensions.get::<axum::extract::MatchedPath>() {
                return self.intern(&self.targets, m.as_str(), "http.route");
            }
        }
        NONE_U32
    }

    #[inline]
    fn intern(&self, table: &Interner, value: &str, dimension: &'static str) -> u32 {
        match table.lookup(value) {
            Some(id) => id,
            None => self.overflowed(dimension),
        }
    }

    /// Counts a value refused by a full table; the request records no such attribute.
    #[cold]
    fn overflowed(&self, dimension: &'static str) -> u32 {
        self.overflow
            .add(1, &[KeyValue::new("dimension", dimension)]);
        NONE_U32
    }
}

/// The host and port of a URI's authority (`[userinfo@]host[:port]`), as `Uri::host` and
/// `Uri::port_u16` give them (IPv6 literals keep their brackets). Those two walk the authority
/// three times through `str` pattern searchers; two byte scans from the end (the last `@`, then
/// the last `:` or `]`) cost the gateway's client requests about 400 instructions fewer
/// (callgrind, `xtask-bench instructions`, metrics only).
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let bytes = authority.as_bytes();
    // Userinfo ends at the last `@`; neither a host nor a port contains one.
    let start = bytes
        .iter()
        .rposition(|&byte| byte == b'@')
        .map_or(0, |at| at + 1);
    // A port follows the last `:`, unless an IPv6 literal's `]` comes after it.
    match bytes[start..]
        .iter()
        .rposition(|&byte| byte == b':' || byte == b']')
    {
        Some(i) if bytes[start + i] == b':' => (
            &authority[start..start + i],
            authority[start + i + 1..].parse().ok(),
        ),
        _ => (&authority[start..], None),
    }
}

/// Splits a Host header value into host and port; IPv6 literals keep their
/// brackets, as `Uri::host` does (`[::1]:80` gives `[::1]` and 80).
fn split_host_port(value: &str) -> (Option<&str>, Option<u16>) {
    let (host, port) = match value.rfind(':') {
        Some(i) if !value[i..].contains(']') => (&value[..i], value[i + 1..].parse().ok()),
        _ => (value, None),
    };
    if host.is_empty() {
        (None, None)
    } else {
        (Some(host), port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_as_the_http_crate_splits_them() {
        let mut checked = 0;
        for uri in [
            "http://example.com/",
            "http://example.com:8080/x",
            "https://user:secret@example.com:443/",
            "http://user@example.com/",
            "http://[::1]:9000/",
            "http://[::1]/",
            "http://[fe80::1%25eth0]:80/",
            "http://127.0.0.1:65535/",
            "http://127.0.0.1:65536/",
            "http://example.com:/",
            "http://a@b@c:1/",
        ] {
            // The http crate refuses some of these; only those it takes are compared.
            let Ok(uri) = uri.parse::<http::Uri>() else {
                continue;
            };
            let authority = uri.authority().unwrap().as_str();
            assert_eq!(
                split_authority(authority),
                (uri.host().unwrap(), uri.port_u16()),
                "{uri}"
            );
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} URIs parsed");
    }
}
