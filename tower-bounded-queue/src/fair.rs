//! Fair share between keys (tenants, flows): what a request is keyed by.
//!
//! With [`BoundedQueueBuilder::fair_by`](crate::BoundedQueueBuilder::fair_by) (or
//! [`fair_by_header`](crate::BoundedQueueBuilder::fair_by_header)), each request that has to
//! wait is keyed, and while requests wait:
//!
//! - **a key holds at most its share of the capacity**: `capacity / k`, rounded up, where `k` is
//!   the number of keys waiting (this request's included), and at least 1. A request over its
//!   key's share is rejected with [`OverloadReason::FairShare`](crate::OverloadReason::FairShare).
//!   When the queue is full, a request under its share takes the place of the newest waiter of
//!   the key furthest over its share, which is rejected with the same reason; so one key
//!   flooding the queue cannot shut the others out;
//! - **waiters are served across keys in turn** (deficit round robin with every request
//!   costing one), each key's own waiters in arrival order. A key that starts waiting is
//!   served before the keys that already had a turn (fq_codel's new flows), so a tenant sending
//!   a request now and then waits for the next free slot, not for a round of every key.
//!
//! Keys are bounded like metric labels: at most `max_keys` (default 64) have their own share at
//! once; requests with no key, or keyed while that many others wait, share one key. A key's
//! state lives only while it has waiters, so memory stays bounded by the capacity and
//! `max_keys` whatever the keys. Keys are hashed with the queue's own random seed, so a client
//! cannot choose keys that collide.
//!
//! A request that takes a free slot at once is never keyed: fair share costs nothing until
//! requests wait.

use std::hash::{BuildHasher, Hash, Hasher};

use http::{HeaderName, Request};

/// How a queue keys a request for fair share. Implemented by [`NoKey`] (no fair share, the
/// default), [`FairBy`] (a closure) and [`ByHeader`] (a request header's value).
pub trait FairKey<Req> {
    /// The request's key hashed with `state`, or `None` when the request has no key (it then
    /// shares the key of all such requests).
    fn key<H: BuildHasher>(&self, request: &Req, state: &H) -> Option<u64>;
}

/// No fair share: every request waits in one first-come-first-served line.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKey;

impl<Req> FairKey<Req> for NoKey {
    #[inline]
    fn key<H: BuildHasher>(&self, _: &Req, _: &H) -> Option<u64> {
        None
    }
}

/// Keys requests by a closure's answer (any hashable value; `None` for no key).
///
/// ```
/// use tower_bounded_queue::BoundedQueueBuilder;
///
/// struct Job { tenant: u32 }
///
/// let layer = BoundedQueueBuilder::new(8)
///     .capacity(100)
///     .fair_by(|job: &Job| Some(job.tenant))
///     .build();
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FairBy<F>(pub(crate) F);

impl<F> FairBy<F> {
    /// Keys requests by `key`'s answer.
    pub fn new(key: F) -> Self {
        FairBy(key)
    }
}

impl<F, Req, T> FairKey<Req> for FairBy<F>
where
    F: Fn(&Req) -> Option<T>,
    T: Hash,
{
    fn key<H: BuildHasher>(&self, request: &Req, state: &H) -> Option<u64> {
        (self.0)(request).map(|key| state.hash_one(key))
    }
}

/// Keys HTTP requests by the value of one header (e.g. `x-tenant-id`).
#[derive(Clone, Debug)]
pub struct ByHeader(pub(crate) HeaderName);

impl ByHeader {
    /// Keys requests by the value of header `name`.
    pub fn new(name: HeaderName) -> Self {
        ByHeader(name)
    }
}

impl<B> FairKey<Request<B>> for ByHeader {
    fn key<H: BuildHasher>(&self, request: &Request<B>, state: &H) -> Option<u64> {
        let value = request.headers().get(&self.0)?;
        let mut hasher = state.build_hasher();
        hasher.write(value.as_bytes());
        Some(hasher.finish())
    }
}

/// Fair share by the key when there is one, off when `None`: one type either way, for a setting
/// read at start-up ([`BoundedQueueBuilder::fair_share`](crate::BoundedQueueBuilder::fair_share)).
impl<Req, K: FairKey<Req>> FairKey<Req> for Option<K> {
    #[inline]
    fn key<H: BuildHasher>(&self, request: &Req, state: &H) -> Option<u64> {
        self.as_ref()?.key(request, state)
    }
}

/// The default number of keys with a share of their own.
pub(crate) const DEFAULT_MAX_KEYS: usize = 64;

/// The most keys with a share of their own a queue accepts; more are clamped.
pub(crate) const MAX_KEYS: usize = 4096;
