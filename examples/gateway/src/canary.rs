//! Canary rollout: a CP2 flag set to a share (`CP2_QUEUE_MANAGEMENT_ENABLED=10%`) applies to
//! that share of requests.
//!
//! Each request gets a bucket from 0 to 99, a stable hash of its tenant (`x-tenant-id`) or,
//! without one, of its `x-request-id`, so one tenant's requests always land on the same side
//! (a request with neither gets a random bucket). A flag at `N%` is on for buckets below `N`
//! (`Rollout::flags_for`). The buckets split into sides, runs of buckets that get the same flags;
//! each side is a whole gateway stack of its own (`stack::build`), and [`steer`] hands every
//! request to its side's stack.
//!
//! A side's metrics carry `cp2.mode`: `on` for the side that gets every flag being rolled out,
//! `off` for the others, so PromQL can set the two populations side by side. In Prometheus the
//! mode is the label `otel_scope_cp2_mode`: it is an attribute of the side's meter, so every
//! series recorded through that meter carries it, those of the four crates included. Stateful
//! protections are split with the traffic: a side with a bounded queue gets its share of the
//! queue's concurrency and capacity, so the two sides together never let more through than the
//! settings say; each side keeps its own retry budget and routing state.

use http::{HeaderMap, HeaderName, Request};
use tower::steer::{Picker, Steer};
use tower::util::Either;

use crate::config::{Flags, Rollout};
use crate::dispatch::is_proxied;

/// The tenant header the gateway labels metrics by; also what keeps a tenant on one side.
pub const TENANT: HeaderName = HeaderName::from_static("x-tenant-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Buckets a request can fall in.
const BUCKETS: u8 = 100;

/// Which population a side's metrics belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    On,
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
        }
    }
}

/// A run of buckets that get the same flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    pub flags: Flags,
    /// First bucket of the run.
    pub from: u8,
    /// One past its last bucket.
    pub to: u8,
    pub mode: Mode,
}

impl Side {
    /// The side's share of requests, in percent.
    pub fn percent(&self) -> u8 {
        self.to - self.from
    }
}

/// The sides of a rollout, in bucket order; one side when every flag is at 0% or 100%.
pub fn sides(rollout: &Rollout) -> Vec<Side> {
    let mut bounds = vec![0, BUCKETS];
    for share in [
        rollout.retry,
        rollout.timeout,
        rollout.queue,
        rollout.metrics,
    ] {
        bounds.push(share.min(BUCKETS));
    }
    bounds.sort_unstable();
    bounds.dedup();
    let canary = rollout.flags_for(0);
    bounds
        .windows(2)
        .map(|run| {
            let flags = rollout.flags_for(run[0]);
            let mode = if flags == canary && flags != Flags::default() {
                Mode::On
            } else {
                Mode::Off
            };
            Side {
                flags,
                from: run[0],
                to: run[1],
                mode,
            }
        })
        .collect()
}

/// The bucket of a request (0 to 99): by tenant, else by request id, else at random.
pub fn bucket(headers: &HeaderMap) -> u8 {
    match headers.get(TENANT).or_else(|| headers.get(REQUEST_ID)) {
        Some(key) => (stable_hash(key.as_bytes()) % u64::from(BUCKETS)) as u8,
        None => fastrand::u8(..BUCKETS),
    }
}

/// FNV-1a, then SplitMix64's finaliser to spread its low bits. Written out rather than taken
/// from a hashing crate because a tenant's side must not move when a dependency or the
/// compiler changes its hash: this function's output is part of the rollout's contract.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Picks each request's side by its bucket. Paths the gateway answers itself (`/healthz`,
/// `/readyz`, `/metrics`) go to the last side, the one with the baseline flags.
#[derive(Clone, Copy)]
pub struct BySide {
    /// The side index of each bucket.
    map: [u8; BUCKETS as usize],
    baseline: usize,
}

impl BySide {
    fn new(sides: &[Side]) -> Self {
        let mut map = [0; BUCKETS as usize];
        for (index, side) in sides.iter().enumerate() {
            for bucket in side.from..side.to {
                map[usize::from(bucket)] = index as u8;
            }
        }
        Self {
            map,
            baseline: sides.len().saturating_sub(1),
        }
    }

    fn side(&self, path: &str, headers: &HeaderMap) -> usize {
        if !is_proxied(path) {
            return self.baseline;
        }
        usize::from(self.map[usize::from(bucket(headers))])
    }
}

