//! A TCP proxy that injects network faults between the gateway and a real upstream, with
//! toxiproxy's semantics: each fault acts on the upstream's answers (the downstream direction)
//! of every connection through the proxy, while requests pass as they are.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does to the upstream's bytes on their way back.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Each chunk waits this long before it is passed on.
    Latency(Duration),
    /// At most this many bytes per second.
    Bandwidth(u64),
    /// Passes this many bytes, then resets the caller's connection (RST, not FIN).
    ResetPeerAfter(usize),
    /// When the upstream closes, waits this long before closing the caller's side.
    SlowClose(Duration),
    /// Accepts connections and reads requests, but never contacts the upstream nor answers.
    Blackhole,
    /// Forwards requests to the upstream but drops every answer, leaving the connection open.
    HalfOpen,
}

/// A running fault proxy in front of `upstream`; stops (with every connection) on drop.
pub struct FaultProxy {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let connections = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((caller, _)) = listener.accept().await {
                let _ = caller.set_nodelay(true);
                let task = tokio::spawn(relay(caller, upstream, fault));
                connections.lock().unwrap().push(task);
            }
        });
        tasks.lock().unwrap().push(accept);
        FaultProxy { addr, tasks }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn relay(mut caller: TcpStream, upstream: SocketAddr, fault: Fault) {
    let mut request = vec![0u8; 16 * 1024];
    if let Fault::Blackhole = fault {
        // Swallow everything; answer nothing; keep the connection open until the caller leaves.
        while matches!(caller.read(&mut request).await, Ok(n) if n > 0) {}
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let mut answer = vec![0u8; 16 * 1024];
    let mut passed = 0usize;
    loop {
        tokio::select! {
            read = caller.read(&mut request) => match read {
                Ok(n) if n > 0 => {
                    if server.write_all(&request[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            read = server.read(&mut answer) => {
                let n = match read {
                    Ok(n) if n > 0 => n,
                    _ => {
                        if let Fault::SlowClose(delay) = fault {
                            tokio::time::sleep(delay).await;
                        }
                        let _ = caller.shutdown().await;
                        return;
                    }
                };
                let chunk = &answer[..n];
                match fault {
                    Fault::Latency(delay) => {
                        tokio::time::sleep(delay).await;
                        if caller.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                    Fault::Bandwidth(bytes_per_second) => {
                        for piece in chunk.chunks(64) {
                            if caller.write_all(piece).await.is_err() {
                                return;
                            }
                            let secs = piece.len() as f64 / bytes_per_second.max(1) as f64;
                            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                        }
                    }
                    Fault::ResetPeerAfter(limit) => {
                        let take = n.min(limit.saturating_sub(passed));
                        if caller.write_all(&chunk[..take]).await.is_err() {
                            return;
                        }
                        passed += take;
                        if passed >= limit {
                            // Linger 0: closing sends RST instead of FIN.
                            let _ = caller.set_zero_linger();
                            return;
                        }
                    }
                    Fault::SlowClose(_) => {
                        if caller.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                    Fault::HalfOpen => {}
                    Fault::Blackhole => unreachable!("handled before connecting"),
                }
            }
        }
    }
}
