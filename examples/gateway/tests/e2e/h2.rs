//! HTTP/2 at the edge: rapid reset (CVE-2023-44487), and the conformance cases that matter for
//! a proxy, written as tests because h2spec (a Go binary) is not packaged.
//!
//! The cases, with the RFC 9113 section each holds the gateway to:
//! - the SETTINGS it announces: at most `GATEWAY_H2_MAX_STREAMS` streams, the stream and
//!   connection windows, the header-list limit (6.5.2, 6.9.2);
//! - a stream beyond the concurrency limit is refused with REFUSED_STREAM and reaches no
//!   provider (5.1.2);
//! - malformed requests are stream errors (PROTOCOL_ERROR) that reach no provider (8.1.1):
//!   connection-specific fields (8.2.2), a missing `:path` (8.3.1), DATA longer than
//!   `content-length` (8.1.1); upper-case field names (8.2.1) close the whole connection
//!   (GOAWAY PROTOCOL_ERROR, the h2 crate's stricter choice);
//! - DATA beyond the stream's window is a FLOW_CONTROL_ERROR (6.9.1);
//! - a PING is answered with a PING ACK carrying the same data (6.7);
//! - a client that does not send the preface is closed (3.4);
//! - and after each stream error, the connection still serves a good request.
//!
//! Frames are written by hand (HPACK literals without indexing or Huffman, section 6.2.2 of
//! RFC 7541) because a conforming client library refuses to send what these cases need.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const REFUSED_STREAM: u32 = 0x7;

/// One frame as read off the wire.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 section 5.1), first byte's high bits 0.
fn hpack_int(out: &mut Vec<u8>, prefix: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields without indexing, new names, no Huffman.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn get_fields(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "a"),
    ]
}

