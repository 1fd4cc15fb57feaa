//! The HTTP/1.1 client below the gateway's layers, and below the benchmark's bare proxy (which
//! must stay the fair floor, so it uses the same client): a pool of keep-alive connections per
//! thread, over `hyper::client::conn::http1`.
//!
//! # Why not hyper-util's legacy client
//!
//! It did the job, but much of its cost per request goes to things a thread-per-core proxy
//! does not need: one pool for every thread behind a mutex, keyed by a `(Scheme, Authority)`
//! built and SipHashed for every request, a checkout racing a lazy connect, and a task spawned
//! per request to put the connection back once the answer's body has been read. Instructions
//! per request under callgrind (`valgrind --tool=callgrind`, one gateway worker, wrk with 4
//! connections for 10 s over `xtask-bench upstream fast`, start-up and shutdown subtracted),
//! legacy client (parent commit) against this one:
//!
//! | | legacy client | this client | |
//! |---|---|---|---|
//! | bare proxy (`xtask-bench bare-proxy`) | 39,600 | 29,350 | -26% |
//! | gateway, flags off | 40,040 | 32,650 | -18% |
//! | gateway, all flags on | 52,670 | 45,030 | -15% |
//!
//! # Why not hyper-util's pool services
//!
//! hyper-util 0.1.21 has composable pools (`client::pool::{cache, map, singleton, negotiate}`,
//! feature `client-pool`); for HTTP/1.1 `cache` is the piece that fits (`singleton` and
//! `negotiate` are for HTTP/2 and ALPN). Cost is not the reason: the bare proxy with this
//! request path over a `cache` (one host, no idle bounds) ran 29,000 instructions per request,
//! against 29,350 here (this client also reads the clock for idle expiry). What it lacks is: any idle bound (no limit, no expiry; `retain` scans the list), a way to drop a
//! connection instead of returning it (`Cached` goes back on drop whatever state its request
//! left it in, and is only discarded once its readiness check fails), per-host lists without a
//! hashed owned key per lookup (`map`), and names: `Cache`, `Cached`, the checkout future and
//! the map's targets are deliberately unnameable, so keeping one per thread or in
//! `Service::Future` takes the same type erasure as here, plus a wrapper for each missing
//! piece. A plain list per thread and host (`pool`) is simpler than that.
//!
//! # What it does
//!
//! - One pool per thread and per client ([`UpstreamClient`] and its clones), in a
//!   thread-local: a request, its connection and that connection's task stay on the thread
//!   that sent it (the gateway's workers are current-thread runtimes), and nothing is locked.
//! - Connections through any `tower::Service<Uri>` connector: the gateway's is
//!   `tower_deadline::ConnectDeadline<HttpConnector>` (connect budget) with `TCP_NODELAY`.
//! - A connection goes back to the pool when its answer's body ends ([`Body`]); at most
//!   `max_idle_per_host` (default 64) idle connections per host and thread, newest used first,
//!   each closed after `idle_timeout` (default 90 s, hyper-util's default) without use.
//! - The request is written with `try_send_request`: if a pooled connection the peer just
//!   closed hands it back unwritten, it is sent once more on a fresh connection (the legacy
//!   client re-sends these too). A request that was written is never sent twice by this
//!   client: the retry layer above decides.
//! - Errors say what failed ([`Error::is_connect`], [`Error::is_canceled`]) and carry the
//!   cause as their `source()`: io errors (refused, reset), hyper's (incomplete message,
//!   canceled), `tower_deadline`'s connect timeout, for `tower-retry-classified` to classify.
//!
//! Not behind a cargo feature: what it uses (hyper's HTTP/1 client, tokio's timer) is already in
//! the Worker's dependency tree through hyper-util's legacy client, so the Worker compiles one
//! more module and no other crate.

mod body;
mod error;
mod pool;
mod send;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::rt::{Read, Write};
use tower::Service;

pub use body::Body;
pub use error::Error;

use pool::Limits;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's answer future. Boxed: hyper's `try_send_request` future has no name to store.
pub type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<Body<B>>, Error>> + Send + 'static>>;

/// An HTTP/1.1 client with one keep-alive pool per thread, for requests with body `B` through
/// connector `C`. Clones share the pools.
pub struct UpstreamClient<C, B> {
    recipe: Arc<Recipe<C>>,
    _body: PhantomData<fn(B)>,
}

/// What every thread builds its pool from.
struct Recipe<C> {
    /// Tells this client's pools from another's in a thread's list.
    id: u64,
    connector: C,
    limits: Limits,
}

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(0);

/// The idle limits of an [`UpstreamClient`].
#[derive(Clone, Debug)]
pub struct Builder {
    limits: Limits,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            limits: Limits {
                max_idle_per_host: 64,
                idle_timeout: Duration::from_secs(90),
            },
        }
    }
}

impl Builder {
    /// The defaults: 64 idle connections per host and thread, closed after 90 s idle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Idle connections kept per host, on each thread (default 64); 0 closes every connection
    /// after its request.
    pub fn max_idle_per_host(mut self, max: usize) -> Self {
        self.limits.max_idle_per_host = max;
        self
    }

    /// How long a connection may sit idle before it is closed (default 90 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// The client, connecting through `connector`.
    pub fn build<C, B>(self, connector: C) -> UpstreamClient<C, B> {
        UpstreamClient {
            recipe: Arc::new(Recipe {
                id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
                connector,
                limits: self.limits,
            }),
            _body: PhantomData,
        }
    }
}

impl<C, B> UpstreamClient<C, B> {
    /// A client with the default limits (64 idle connections per host and thread, 90 s).
    pub fn new(connector: C) -> Self {
        Builder::default().build(connector)
    }
}

impl<C, B> Clone for UpstreamClient<C, B> {
    fn clone(&self) -> Self {
        Self {
            recipe: Arc::clone(&self.recipe),
            _body: PhantomData,
        }
    }
}

impl<C, B> std::fmt::Debug for UpstreamClient<C, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("id", &self.recipe.id)
            .field("limits", &self.recipe.limits)
            .finish_non_exhaustive()
    }
}

impl<C, B> Service<Request<B>> for UpstreamClient<C, B>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Read + Write + Unpin + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body<B>>;
    type Error = Error;
    type Future = ResponseFuture<B>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Always ready: a request waits for its connection in its future.
        Poll::Ready(Ok(()))
    }

    /// Sends a request with an absolute URI (`http://host:port/path`); it goes out in origin
    /// form, with `Host` from the URI unless it has one.
    fn call(&mut self, request: Request<B>) -> Self::Future {
        Box::pin(send::send(Arc::clone(&self.recipe), request))
    }
}

#[cfg(test)]
mod tests;
