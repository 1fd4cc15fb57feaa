//! Serving on one thread per core, the way nginx runs one worker process per core.
//!
//! Each worker thread has its own single-threaded tokio runtime and its own listening socket on
//! the shared port (`SO_REUSEPORT`: the kernel spreads new connections over the sockets). A
//! connection, the request it carries, and the upstream connection that request borrows from
//! that thread's pool (see [`crate::stack::HttpClient`]) all stay on one thread, so a proxied
//! request wakes no other thread. Under tokio's work-stealing runtime the server connection,
//! the client connection task and the pool's channels sat on different threads about half the
//! time, and each request paid for cross-thread wake-ups (`BENCHMARKS.md` has the figures).
//!
//! What the layers share across threads (the queue's admission state, metrics, the router's
//! health) is `Sync` state behind `Arc`, as it was before; so is the edge's connection count
//! ([`crate::edge`]): the connection limit holds over all workers.
//!
//! Each worker accepts its own connections and serves them through the edge
//! (`crate::edge::connection::serve`): a connection beyond the limit is closed as soon as it
//! is accepted and counted (`connection_limit`), so whatever a client opens, the gateway holds
//! at most `max_connections`.

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tower::Service;

use crate::edge::{self, Edge, Refusal};

/// Backlog of each listening socket (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// `count` listening sockets on `addr`; with port 0 the first picks the port and the rest
/// join it. Call inside a tokio runtime; the sockets are handed over as std listeners so each
/// worker can register its own with its own runtime.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        if count > 1 {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        // Later sockets join the port the first one got.
        addr = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// The running workers: [`stop`](Self::stop) them, then [`finished`](Self::finished).
pub struct Workers {
    stop: watch::Sender<bool>,
    done: Vec<oneshot::Receiver<io::Result<()>>>,
    threads: Vec<JoinHandle<()>>,
    runtimes: Vec<tokio::runtime::Handle>,
}

/// Starts one worker thread per listener, each serving `app` through `edge` on its own runtime.
pub fn start<S>(
    listeners: Vec<std::net::TcpListener>,
    app: S,
    edge: Arc<Edge>,
) -> io::Result<Workers>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let (stop, stopped) = watch::channel(false);
    let mut done = Vec::with_capacity(listeners.len());
    let mut threads = Vec::with_capacity(listeners.len());
    let mut runtimes = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtimes.push(runtime.handle().clone());
        let (finished, finished_rx) = oneshot::channel();
        let app = app.clone();
        let stopped = stopped.clone();
        let edge = Arc::clone(&edge);
        let thread = std::thread::Builder::new()
            .name(format!("gateway-worker-{index}"))
            .spawn(move || {
                let result = runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    accept(listener, app, edge, stopped).await;
                    Ok(())
                });
                let _ = finished.send(result);
            })?;
        done.push(finished_rx);
        threads.push(thread);
    }
    Ok(Workers {
        stop,
        done,
        threads,
        runtimes,
    })
}

/// One worker's accept loop: each connection served on its own task until `stopped`; then
/// every connection is asked to finish, and this returns when all have.
async fn accept<S>(
    listener: TcpListener,
    app: S,
    edge: Arc<Edge>,
    mut stopped: watch::Receiver<bool>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // Each connection task holds a sender; when the last is gone, `recv` returns `None`.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or memory: wait rather than spin. A connection that
                // failed before it was accepted (reset in the backlog) needs no wait.
                if !matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    tracing::warn!(%error, "accept failed; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let Some(slot) = edge.admit() else {
            edge.refused(Refusal::ConnectionLimit);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let alive = alive.clone();
        tokio::spawn(edge::connection::serve(
            stream,
            peer,
            slot,
            Arc::clone(&edge),
            app.clone(),
            stopped.clone(),
            alive,
        ));
    }
    drop(alive);
    let _ = all_done.recv().await;
}

impl Workers {
    /// Tasks alive on every worker's runtime (connections, requests, pooled upstream
    /// connections, timers' tasks): what a soak test watches for leaks.
    pub fn alive_tasks(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let runtimes = self.runtimes.clone();
        move || runtimes.iter().map(|r| r.metrics().num_alive_tasks()).sum()
    }

    /// Every worker stops accepting and finishes the connections it has.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until every worker has finished; the first error any of them met.
    pub async fn finished(&mut self) -> io::Result<()> {
        let mut first_error = Ok(());
        for done in self.done.drain(..) {
            let result = done.await.unwrap_or_else(|_| {
                Err(io::Error::other("a worker thread ended without a result"))
            });
            if first_error.is_ok() {
                first_error = result;
            }
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        first_error
    }
}
