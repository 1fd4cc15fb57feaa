//! A bounded table turning label strings into small ids.
//!
//! Used for routes, server addresses and guarded labels: the first time a value
//! is seen it gets an id (until the table is full); afterwards the hot path is one
//! lock-free probe and no allocation.
//!
//! Built on [`Table`] rather than a kept map for the reason and figures in its module docs:
//! the ids are slot indices, so turning an id back into its value (once per new series) is
//! an index, and a `&'static str` route is found by its address without hashing.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::StringValue;

use crate::table::Table;

/// Slots of the by-address cache for `&'static str` values (route templates from a `route_fn`).
const STATIC_SLOTS: usize = 16;
/// Bits of a packed cache entry holding the id: table indices stay below 2^17.
const ID_BITS: u32 = 17;

pub(crate) struct Interner {
    table: Table<Box<str>, StringValue>,
    /// `address << ID_BITS | id` of recently seen `&'static str` values; 0 is empty.
    statics: [AtomicU64; STATIC_SLOTS],
    seeded: usize,
    /// Longer values are never admitted: they are almost certainly not a label.
    max_len: usize,
}

impl Interner {
    /// A table pre-seeded with `seed`, admitting up to `max_new` more values on
    /// first sight (together clamped to [`table::MAX_ENTRIES`](crate::table::MAX_ENTRIES)).
    pub(crate) fn new(
        seed: impl IntoIterator<Item = String>,
        max_new: usize,
        max_len: usize,
    ) -> Self {
        let seed: Vec<String> = seed.into_iter().collect();
        let table = Table::new(seed.len().saturating_add(max_new));
        for value in seed {
            let _ = table.get_or_insert(value.as_str(), || {
                (value.clone().into_boxed_str(), shared_value(&value))
            });
        }
        Self {
            seeded: table.len(),
            table,
            statics: std::array::from_fn(|_| AtomicU64::new(0)),
            max_len,
        }
    }

    /// [`lookup`](Self::lookup) for a value that lives forever, such as a route template a
    /// `route_fn` returns: it is found by its address (one atomic load and a length check)
    /// instead of being hashed and compared on every request.
    #[inline]
    pub(crate) fn lookup_static(&self, raw: &'static str) -> Option<u32> {
        let address = raw.as_ptr() as u64;
        if address >> (64 - ID_BITS) != 0 {
            return self.lookup(raw);
        }
        let slot = &self.statics[(address as usize >> 3) % STATIC_SLOTS];
        let packed = slot.load(Ordering::Relaxed);
        if packed >> ID_BITS == address {
            let id = (packed & ((1 << ID_BITS) - 1)) as u32;
            // Same address and same length: the same bytes (a shorter `&'static str` may start
            // at the same address, hence the length).
            if self
                .table
                .slot(id)
                .is_some_and(|(k, _)| k.len() == raw.len())
            {
                return Some(id);
            }
        }
        let id = self.lookup(raw)?;
        // One word holds both halves, so a reader never pairs an address with another's id.
        if u64::from(id) >> ID_BITS == 0 {
            slot.store(address << ID_BITS | u64::from(id), Ordering::Relaxed);
        }
        Some(id)
    }

    /// The id of `raw`, admitting it if there is room; `None` when it is refused.
    #[inline]
    pub(crate) fn lookup(&self, raw: &str) -> Option<u32> {
        if let Some((id, _)) = self.table.get(raw) {
            return Some(id);
        }
        if raw.len() > self.max_len || raw.is_empty() {
            return None;
        }
        self.table
            .get_or_insert(raw, || (raw.into(), shared_value(raw)))
            .map(|(id, _)| id)
    }

    pub(crate) fn value(&self, id: u32) -> Option<StringValue> {
        self.table.slot(id).map(|(_, v)| v.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    fn admitted(&self) -> usize {
        self.len() - self.seeded
    }
}

/// An attribute value whose clones share one allocation: a label handed out per series or
/// per `LabelGuard::label` call must not copy the string each time.
fn shared_value(value: &str) -> StringValue {
    StringValue::from(std::sync::Arc::<str>::from(value))
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("len", &self.len())
            .field("seeded", &self.seeded)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_until_full_then_refuses() {
        let t = Interner::new(["seed".to_owned()], 2, 10);
        let seed = t.lookup("seed").unwrap();
        let a = t.lookup("a").unwrap();
        let b = t.lookup("b").unwrap();
        assert_eq!(t.lookup("c"), None);
        assert_eq!(t.lookup("a"), Some(a));
        assert_eq!(t.value(b).unwrap().as_str(), "b");
        assert_eq!(t.value(seed).unwrap().as_str(), "seed");
        assert_eq!(t.len(), 3);
        assert_eq!(t.admitted(), 2);
    }

    #[test]
    fn static_values_are_found_by_address_and_checked_by_length() {
        static TEMPLATE: &str = "/users/{id}/orders";
        let t = Interner::new(Vec::new(), 4, 64);
        let long = t.lookup_static(TEMPLATE).unwrap();
        assert_eq!(t.lookup_static(TEMPLATE), Some(long), "cached by address");
        // A prefix of the same static string starts at the same address.
        let short = t.lookup_static(&TEMPLATE[..6]).unwrap();
        assert_ne!(short, long);
        assert_eq!(t.value(short).unwrap().as_str(), "/users");
        assert_eq!(t.lookup_static(TEMPLATE), Some(long));
        assert_eq!(
            t.lookup("/users/{id}/orders"),
            Some(long),
            "same id as by value"
        );
        assert_eq!(t.admitted(), 2);
    }

    #[test]
    fn refuses_long_and_empty_values() {
        let t = Interner::new(Vec::new(), 5, 3);
        assert_eq!(t.lookup("abcd"), None);
        assert_eq!(t.lookup(""), None);
        assert!(t.lookup("abc").is_some());
    }
}
