//! The lookups one request makes on the hot path, through our insert-only table and interner
//! (compiled here from `src/` by path, as they are crate-private) and through two maintained
//! concurrent maps, `papaya` and `dashmap`, each hashed with the same `foldhash`.
//!
//! One "request" is what an HTTP server layer with a `route_fn`, a guarded tenant label and
//! active requests looks up once its values have been seen: the route template (a
//! `&'static str`), the tenant (a `&str` from a header), the series key and the
//! active-requests key. The project's rule: our table stays only where a kept map costs more
//! than 15 ns per request more; `table.rs` cites the figures.
//!
//! cargo bench -p tower-metrics-layer --bench tables -- --warm-up-time 1 --measurement-time 3

// The benchmark measures the crate's own table and interner against kept maps. They are
// `pub(crate)` internals, so it compiles their two files whole (using part of them, not their
// tests): the one cleaner way, a public or `#[doc(hidden)]` API only for a benchmark, would
// widen what the crate promises.
#![allow(dead_code, unused_imports)]

#[path = "../src/table.rs"]
mod table;

#[path = "../src/intern.rs"]
mod intern;

use std::hash::Hash;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use foldhash::fast::RandomState;

use intern::Interner;
use table::Table;

const ROUTES: [&str; 8] = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/models/{id}",
    "/users/{id}",
    "/users/{id}/orders",
    "/health",
    "/metrics",
];
const TENANTS: usize = 20;
const SERIES: u32 = 1000;

/// Shaped like the layer's series key: method, scheme, version, status, port, route, host,
/// label, outcome.
type SeriesKey = (u8, u8, u8, u16, u16, u32, u32, u32, u8);
type ActiveKey = (u8, u8, u32, u16);

/// What a cache holds per series (the real one holds attributes and bound instruments).
struct Series([u64; 4]);

/// The keys one benchmark round walks through, `n` requests long, all already admitted.
struct Workload {
    routes: Vec<&'static str>,
    tenants: Vec<String>,
    series: Vec<SeriesKey>,
    active: Vec<ActiveKey>,
}

fn series_key(i: u32) -> SeriesKey {
    (
        2,
        0,
        2,
        200 + (i % 5) as u16,
        0,
        i % 8,
        u32::MAX,
        i % 20,
        (i / 160) as u8,
    )
}

fn workload(n: usize) -> Workload {
    let tenants: Vec<String> = (0..TENANTS).map(|i| format!("tenant-{i}")).collect();
    Workload {
        routes: (0..n).map(|i| ROUTES[i % ROUTES.len()]).collect(),
        tenants: (0..n).map(|i| tenants[(i * 7) % TENANTS].clone()).collect(),
        series: (0..n as u32)
            .map(|i| series_key((i * 37) % SERIES))
            .collect(),
        active: (0..n).map(|i| (2, 0, u32::MAX, (i % 4) as u16)).collect(),
    }
}

/// Ours: the interner for strings (the route by address, as the layer does for a
/// `route_fn`), the table for the keys.
struct Ours {
    routes: Interner,
    tenants: Interner,
    series: Table<SeriesKey, Arc<Series>>,
    active: Table<ActiveKey, Arc<Series>>,
}

impl Ours {
    fn new() -> Self {
        let this = Self {
            routes: Interner::new(Vec::new(), 1000, 512),
            tenants: Interner::new(Vec::new(), 20, 64),
            series: Table::new(2000),
            active: Table::new(2000),
        };
        for route in ROUTES {
            this.routes.lookup_static(route);
        }
        for t in 0..TENANTS {
            this.tenants.lookup(&format!("tenant-{t}"));
        }
        for i in 0..SERIES {
            let k = series_key(i);
            this.series
                .get_or_insert(&k, || (k, Arc::new(Series([0; 4]))));
        }
        for port in 0..4 {
            let k = (2, 0, u32::MAX, port);
            this.active
                .get_or_insert(&k, || (k, Arc::new(Series([0; 4]))));
        }
        this
    }

    #[inline]
    fn request(
        &self,
        route: &'static str,
        tenant: &str,
        series: &SeriesKey,
        active: &ActiveKey,
    ) -> u64 {
        let r = self.routes.lookup_static(route).unwrap_or(0);
        let t = self.tenants.lookup(tenant).unwrap_or(0);
        let s = self.series.get(series).map_or(0, |(_, s)| s.0[0]);
        let a = self.active.get(active).map_or(0, |(_, s)| s.0[1]);
        u64::from(r) + u64::from(t) + s + a
    }
}

