//! One client connection: its bytes watched, its time limits kept, its end counted.
//!
//! `Watched` sits between the socket and hyper. It feeds what hyper reads to the connection's
//! `Framing` and notes, in `ConnState`, when a request head started and ended, whether one
//! smuggled a length past a transfer coding, and that bytes moved at all. The task serving the
//! connection (`serve`) has a watchdog task that wakes every quarter of the shorter time limit
//! to judge:
//!
//! - a head started longer than `header_read_timeout` ago and not finished: the connection is
//!   dropped (a slowloris client holds nothing longer than that);
//! - nothing in flight and no byte read or written for `idle_timeout`: the connection is shut
//!   down gracefully (HTTP/2 gets a GOAWAY).
//!
//! So a limit is kept within a quarter of itself, and a busy connection pays for no timer per
//! request: one clock read when a head starts, a few uncontended atomics per read and write.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tower::Service;

use super::checks::EdgeService;
use super::framing::Framing;
use super::state::{Close, ConnState};
use super::{ConnectionSlot, Edge, Refusal};
use crate::clock::now_ms;
use crate::error_chain::find;

pin_project! {
    /// The client's socket, with every read followed by the connection's `Framing`.
    #[derive(Debug)]
    pub(crate) struct Watched {
        #[pin]
        io: TcpStream,
        framing: Framing,
        state: Arc<ConnState>,
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                let state: &ConnState = this.state;
                state.activity.fetch_add(1, Ordering::Relaxed);
                this.framing.feed(read, &mut |event| state.on(event));
            }
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.io.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            this.state.activity.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.io.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            this.state.activity.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// What a check of the connection's time limits found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    HeaderTimeout,
    Idle,
}

/// The time-limit checks' memory: when the connection was last seen moving bytes.
struct Watchdog {
    activity: u32,
    since: Instant,
}

impl Watchdog {
    fn verdict(&mut self, state: &ConnState, edge: &Edge, now: Instant) -> Verdict {
        let started = state.head_started.load(Ordering::Relaxed);
        if started != 0 {
            let reading = now_ms().saturating_sub(started);
            if reading >= edge.limits.header_read_timeout.as_millis() as u64 {
                return Verdict::HeaderTimeout;
            }
        }
        let activity = state.activity.load(Ordering::Relaxed);
        if activity != self.activity {
            self.activity = activity;
            self.since = now;
            return Verdict::Fine;
        }
        let in_flight =
            state.requests.load(Ordering::Relaxed) != state.responses.load(Ordering::Relaxed);
        if started == 0 && !in_flight && now - self.since >= edge.limits.idle_timeout {
            return Verdict::Idle;
        }
        Verdict::Fine
    }
}

/// How often a connection's limits are checked: a quarter of the shorter one.
fn check_interval(edge: &Edge) -> Duration {
    let shortest = edge
        .limits
        .header_read_timeout
        .min(edge.limits.idle_timeout);
    (shortest / 4).max(Duration::from_millis(5))
}

