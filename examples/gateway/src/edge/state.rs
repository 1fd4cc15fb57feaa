//! One connection's state, shared by its socket wrapper (`connection`), its per-request checks
//! (`checks`) and its watchdog: below all three.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::framing::Event;
use crate::clock::now_ms;

/// What one connection's reads and requests have shown so far; written by `connection::Watched` and
/// `checks::EdgeService`, read by the task's checks. Everything happens on one worker thread, so the
/// atomics are never contended.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Bumped whenever bytes are read or written.
    pub(crate) activity: AtomicU32,
    /// When the head being read started, in `clock::now_ms` milliseconds (never 0); 0: none.
    pub(crate) head_started: AtomicU64,
    /// Heads read completely.
    heads: AtomicU32,
    /// The number (1-based) of the first head with `Content-Length` and `Transfer-Encoding`.
    smuggled_head: AtomicU32,
    /// Requests handed to the service, and responses it gave back.
    pub(crate) requests: AtomicU32,
    pub(crate) responses: AtomicU32,
    /// The watchdog's word to the connection's task: how to close ([`Close`]), then a wake-up.
    pub(crate) close: AtomicU8,
    pub(crate) closing: Notify,
}

/// How the watchdog asks a connection to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Close {
    /// Finish what is in flight, then close (HTTP/2: GOAWAY first).
    Graceful = 1,
    /// Close now.
    Drop = 2,
}

impl ConnState {
    pub(crate) fn on(&self, event: Event) {
        match event {
            Event::HeadStarted => {
                self.head_started.store(now_ms(), Ordering::Relaxed);
            }
            Event::HeadDone { smuggling } => {
                let number = self.heads.fetch_add(1, Ordering::Relaxed) + 1;
                if smuggling && self.smuggled_head.load(Ordering::Relaxed) == 0 {
                    self.smuggled_head.store(number, Ordering::Relaxed);
                }
                self.head_started.store(0, Ordering::Relaxed);
            }
            Event::Http2 => {}
        }
    }

    pub(crate) fn ask_to_close(&self, how: Close) {
        self.close.store(how as u8, Ordering::Relaxed);
        self.closing.notify_one();
    }

    /// Whether the request numbered `number` (1-based, in arrival order) carried both a length
    /// and a transfer coding. hyper has parsed its head from bytes `connection::Watched` saw first.
    pub(crate) fn smuggled(&self, number: u32) -> bool {
        self.smuggled_head.load(Ordering::Relaxed) == number
    }
}