impl<S, B> Picker<S, Request<B>> for BySide {
    fn pick(&mut self, request: &Request<B>, _: &[S]) -> usize {
        self.side(request.uri().path(), request.headers())
    }
}

/// Puts `apps` (one per side, in the order of `sides`) behind one service that hands each
/// request to its side's stack; with one side, that side's stack unchanged.
pub fn steer<S, B>(sides: &[Side], mut apps: Vec<S>) -> Either<S, Steer<S, BySide, Request<B>>>
where
    S: tower::Service<Request<B>>,
{
    if apps.len() == 1 {
        return Either::Left(apps.pop().expect("one side"));
    }
    Either::Right(Steer::new(apps, BySide::new(sides)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(retry: u8, timeout: u8, queue: u8, metrics: u8) -> Rollout {
        Rollout {
            retry,
            timeout,
            queue,
            metrics,
        }
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(name), value.parse().unwrap());
        headers
    }

    #[test]
    fn zero_and_hundred_percent_are_exactly_off_and_on() {
        let off = sides(&rollout(0, 0, 0, 0));
        assert_eq!(off.len(), 1);
        assert_eq!((off[0].mode, off[0].flags), (Mode::Off, Flags::default()));
        let on = sides(&rollout(100, 100, 100, 100));
        assert_eq!(on.len(), 1);
        assert_eq!(on[0].mode, Mode::On);
        assert_eq!(on[0].percent(), 100);
        assert!(on[0].flags.retry && on[0].flags.timeout && on[0].flags.queue);
    }

    #[test]
    fn a_share_splits_the_buckets_into_canary_and_baseline() {
        let split = sides(&rollout(10, 100, 100, 100));
        assert_eq!(split.len(), 2);
        assert_eq!(
            (split[0].from, split[0].to, split[0].mode),
            (0, 10, Mode::On)
        );
        assert!(split[0].flags.retry);
        assert_eq!(
            (split[1].from, split[1].to, split[1].mode),
            (10, 100, Mode::Off)
        );
        assert!(!split[1].flags.retry && split[1].flags.queue && split[1].flags.metrics);
        // Two shares: the smaller one's requests are in the larger one too; only the run with
        // every flag is the canary.
        let modes: Vec<_> = sides(&rollout(10, 50, 0, 100))
            .iter()
            .map(|s| (s.from, s.to, s.mode, s.flags.retry, s.flags.timeout))
            .collect();
        assert_eq!(
            modes,
            [
                (0, 10, Mode::On, true, true),
                (10, 50, Mode::Off, false, true),
                (50, 100, Mode::Off, false, false),
            ]
        );
    }

    #[test]
    fn ten_percent_of_ten_thousand_requests_is_ten_percent_within_two() {
        let split = BySide::new(&sides(&rollout(10, 100, 100, 100)));
        let canary = (0..10_000)
            .filter(|id| split.side("/v1/chat", &with("x-request-id", &id.to_string())) == 0)
            .count();
        assert!((800..=1200).contains(&canary), "{canary} of 10,000");
        // What the gateway answers itself comes from the baseline, whatever the request.
        assert_eq!(split.side("/readyz", &with("x-tenant-id", "acme")), 1);
        assert_eq!(split.side("/metrics", &HeaderMap::new()), 1);
        // ... and the tenants of a many-tenant service likewise.
        let tenants = (0..10_000)
            .filter(|t| bucket(&with("x-tenant-id", &format!("tenant-{t}"))) < 10)
            .count();
        assert!((800..=1200).contains(&tenants), "{tenants} of 10,000");
    }

    #[test]
    fn a_tenant_never_changes_side_whatever_its_request_ids() {
        for tenant in ["acme", "globex", "initech", "t-42"] {
            let mut headers = with("x-tenant-id", tenant);
            let first = bucket(&headers);
            for id in 0..1000 {
                headers.insert(REQUEST_ID, id.to_string().parse().unwrap());
                assert_eq!(bucket(&headers), first, "{tenant}");
            }
        }
        // The hash is part of the rollout's contract: pinned, so a change cannot slip in.
        assert_eq!(
            stable_hash(b"acme") % 100,
            bucket(&with("x-tenant-id", "acme")) as u64
        );
        assert_eq!(stable_hash(b""), 17_665_956_581_633_026_203);
    }
}
