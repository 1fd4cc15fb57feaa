//! Idle connections, per thread and per host: a plain list in a thread-local, no lock.
//!
//! A connection is taken out for one request and comes back when its answer's body has ended
//! ([`Lease::release`]); dropped otherwise (an error, an answer not read to its end), which
//! closes it. The newest idle connection is used first, so the oldest ones age out: at most
//! `max_idle_per_host` are kept per host, and one idle for `idle_timeout` is closed when its
//! host is next used, or by this thread's sweep task (current-thread runtimes, where that task
//! runs on this thread).

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::uri::Authority;
use hyper::client::conn::http1::SendRequest;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

thread_local! {
    /// This thread's pools, one per client ([`super::UpstreamClient`] and its clones); almost
    /// always exactly one. Type-erased because a pool's type depends on the request body.
    static POOLS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// Tells one pool from its successor when a thread's pool is ever made again (a lease from
/// the old one is then closed, not put in the new one under a wrong host index).
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

struct Slot {
    client: u64,
    pool: Box<dyn Any>,
}

/// How many idle connections a host keeps, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_idle_per_host: usize,
    pub(crate) idle_timeout: Duration,
}

/// One client's idle connections on one thread.
struct Pool<B> {
    instance: u64,
    limits: Limits,
    hosts: Vec<Host<B>>,
}

struct Host<B> {
    /// Compared byte for byte: a host spelled in two cases gets two lists, which costs nothing
    /// but a connection, where a case-insensitive comparison would cost every request.
    authority: Authority,
    /// Oldest first; taken from and put back at the back.
    idle: VecDeque<Idle<B>>,
}

struct Idle<B> {
    sender: SendRequest<B>,
    /// When it has been idle for `idle_timeout`: compared, not subtracted, on every checkout.
    expires: Instant,
}

/// Where a connection goes back to: a host of one pool of this thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Home {
    client: u64,
    instance: u64,
    host: usize,
}

/// A connection out of its pool for one request: back with [`release`](Self::release), closed
/// when dropped.
pub(crate) struct Lease<B> {
    sender: SendRequest<B>,
    home: Home,
}

impl<B: 'static> Lease<B> {
    pub(crate) fn new(sender: SendRequest<B>, home: Home) -> Self {
        Self { sender, home }
    }

    /// Puts the connection back in the pool it came from, if this thread has it.
    pub(crate) fn release(self) {
        let Lease { sender, home } = self;
        // Dropped (closed) when the pool is gone, is another thread's, or keeps enough.
        let _ = with_pool::<B, _>(home.client, None, |pool| {
            if pool.instance == home.instance {
                pool.put(home.host, sender, Instant::now());
            }
        });
    }
}

/// Finds (or makes) this thread's pool of `client` and its list for `authority`; takes the
/// newest live idle connection there, if any.
pub(crate) fn checkout<B: 'static>(
    client: u64,
    limits: Limits,
    authority: &Authority,
) -> (Home, Option<SendRequest<B>>) {
    let found = with_pool::<B, _>(client, Some(limits), |pool| {
        let host = pool.host(authority);
        let home = Home {
            client,
            instance: pool.instance,
            host,
        };
        (home, pool.take(host, Instant::now()))
    });
    // Only when thread-local storage is being torn down: a connection that goes nowhere.
    found.unwrap_or((Home::NOWHERE, None))
}

/// The next live idle connection of `home`'s host, if any.
pub(crate) fn take<B: 'static>(home: Home) -> Option<SendRequest<B>> {
    with_pool::<B, _>(home.client, None, |pool| {
        (pool.instance == home.instance)
            .then(|| pool.take(home.host, Instant::now()))
            .flatten()
    })
    .flatten()
}

impl Home {
    /// No pool: what is leased from here is closed after its request.
    const NOWHERE: Home = Home {
        client: u64::MAX,
        instance: u64::MAX,
        host: 0,
    };
}