/// A raw HTTP/2 connection: preface and empty SETTINGS sent; the server's SETTINGS acknowledged
/// as they come.
struct Raw {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Raw {
    async fn connect(gateway: &Gateway) -> Raw {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream.write_all(PREFACE).await.unwrap();
        stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        Raw {
            stream,
            buffer: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` once the connection is closed (at most 5 s).
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buffer.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buffer[0], self.buffer[1], self.buffer[2]])
                    as usize;
                if self.buffer.len() >= 9 + len {
                    let head: Vec<u8> = self.buffer.drain(..9 + len).collect();
                    let frame = Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
                        payload: head[9..].to_vec(),
                    };
                    if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                        self.send(&frame_ack()).await;
                    }
                    return Some(frame);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("the gateway wrote or closed within 5 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The first frame on `stream` that ends it for the client: response HEADERS, RST_STREAM,
    /// or GOAWAY.
    async fn outcome(&mut self, stream: u32) -> Frame {
        loop {
            let frame = self.next().await.expect("the connection stayed open");
            let ends =
                (frame.kind == HEADERS || frame.kind == RST_STREAM) && frame.stream == stream;
            if ends || frame.kind == GOAWAY {
                return frame;
            }
        }
    }

    /// A GET on `stream` that must be answered with response HEADERS.
    async fn good_request(&mut self, stream: u32) {
        self.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &block(&get_fields("/v1/ok")),
        ))
        .await;
        let outcome = self.outcome(stream).await;
        assert_eq!(
            outcome.kind, HEADERS,
            "a good request after an error: {outcome:?}"
        );
    }
}

fn frame_ack() -> Vec<u8> {
    frame(SETTINGS, ACK, 0, &[])
}

fn setting(payload: &[u8], id: u16) -> Option<u32> {
    payload
        .chunks(6)
        .find(|s| u16::from_be_bytes([s[0], s[1]]) == id)
        .map(|s| u32::from_be_bytes(s[2..6].try_into().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_settings_limits_and_malformed_requests_follow_rfc_9113() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("p", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_H2_MAX_STREAMS", "4"),
        ],
    ));

    // The announced limits, and the connection window opened to 1 MiB.
    let mut raw = Raw::connect(&gateway).await;
    let settings = raw.next().await.unwrap();
    assert_eq!((settings.kind, settings.flags), (SETTINGS, 0));
    assert_eq!(
        setting(&settings.payload, 0x3),
        Some(4),
        "MAX_CONCURRENT_STREAMS"
    );
    assert_eq!(
        setting(&settings.payload, 0x4),
        Some(65_536),
        "INITIAL_WINDOW_SIZE"
    );
    assert_eq!(
        setting(&settings.payload, 0x6),
        Some(65_536),
        "MAX_HEADER_LIST_SIZE"
    );
    let window = loop {
        let frame = raw.next().await.unwrap();
        if frame.kind == WINDOW_UPDATE && frame.stream == 0 {
            break u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
        }
    };
    assert_eq!(window + 65_535, 1_048_576, "connection window");
    raw.good_request(1).await;

    // Malformed requests: stream errors, and nothing reaches the provider.
    let calls = upstream.calls();
    let mut id = 3;
    let malformed: [Vec<(&str, &str)>; 3] = [
        [get_fields("/v1/x"), vec![("connection", "keep-alive")]].concat(),
        [get_fields("/v1/x"), vec![("transfer-encoding", "chunked")]].concat(),
        vec![(":method", "GET"), (":scheme", "http"), (":authority", "a")],
    ];
    for fields in &malformed {
        raw.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &block(fields),
        ))
        .await;
        let outcome = raw.outcome(id).await;
        assert_eq!(
            (outcome.kind, outcome.error_code()),
            (RST_STREAM, PROTOCOL_ERROR),
            "{fields:?}: {outcome:?}"
        );
        id += 2;
        raw.good_request(id).await;
        id += 2;
    }
    assert_eq!(
        upstream.calls(),
        calls + malformed.len(),
        "only the good requests passed"
    );

    // DATA longer than the declared content-length. A proxy streams: the provider's call may
    // have started with the headers, but it gets no body, only a broken call.
    let post = [
        vec![(":method", "POST")],
        get_fields("/v1/x")[1..].to_vec(),
        vec![("content-length", "2")],
    ]
    .concat();
    raw.send(&frame(HEADERS, END_HEADERS, id, &block(&post)))
        .await;
    raw.send(&frame(DATA, END_STREAM, id, b"four")).await;
    let outcome = raw.outcome(id).await;
    assert_eq!(
        (outcome.kind, outcome.error_code()),
        (RST_STREAM, PROTOCOL_ERROR)
    );
    id += 2;

    // DATA beyond the stream's window.
    raw.send(&frame(HEADERS, END_HEADERS, id, &block(&post[..4])))
        .await;
    for _ in 0..5 {
        raw.send(&frame(DATA, 0, id, &[0u8; 16_384])).await;
    }
    let outcome = raw.outcome(id).await;
    assert_eq!(
        (outcome.kind, outcome.error_code()),
        (RST_STREAM, FLOW_CONTROL_ERROR),
        "{outcome:?}"
    );
    id += 2;
    raw.good_request(id).await;
    id += 2;
    let bodies: Vec<_> = upstream.seen().iter().map(|s| s.body.len()).collect();
    assert!(
        bodies.iter().all(|&len| len == 0),
        "a provider got a bad body: {bodies:?}"
    );

    // PING is answered in kind.
    raw.send(&frame(PING, 0, 0, b"12345678")).await;
    loop {
        let frame = raw.next().await.unwrap();
        if frame.kind == PING {
            assert_eq!((frame.flags, &frame.payload[..]), (ACK, &b"12345678"[..]));
            break;
        }
    }

    // Streams beyond the limit are refused, not queued: four held open, the fifth refused.
    let open: Vec<u32> = (0..4).map(|i| id + 2 * i).collect();
    let post_open = [vec![(":method", "POST")], get_fields("/v1/x")[1..].to_vec()].concat();
    for stream in &open {
        raw.send(&frame(HEADERS, END_HEADERS, *stream, &block(&post_open)))
            .await;
    }
    let extra = id + 8;
    raw.send(&frame(HEADERS, END_HEADERS, extra, &block(&post_open)))
        .await;
    let outcome = raw.outcome(extra).await;
    assert_eq!(
        (outcome.kind, outcome.error_code()),
        (RST_STREAM, REFUSED_STREAM),
        "{outcome:?}"
    );

    // An upper-case field name: the h2 crate treats it more strictly than a stream error, and
    // closes the connection (GOAWAY PROTOCOL_ERROR). Nothing reaches the provider either way.
    let calls = upstream.calls();
    let mut raw = Raw::connect(&gateway).await;
    let upper = [get_fields("/v1/x"), vec![("X-Upper", "1")]].concat();
    raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&upper)))
        .await;
    let outcome = raw.outcome(1).await;
    assert_eq!(
        (outcome.kind, outcome.error_code()),
        (GOAWAY, PROTOCOL_ERROR)
    );
    assert_eq!(upstream.calls(), calls);
    let counted = super::edge::refused(&gateway, "h2_protocol", 1.0).await;
    assert_eq!(counted, 1.0, "the closed connection is counted");

    // No preface: closed.
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a bad preface closes the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut_off_without_growing_memory_or_starving_others() {
    let upstream = Upstream::fixed(200, Duration::from_millis(5)).await;
    let list = upstreams(&[("p", &upstream)]);
    let gateway = Gateway::start(&env(ALL_ON, &[("GATEWAY_UPSTREAMS", &list)]));
    let before = gateway.rss_kib();

    // The attack: on each of 50 connections, open a stream and reset it at once, 2,000 times.
    let addr = gateway.addr;
    let attack = tokio::spawn(async move {
        let mut sent = 0usize;
        for _ in 0..50 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut burst = Vec::from(PREFACE);
            burst.extend_from_slice(&frame(SETTINGS, 0, 0, &[]));
            for i in 0..2_000u32 {
                let id = 1 + 2 * i;
                burst.extend_from_slice(&frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    id,
                    &block(&get_fields("/v1/x")),
                ));
                burst.extend_from_slice(&frame(RST_STREAM, 0, id, &0x8u32.to_be_bytes()));
            }
            if stream.write_all(&burst).await.is_ok() {
                sent += 1;
            }
            let mut sink = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
        }
        sent
    });

    // Meanwhile an honest HTTP/2 client is served.
    let honest = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let mut served = 0;
    while !attack.is_finished() || served < 20 {
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            honest.request(
                Request::get(gateway.url("/v1/honest"))
                    .body(Default::default())
                    .unwrap(),
            ),
        )
        .await
        .expect("the honest client is answered within 5 s")
        .expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        served += 1;
    }
    assert!(attack.await.unwrap() > 0);
    let after = gateway.rss_kib();
    assert!(
        after.saturating_sub(before) < 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let text = get(&client(), &gateway.url("/metrics")).await.body;
    let cut = sample_sum(
        &text,
        "gateway_edge_refused_total",
        &["reason=\"h2_rapid_reset\""],
    );
    assert!(cut >= 1.0, "no connection was cut for rapid reset:\n{text}");
    // Far fewer than the 100,000 attempts reached the provider.
    assert!(
        upstream.calls() < 10_000,
        "{} provider calls",
        upstream.calls()
    );
}
