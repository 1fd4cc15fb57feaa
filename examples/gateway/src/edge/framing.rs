//! Following HTTP/1 request framing below hyper, to see what hyper hides.
//!
//! hyper handles a request carrying both `Content-Length` and `Transfer-Encoding: chunked` as
//! RFC 9112 section 6.3 allows: it drops the length, reads the body as chunked and closes the
//! connection after answering. The request it hands on looks like any chunked one, so nothing
//! above hyper can refuse it the way Envoy and nginx do (400). Nor does hyper say when a head
//! started arriving, which the header-read timeout counts from.
//!
//! [`Framing`] reads the same bytes hyper reads and follows where each request's head and body
//! begin and end: heads are parsed with `httparse` (hyper's own parser), chunk sizes with
//! `httparse::parse_chunk_size`. It is told what hyper will refuse anyway (a malformed head, a
//! head over the size limit, an unknown transfer coding) only in that it stops following the
//! connection ([`State::Off`]); hyper answers those itself. An HTTP/2 connection (the client
//! preface) is not followed either: HTTP/2 has no `Transfer-Encoding`.

use std::mem::MaybeUninit;

/// The HTTP/2 client connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest chunk-size line (with extensions) followed before giving up; hyper allows far less.
const MAX_CHUNK_LINE: usize = 4096;

/// Headers parsed on the stack (hyper's default limit); a head with more is parsed again with
/// room for `max_headers`.
const STACK_HEADERS: usize = 100;

/// What the bytes just read said about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The first byte of a request head arrived.
    HeadStarted,
    /// A request head is complete; `smuggling` when it carried both `Content-Length` and
    /// `Transfer-Encoding`.
    HeadDone { smuggling: bool },
    /// The client sent the HTTP/2 preface: nothing more to follow.
    Http2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing read yet: the preface of HTTP/2 or the first HTTP/1 head.
    Start,
    /// Between two requests.
    Idle,
    /// Inside a head (partial head kept in `carry`).
    Head,
    /// Inside a body of known length: bytes left.
    Body(u64),
    /// Reading a chunk-size line (partial line kept in `carry`).
    ChunkSize,
    /// Inside a chunk: data bytes left plus its closing CRLF.
    ChunkData(u64),
    /// After the last chunk: trailer lines until an empty one; `true` at the start of a line.
    Trailers { line_start: bool },
    /// Not followed any further.
    Off,
}

/// The framing of one connection's incoming bytes (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Framing {
    state: State,
    /// A head, chunk-size line or preface split across reads.
    carry: Vec<u8>,
    max_head: usize,
    max_headers: usize,
}

impl Framing {
    /// `max_head` and `max_headers` are hyper's limits: beyond them hyper refuses the request
    /// (431) and closes the connection, and there is nothing left to follow.
    pub(crate) fn new(max_head: usize, max_headers: usize) -> Self {
        Framing {
            state: State::Start,
            carry: Vec::new(),
            max_head,
            max_headers,
        }
    }

    /// Whether this connection is still followed.
    #[cfg(test)]
    pub(crate) fn following(&self) -> bool {
        self.state != State::Off
    }

    /// Follows `bytes`, the next bytes read from the client, reporting each [`Event`].
    pub(crate) fn feed(&mut self, mut bytes: &[u8], on: &mut impl FnMut(Event)) {
        while !bytes.is_empty() {
            bytes = match self.state {
                State::Off => return,
                State::Start => self.start(bytes, on),
                State::Idle => {
                    on(Event::HeadStarted);
                    self.state = State::Head;
                    bytes
                }
                State::Head => self.head(bytes, on),
                State::Body(left) => {
                    let taken = left.min(bytes.len() as u64);
                    self.state = match left - taken {
                        0 => State::Idle,
                        rest => State::Body(rest),
                    };
                    &bytes[taken as usize..]
                }
                State::ChunkSize => self.chunk_size(bytes),
                State::ChunkData(left) => {
                    let taken = left.min(bytes.len() as u64);
                    self.state = match left - taken {
                        0 => State::ChunkSize,
                        rest => State::ChunkData(rest),
                    };
                    &bytes[taken as usize..]
                }
                State::Trailers { line_start } => self.trailers(bytes, line_start),
            };
        }
    }