/// Runs `f` on this thread's pool of `client`, made first if `make` gives its limits.
fn with_pool<B: 'static, R>(
    client: u64,
    make: Option<Limits>,
    f: impl FnOnce(&mut Pool<B>) -> R,
) -> Option<R> {
    POOLS
        .try_with(|slots| {
            // Nothing below re-enters: dropping a connection's sender only wakes its task.
            let mut slots = slots.borrow_mut();
            let index = match slots.iter().position(|slot| slot.client == client) {
                Some(index) => index,
                None => {
                    let pool = Pool::<B>::new(make?);
                    sweep::<B>(client, pool.instance, pool.limits.idle_timeout);
                    slots.push(Slot {
                        client,
                        pool: Box::new(pool),
                    });
                    slots.len() - 1
                }
            };
            let pool = slots[index].pool.downcast_mut::<Pool<B>>()?;
            Some(f(pool))
        })
        .ok()
        .flatten()
}

impl<B> Pool<B> {
    fn new(limits: Limits) -> Self {
        Self {
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            limits,
            hosts: Vec::new(),
        }
    }

    /// The index of `authority`'s list, added if new.
    fn host(&mut self, authority: &Authority) -> usize {
        let wanted = authority.as_str().as_bytes();
        match self
            .hosts
            .iter()
            .position(|host| host.authority.as_str().as_bytes() == wanted)
        {
            Some(index) => index,
            None => {
                self.hosts.push(Host {
                    authority: authority.clone(),
                    idle: VecDeque::new(),
                });
                self.hosts.len() - 1
            }
        }
    }

    /// The newest idle connection of `host` that is neither closed nor expired. When the
    /// newest has expired, so have all the older ones.
    fn take(&mut self, host: usize, now: Instant) -> Option<SendRequest<B>> {
        let idle = &mut self.hosts.get_mut(host)?.idle;
        while let Some(entry) = idle.pop_back() {
            if entry.expires <= now {
                idle.clear();
                return None;
            }
            if !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Keeps `sender` as the newest idle connection of `host`, closing expired ones and the
    /// oldest one past the limit.
    fn put(&mut self, host: usize, sender: SendRequest<B>, now: Instant) {
        let Limits {
            max_idle_per_host,
            idle_timeout,
        } = self.limits;
        let Some(host) = self.hosts.get_mut(host) else {
            return;
        };
        if sender.is_closed() || max_idle_per_host == 0 {
            return;
        }
        let idle = &mut host.idle;
        while idle.front().is_some_and(|entry| entry.expires <= now) {
            idle.pop_front();
        }
        if idle.len() >= max_idle_per_host {
            idle.pop_front();
        }
        // An idle timeout too long to add never expires.
        let expires = now.checked_add(idle_timeout).unwrap_or_else(far_future);
        idle.push_back(Idle { sender, expires });
    }

    /// Closes every expired or closed idle connection.
    fn expire(&mut self, now: Instant) {
        for host in &mut self.hosts {
            host.idle
                .retain(|entry| entry.expires > now && !entry.sender.is_closed());
        }
    }
}

/// On a current-thread runtime, a task that closes this thread's expired idle connections
/// every `idle_timeout` even when no request comes to use the pool (as hyper-util's legacy pool
/// does); it ends with the runtime. A multi-threaded runtime could run it on any thread, where
/// it would sweep that thread's pool instead, so there expiry waits for the host's next use.
fn sweep<B: 'static>(client: u64, instance: u64, every: Duration) {
    let Ok(runtime) = Handle::try_current() else {
        return;
    };
    if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return;
    }
    let every = every.max(MIN_SWEEP);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let alive = with_pool::<B, _>(client, None, |pool| {
                let alive = pool.instance == instance;
                if alive {
                    pool.expire(Instant::now());
                }
                alive
            });
            if alive != Some(true) {
                break;
            }
        }
    });
}

/// About 30 years from now: an instant no idle connection reaches.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// The shortest time between two sweeps, however short the idle timeout.
const MIN_SWEEP: Duration = Duration::from_millis(10);