/// A kept map in our places: strings to ids, keys to series.
trait KeptMap<K, V> {
    fn with_capacity(n: usize) -> Self;
    fn insert(&self, k: K, v: V);
    fn read<Q, R>(&self, k: &Q, f: impl FnOnce(Option<&V>) -> R) -> R
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized;
}

struct Papaya<K, V>(papaya::HashMap<K, V, RandomState>);

impl<K: Hash + Eq + Send + Sync, V: Send + Sync> KeptMap<K, V> for Papaya<K, V> {
    fn with_capacity(n: usize) -> Self {
        Self(papaya::HashMap::with_capacity_and_hasher(
            n,
            RandomState::default(),
        ))
    }
    fn insert(&self, k: K, v: V) {
        self.0.pin().insert(k, v);
    }
    #[inline]
    fn read<Q, R>(&self, k: &Q, f: impl FnOnce(Option<&V>) -> R) -> R
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        f(self.0.pin().get(k))
    }
}

struct Dash<K, V>(dashmap::DashMap<K, V, RandomState>);

impl<K: Hash + Eq, V> KeptMap<K, V> for Dash<K, V> {
    fn with_capacity(n: usize) -> Self {
        Self(dashmap::DashMap::with_capacity_and_hasher(
            n,
            RandomState::default(),
        ))
    }
    fn insert(&self, k: K, v: V) {
        self.0.insert(k, v);
    }
    #[inline]
    fn read<Q, R>(&self, k: &Q, f: impl FnOnce(Option<&V>) -> R) -> R
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.0.get(k) {
            Some(entry) => f(Some(entry.value())),
            None => f(None),
        }
    }
}

/// The same four lookups through a kept map.
struct Kept<S, T, A> {
    routes: S,
    tenants: S,
    series: T,
    active: A,
}

impl<S, T, A> Kept<S, T, A>
where
    S: KeptMap<Box<str>, u32>,
    T: KeptMap<SeriesKey, Arc<Series>>,
    A: KeptMap<ActiveKey, Arc<Series>>,
{
    fn new() -> Self {
        let this = Self {
            routes: S::with_capacity(1000),
            tenants: S::with_capacity(20),
            series: T::with_capacity(2000),
            active: A::with_capacity(2000),
        };
        for (i, route) in ROUTES.iter().enumerate() {
            this.routes.insert((*route).into(), i as u32);
        }
        for t in 0..TENANTS {
            this.tenants.insert(format!("tenant-{t}").into(), t as u32);
        }
        for i in 0..SERIES {
            this.series.insert(series_key(i), Arc::new(Series([0; 4])));
        }
        for port in 0..4 {
            this.active
                .insert((2, 0, u32::MAX, port), Arc::new(Series([0; 4])));
        }
        this
    }

    #[inline]
    fn request(&self, route: &str, tenant: &str, series: &SeriesKey, active: &ActiveKey) -> u64 {
        let r = self.routes.read(route, |v| v.copied().unwrap_or(0));
        let t = self.tenants.read(tenant, |v| v.copied().unwrap_or(0));
        let s = self.series.read(series, |v| v.map_or(0, |s| s.0[0]));
        let a = self.active.read(active, |v| v.map_or(0, |s| s.0[1]));
        u64::from(r) + u64::from(t) + s + a
    }
}

fn bench(c: &mut Criterion) {
    const N: usize = 1024;
    let w = workload(N);
    let mut g = c.benchmark_group("lookups_per_request");

    let ours = Ours::new();
    let mut i = 0;
    g.bench_function("ours_table_and_interner", |b| {
        b.iter(|| {
            i = (i + 1) % N;
            black_box(ours.request(w.routes[i], &w.tenants[i], &w.series[i], &w.active[i]))
        })
    });

    let papaya = Kept::<Papaya<_, _>, Papaya<_, _>, Papaya<_, _>>::new();
    g.bench_function("papaya", |b| {
        b.iter(|| {
            i = (i + 1) % N;
            black_box(papaya.request(w.routes[i], &w.tenants[i], &w.series[i], &w.active[i]))
        })
    });

    let dash = Kept::<Dash<_, _>, Dash<_, _>, Dash<_, _>>::new();
    g.bench_function("dashmap", |b| {
        b.iter(|| {
            i = (i + 1) % N;
            black_box(dash.request(w.routes[i], &w.tenants[i], &w.series[i], &w.active[i]))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