    /// The first bytes: the HTTP/2 preface, or else the first HTTP/1 head.
    fn start<'b>(&mut self, bytes: &'b [u8], on: &mut impl FnMut(Event)) -> &'b [u8] {
        let seen = self.carry.len();
        let want = H2_PREFACE.len() - seen;
        let (part, rest) = bytes.split_at(want.min(bytes.len()));
        if part != &H2_PREFACE[seen..seen + part.len()] {
            // HTTP/1: what was held back starts the head.
            let held = std::mem::take(&mut self.carry);
            on(Event::HeadStarted);
            self.state = State::Head;
            if held.is_empty() {
                return bytes;
            }
            self.carry = held;
            return self.head(bytes, on);
        }
        if seen + part.len() == H2_PREFACE.len() {
            on(Event::Http2);
            self.stop();
            return &[];
        }
        self.carry.extend_from_slice(part);
        rest
    }

    /// Inside a head: parse it once its end is in sight.
    fn head<'b>(&mut self, bytes: &'b [u8], on: &mut impl FnMut(Event)) -> &'b [u8] {
        if self.carry.is_empty() {
            // The usual case: the whole head arrived in one read, parsed where it lies.
            match self.parse(bytes) {
                Parsed::Done(len, framing) => {
                    on(Event::HeadDone {
                        smuggling: framing.smuggling,
                    });
                    self.state = framing.body;
                    return &bytes[len..];
                }
                Parsed::Partial => {
                    if bytes.len() > self.max_head {
                        self.stop();
                        return &[];
                    }
                    self.carry.extend_from_slice(bytes);
                    return &[];
                }
                Parsed::Refused => {
                    self.stop();
                    return &[];
                }
            }
        }
        // A head split over reads: look for its end in the new bytes only (plus the three
        // before them), so that a client trickling a head byte by byte costs no re-parsing.
        let before = self.carry.len();
        let from = before.saturating_sub(3);
        self.carry.extend_from_slice(bytes);
        if !has_head_end(&self.carry[from..]) {
            if self.carry.len() > self.max_head {
                self.stop();
            }
            return &[];
        }
        let carry = std::mem::take(&mut self.carry);
        let result = self.parse(&carry);
        match result {
            Parsed::Done(len, framing) => {
                on(Event::HeadDone {
                    smuggling: framing.smuggling,
                });
                self.state = framing.body;
                // What followed the head in this read is the body or the next request.
                &bytes[len - before..]
            }
            // Empty lines before a request line look like an end of head: wait for more.
            Parsed::Partial => {
                self.carry = carry;
                &[]
            }
            Parsed::Refused => {
                self.stop();
                &[]
            }
        }
    }

    fn parse(&self, buf: &[u8]) -> Parsed {
        // Uninitialised room, as hyper parses: an initialised array of 100 headers would cost
        // a 3 KiB memset on every request.
        let mut room = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        match request.parse_with_uninit_headers(buf, &mut room) {
            Ok(httparse::Status::Complete(len)) => {
                framing_of(&request).map_or(Parsed::Refused, |framing| Parsed::Done(len, framing))
            }
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) if self.max_headers > STACK_HEADERS => {
                let mut room = Vec::with_capacity(self.max_headers);
                room.resize_with(self.max_headers, MaybeUninit::uninit);
                let mut request = httparse::Request::new(&mut []);
                match request.parse_with_uninit_headers(buf, &mut room) {
                    Ok(httparse::Status::Complete(len)) => framing_of(&request)
                        .map_or(Parsed::Refused, |framing| Parsed::Done(len, framing)),
                    Ok(httparse::Status::Partial) => Parsed::Partial,
                    Err(_) => Parsed::Refused,
                }
            }
            Err(_) => Parsed::Refused,
        }
    }

    /// A chunk-size line: its size, or the last chunk.
    fn chunk_size<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
            self.carry.extend_from_slice(bytes);
            if self.carry.len() > MAX_CHUNK_LINE {
                self.stop();
            }
            return &[];
        };
        let (line, rest) = bytes.split_at(newline + 1);
        let parsed = if self.carry.is_empty() {
            httparse::parse_chunk_size(line)
        } else {
            self.carry.extend_from_slice(line);
            let line = std::mem::take(&mut self.carry);
            httparse::parse_chunk_size(&line)
        };
        self.state = match parsed {
            Ok(httparse::Status::Complete((_, 0))) => State::Trailers { line_start: true },
            Ok(httparse::Status::Complete((_, size))) => match size.checked_add(2) {
                Some(with_crlf) => State::ChunkData(with_crlf),
                None => State::Off,
            },
            _ => State::Off,
        };
        if self.state == State::Off {
            self.stop();
            return &[];
        }
        rest
    }

    /// Trailer lines after the last chunk, up to and including the empty line.
    fn trailers<'b>(&mut self, bytes: &'b [u8], mut line_start: bool) -> &'b [u8] {
        for (i, &byte) in bytes.iter().enumerate() {
            match byte {
                b'\n' if line_start => {
                    self.state = State::Idle;
                    return &bytes[i + 1..];
                }
                b'\n' => line_start = true,
                // The CR of an empty line's CRLF keeps the line empty.
                b'\r' => {}
                _ => line_start = false,
            }
        }
        self.state = State::Trailers { line_start };
        &[]
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.carry = Vec::new();
    }
}

enum Parsed {
    Done(usize, HeadFraming),
    Partial,
    /// A head hyper refuses too (it answers it): nothing more to follow.
    Refused,
}

struct HeadFraming {
    smuggling: bool,
    body: State,
}