/// Serves one accepted connection with `app` until it ends, `stop` asks every connection to
/// finish, or a time limit closes it. `slot` holds its place under the connection limit;
/// `_alive` tells the worker's accept loop that a connection is still being served.
pub(crate) async fn serve<S>(
    stream: TcpStream,
    peer: SocketAddr,
    slot: ConnectionSlot,
    edge: Arc<Edge>,
    app: S,
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let state = Arc::new(ConnState::default());
    let io = Watched {
        io: stream,
        framing: Framing::new(
            edge.limits.max_header_bytes.max(super::MIN_HEADER_BYTES),
            edge.limits.max_headers,
        ),
        state: Arc::clone(&state),
    };
    let service = EdgeService::new(app, Arc::clone(&state), Arc::clone(&edge), peer);
    let mut conn = pin!(edge.builder.serve_connection(TokioIo::new(io), service));
    // The time limits and the worker's stop are watched by a task of their own, so that the
    // connection's task polls one more future per wake-up (as `axum::serve` did for its stop
    // signal), not a timer: polling a `Sleep` on every wake-up cost about 1,000 instructions
    // per request (callgrind).
    let watchdog = tokio::spawn(watchdog(Arc::clone(&state), Arc::clone(&edge), stop));
    let mut asked = pin!(state.closing.notified());
    let mut closing = false;
    let result = loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => break result,
            () = &mut asked, if !closing => {
                if state.close.load(Ordering::Relaxed) == Close::Drop as u8 {
                    break Ok(());
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    watchdog.abort();
    if let Err(error) = result
        && let Some(refusal) = refusal_of(&*error)
    {
        edge.refused(refusal);
    }
    drop(slot);
}

/// Judges one connection's time limits four times per shortest limit, and passes the worker's
/// stop on; asks the connection to close (once) and ends.
async fn watchdog(state: Arc<ConnState>, edge: Arc<Edge>, mut stop: watch::Receiver<bool>) {
    let interval = check_interval(&edge);
    let mut dog = Watchdog {
        activity: 0,
        since: Instant::now(),
    };
    let mut stopping = pin!(stop.wait_for(|stop| *stop));
    loop {
        tokio::select! {
            _ = &mut stopping => {
                state.ask_to_close(Close::Graceful);
                return;
            }
            () = tokio::time::sleep(interval) => match dog.verdict(&state, &edge, Instant::now()) {
                Verdict::Fine => {}
                Verdict::HeaderTimeout => {
                    edge.refused(Refusal::HeaderTimeout);
                    state.ask_to_close(Close::Drop);
                    return;
                }
                Verdict::Idle => {
                    edge.refused(Refusal::IdleTimeout);
                    state.ask_to_close(Close::Graceful);
                    return;
                }
            },
        }
    }
}

/// The refusal a connection's error means, if it was one: hyper's own answers to bad heads,
/// and HTTP/2 connections the server closed for a protocol error.
fn refusal_of(error: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    if let Some(error) = error.downcast_ref::<hyper::Error>() {
        if error.is_parse_too_large() {
            return Some(Refusal::HeadersTooLarge);
        }
        if error.is_parse() {
            return Some(Refusal::Malformed);
        }
    }
    let h2 = find::<h2::Error>(error)?;
    // Only a GOAWAY this side sent: a client going away is not a refusal.
    if !(h2.is_go_away() && h2.is_library()) {
        return None;
    }
    Some(if h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) {
        Refusal::H2RapidReset
    } else {
        Refusal::H2Protocol
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::EdgeLimits;
    use crate::edge::framing::Event;

    fn edge(header: u64, idle: u64) -> Arc<Edge> {
        Edge::new(
            EdgeLimits {
                header_read_timeout: Duration::from_millis(header),
                idle_timeout: Duration::from_millis(idle),
                ..EdgeLimits::default()
            },
            None,
        )
    }

    #[test]
    fn idle_needs_a_whole_quiet_period_with_nothing_in_flight() {
        let edge = edge(10_000, 1_000);
        let state = ConnState::default();
        let start = Instant::now();
        let mut dog = Watchdog {
            activity: 0,
            since: start,
        };
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(dog.verdict(&state, &edge, at(999)), Verdict::Fine);
        // Bytes moved: the quiet period starts again.
        state.activity.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dog.verdict(&state, &edge, at(1_000)), Verdict::Fine);
        assert_eq!(dog.verdict(&state, &edge, at(1_999)), Verdict::Fine);
        // A request waiting for its answer is not idle, however quiet.
        state.requests.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dog.verdict(&state, &edge, at(5_000)), Verdict::Fine);
        state.responses.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dog.verdict(&state, &edge, at(5_000)), Verdict::Idle);
    }

    #[test]
    fn a_head_in_progress_is_held_to_the_header_timeout_only() {
        let edge = edge(50, 60_000);
        let state = ConnState::default();
        let mut dog = Watchdog {
            activity: 0,
            since: Instant::now(),
        };
        state.on(Event::HeadStarted);
        assert_eq!(dog.verdict(&state, &edge, Instant::now()), Verdict::Fine);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            dog.verdict(&state, &edge, Instant::now()),
            Verdict::HeaderTimeout
        );
        state.on(Event::HeadDone { smuggling: true });
        assert_eq!(dog.verdict(&state, &edge, Instant::now()), Verdict::Fine);
        assert!(state.smuggled(1));
        assert!(!state.smuggled(2));
    }

    #[test]
    fn checks_come_four_times_per_shortest_limit() {
        assert_eq!(
            check_interval(&edge(10_000, 60_000)),
            Duration::from_millis(2_500)
        );
        assert_eq!(check_interval(&edge(1, 60_000)), Duration::from_millis(5));
    }
}
