//! The upstreams: `fast` answers 200 at once, `slow` after 50 ms, and `mixed` follows the retry
//! benchmark's script keyed by `x-request-id`: ids with `id % 10 < 3` always get 404 (never worth
//! retrying), `3..5` get 503 on their first call and 200 after (transient), the rest 200.
//! `GET /stats` answers `calls=N wasted=W`, wasted being calls beyond the first for 404 ids.
//! `faulty` draws a fault from each request's id (see [`Fault::of`]): what the timeout
//! compliance benchmark sends requests with deadlines into.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Clone, Copy)]
enum Mode {
    Fast,
    Slow,
    Mixed,
    Faulty,
}

/// What the `faulty` upstream does with one request.
enum Fault {
    Ok,
    /// 200 after this long (up to 3 s: past most deadlines the benchmark draws).
    Slow(Duration),
    Unavailable,
    /// Closes the connection without an answer.
    Reset,
    /// Never answers (for a minute).
    Hang,
}

impl Fault {
    /// 60% ok, 15% slow, 10% 503, 10% reset, 5% hang; the same id always draws the same fault.
    fn of(id: u64) -> Fault {
        let h = splitmix(id);
        match h % 100 {
            0..60 => Fault::Ok,
            60..75 => Fault::Slow(Duration::from_millis((h >> 8) % 3000)),
            75..85 => Fault::Unavailable,
            85..95 => Fault::Reset,
            _ => Fault::Hang,
        }
    }
}

/// The first `count` ids from `from` on that the `faulty` upstream answers at once.
pub(crate) fn healthy_ids(from: u64, count: usize) -> Vec<u64> {
    (from..)
        .filter(|id| matches!(Fault::of(*id), Fault::Ok))
        .take(count)
        .collect()
}

/// SplitMix64: a well-spread hash of an id.
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Default)]
struct Counts {
    calls: u64,
    wasted: u64,
    per_id: HashMap<u64, u32>,
}

pub(crate) fn main(mode: &str) -> Result<(), String> {
    let mode = match mode {
        "fast" => Mode::Fast,
        "slow" => Mode::Slow,
        "mixed" => Mode::Mixed,
        "faulty" => Mode::Faulty,
        other => return Err(format!("unknown upstream mode `{other}`")),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(serve(mode))
}

async fn serve(mode: Mode) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    crate::announce(listener.local_addr().map_err(|e| e.to_string())?);
    let counts = Arc::new(Mutex::new(Counts::default()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(mode, counts.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    mode: Mode,
    counts: Arc<Mutex<Counts>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    if request.uri().path() == "/stats" {
        let counts = counts.lock().unwrap();
        let text = format!("calls={} wasted={}", counts.calls, counts.wasted);
        return Ok(Response::new(Full::new(Bytes::from(text))));
    }
    let status = match mode {
        Mode::Fast => StatusCode::OK,
        Mode::Slow => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            StatusCode::OK
        }
        Mode::Faulty => {
            let id = request_id(&request);
            match Fault::of(id) {
                Fault::Ok => StatusCode::OK,
                Fault::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    StatusCode::OK
                }
                Fault::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                // An error from the service makes hyper drop the connection unanswered.
                Fault::Reset => return Err(std::io::ErrorKind::ConnectionReset.into()),
                Fault::Hang => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    StatusCode::OK
                }
            }
        }
        Mode::Mixed => {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let mut counts = counts.lock().unwrap();
            counts.calls += 1;
            let seen = counts.per_id.entry(id).or_insert(0);
            *seen += 1;
            let first = *seen == 1;
            match id % 10 {
                0..=2 => {
                    if !first {
                        counts.wasted += 1;
                    }
                    StatusCode::NOT_FOUND
                }
                3..=4 if first => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::OK,
            }
        }
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = status;
    Ok(response)
}

fn request_id(request: &Request<Incoming>) -> u64 {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}
