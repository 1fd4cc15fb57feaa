//! A bounded table turning label strings into small ids.
//!
//! Used for routes, server addresses and guarded labels: the first time a value
//! is seen it gets an id (until the table is full); afterwards the hot path is one
//! lock-free probe and no allocation.

use opentelemetry::StringValue;

use crate::table::Table;

pub(crate) struct Interner {
    table: Table<Box<str>, StringValue>,
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
                (
                    value.clone().into_boxed_str(),
                    StringValue::from(value.clone()),
                )
            });
        }
        Self {
            seeded: table.len(),
            table,
            max_len,
        }
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
            .get_or_insert(raw, || (raw.into(), StringValue::from(raw.to_owned())))
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
    fn refuses_long_and_empty_values() {
        let t = Interner::new(Vec::new(), 5, 3);
        assert_eq!(t.lookup("abcd"), None);
        assert_eq!(t.lookup(""), None);
        assert!(t.lookup("abc").is_some());
    }
}