/// How the body after `request`'s head is framed, as hyper reads a request (RFC 9112 section
/// 6): `None` for what hyper refuses.
fn framing_of(request: &httparse::Request<'_, '_>) -> Option<HeadFraming> {
    let mut length: Option<u64> = None;
    let mut has_length = false;
    let mut chunked: Option<bool> = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            // Once a transfer coding was seen hyper ignores the length, valid or not: so must
            // this, or a client could stop the following with a bad length hyper lets pass.
            if chunked.is_some() {
                continue;
            }
            let parsed = digits(header.value)?;
            if length.is_some_and(|l| l != parsed) {
                return None;
            }
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding of the last field decides, as in hyper.
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    let smuggling = has_length && chunked.is_some();
    let body = match (chunked, length) {
        (Some(true), _) if request.version == Some(1) => State::ChunkSize,
        // HTTP/1.0 with a transfer coding, or a coding that is not chunked: hyper says 400.
        (Some(_), _) => return None,
        (None, Some(0) | None) => State::Idle,
        (None, Some(n)) => State::Body(n),
    };
    Some(HeadFraming { smuggling, body })
}

/// A `Content-Length` value as hyper reads it: ASCII digits only, no sign, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// Whether `bytes` hold the end of a head: an empty line after a header line (CRLF or bare LF,
/// as httparse accepts).
fn has_head_end(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(framing: &mut Framing, parts: &[&[u8]]) -> Vec<Event> {
        let mut seen = Vec::new();
        for part in parts {
            framing.feed(part, &mut |event| seen.push(event));
        }
        seen
    }

    fn framing() -> Framing {
        Framing::new(32 * 1024, 100)
    }

    const DONE: Event = Event::HeadDone { smuggling: false };
    const SMUGGLED: Event = Event::HeadDone { smuggling: true };

    #[test]
    fn requests_with_lengths_and_chunks_are_followed_across_reads() {
        let mut f = framing();
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nhost: x\r\n\r\nPOST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\ntrailer: yes\r\n\r\nGET /d HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n";
        let expected = vec![
            Event::HeadStarted,
            DONE,
            Event::HeadStarted,
            DONE,
            Event::HeadStarted,
            DONE,
            Event::HeadStarted,
            SMUGGLED,
        ];
        // All at once, and one byte at a time: the same events.
        assert_eq!(events(&mut f, &[stream]), expected);
        let mut f = framing();
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events(&mut f, &bytes), expected);
        // And in every two-piece split.
        for cut in 1..stream.len() {
            let mut f = framing();
            let (a, b) = stream.split_at(cut);
            assert_eq!(events(&mut f, &[a, b]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn length_before_or_after_the_coding_is_smuggling() {
        for head in [
            &b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\ncontent-length: 0\r\ntransfer-encoding: CHUNKED\r\n\r\n"[..],
        ] {
            let mut f = framing();
            assert_eq!(events(&mut f, &[head]), vec![Event::HeadStarted, SMUGGLED]);
        }
    }

    #[test]
    fn empty_lines_or_a_bad_length_after_the_coding_do_not_stop_the_following() {
        let mut f = framing();
        let seen = events(
            &mut f,
            &[
                b"\r\n\r\n",
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: x\r\n\r\n",
            ],
        );
        assert_eq!(seen, vec![Event::HeadStarted, SMUGGLED]);
        assert!(f.following());
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_body() {
        let mut f = framing();
        let body = b"GET /x HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        let head = format!("POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n", body.len());
        let seen = events(&mut f, &[head.as_bytes(), body]);
        assert_eq!(seen, vec![Event::HeadStarted, DONE]);
    }

    #[test]
    fn http2_is_recognised_even_split() {
        let mut f = framing();
        let (a, b) = H2_PREFACE.split_at(5);
        assert_eq!(events(&mut f, &[a, b, b"\0\0\0\x04"]), vec![Event::Http2]);
        assert!(!f.following());
        // A head that starts like the preface is still HTTP/1.
        let mut f = framing();
        let seen = events(&mut f, &[b"P", b"OST / HTTP/1.1\r\n\r\n"]);
        assert_eq!(seen, vec![Event::HeadStarted, DONE]);
    }

    #[test]
    fn what_hyper_refuses_stops_the_following() {
        for bad in [
            &b"GET / HTTP/1.1\r\nbad header\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"[..],
            &b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\n"[..],
        ] {
            let mut f = framing();
            let seen = events(&mut f, &[bad]);
            assert_eq!(seen, vec![Event::HeadStarted]);
            assert!(!f.following(), "{}", String::from_utf8_lossy(bad));
        }
        let mut f = Framing::new(64, 100);
        let seen = events(&mut f, &[b"GET / HTTP/1.1\r\n", &[b'x'; 100]]);
        assert_eq!(seen, vec![Event::HeadStarted]);
        assert!(!f.following());
    }

    #[test]
    fn many_headers_are_parsed_beyond_the_stack_array() {
        let mut head = String::from("POST / HTTP/1.1\r\n");
        for i in 0..150 {
            head.push_str(&format!("x-h{i}: v\r\n"));
        }
        head.push_str("content-length: 1\r\ntransfer-encoding: chunked\r\n\r\n");
        let mut f = Framing::new(32 * 1024, 200);
        assert_eq!(
            events(&mut f, &[head.as_bytes()]),
            vec![Event::HeadStarted, SMUGGLED]
        );
    }
}
