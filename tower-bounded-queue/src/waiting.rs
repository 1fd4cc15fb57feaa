//! The waiters, in the order they are served: one first-come-first-served line, or (fair
//! share, see [`crate::fair`]) one line per key, served across keys in turn: keys that just
//! started waiting first, then the others round robin (deficit round robin with every request
//! costing one, and fq_codel's new-flow list).
//!
//! Always used under the queue's lock; its length is the `waiting` count of the admission word.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::slot::Slot;

/// The key of requests without one, and of keys beyond `max_keys`.
pub(crate) const SHARED_KEY: u64 = u64::MAX;

/// Keys are already hashes (with the queue's random seed): hashing them again would only cost.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByKey = HashMap<u64, VecDeque<Arc<Slot>>, BuildHasherDefault<KeyHasher>>;

pub(crate) enum Waiting {
    Fifo(VecDeque<Arc<Slot>>),
    Fair(Fair),
}

pub(crate) struct Fair {
    lines: ByKey,
    /// Keys that started waiting since their last turn: served before `turn`, in the order
    /// they came (fq_codel's new flows). A key sending a request now and then waits for the
    /// next free slot, not for a round of every waiting key.
    fresh: VecDeque<u64>,
    /// Keys that had a turn and still have waiters, in the order they are served next.
    turn: VecDeque<u64>,
    max_keys: usize,
    /// Waiters in all lines.
    len: usize,
    /// Lines of keys of their own (not [`SHARED_KEY`]).
    own: usize,
    /// Emptied lines kept for the next key that starts waiting: a line per wait would
    /// otherwise cost an allocation and a free (about 60 ns of the waiting path,
    /// `benches/queue.rs`). At most `max_keys + 1`, like the lines.
    spare: Vec<VecDeque<Arc<Slot>>>,
}

/// Where a request that must wait may go, under fair share.
pub(crate) enum Place {
    /// Into its key's line (there is room).
    Join,
    /// Into its key's line, after the newest waiter of the fattest key leaves.
    Evict,
    /// Over its key's share: rejected.
    OverShare,
    /// The queue is full and no key is over its share: rejected as full.
    Full,
}

impl Waiting {
    pub(crate) fn new(fair_keys: Option<usize>) -> Self {
        match fair_keys {
            None => Waiting::Fifo(VecDeque::new()),
            Some(max_keys) => Waiting::Fair(Fair {
                lines: ByKey::default(),
                fresh: VecDeque::new(),
                turn: VecDeque::new(),
                max_keys,
                len: 0,
                own: 0,
                spare: Vec::new(),
            }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Waiting::Fifo(line) => line.len(),
            Waiting::Fair(fair) => fair.len,
        }
    }

    /// The key a request keyed `key` waits under: its own, or the shared one when it has none
    /// or `max_keys` others already wait.
    pub(crate) fn key_of(&self, key: Option<u64>) -> u64 {
        match (self, key) {
            (Waiting::Fair(fair), Some(key)) if key != SHARED_KEY => {
                if fair.own < fair.max_keys || fair.lines.contains_key(&key) {
                    key
                } else {
                    SHARED_KEY
                }
            }
            _ => SHARED_KEY,
        }
    }

    /// Where a request of `key` (from [`key_of`](Self::key_of)) may wait, `capacity` being the
    /// queue's.
    pub(crate) fn place(&self, key: u64, capacity: usize) -> Place {
        let Waiting::Fair(fair) = self else {
            return if self.len() < capacity {
                Place::Join
            } else {
                Place::Full
            };
        };
        let mine = fair.lines.get(&key).map_or(0, VecDeque::len);
        let keys = fair.lines.len() + usize::from(mine == 0);
        let share = share(capacity, keys);
        if mine >= share {
            return Place::OverShare;
        }
        if fair.len < capacity {
            return Place::Join;
        }
        match fair.fattest() {
            Some((_, waiting)) if waiting > share => Place::Evict,
            _ => Place::Full,
        }
    }

    pub(crate) fn push(&mut self, slot: Arc<Slot>) {
        match self {
            Waiting::Fifo(line) => line.push_back(slot),
            Waiting::Fair(fair) => {
                let key = slot.key;
                let line = fair.lines.entry(key).or_insert_with(|| {
                    fair.fresh.push_back(key);
                    fair.own += usize::from(key != SHARED_KEY);
                    fair.spare.pop().unwrap_or_default()
                });
                line.push_back(slot);
                fair.len += 1;
            }
        }
    }

    /// The next waiter to serve: the oldest, or the oldest of the key whose turn it is.
    pub(crate) fn pop_next(&mut self) -> Option<Arc<Slot>> {
        match self {
            Waiting::Fifo(line) => line.pop_front(),
            Waiting::Fair(fair) => {
                let key = fair.fresh.pop_front().or_else(|| fair.turn.pop_front())?;
                let line = fair.lines.get_mut(&key)?;
                let slot = line.pop_front();
                if line.is_empty() {
                    fair.retire(key);
                } else {
                    fair.turn.push_back(key);
                }
                fair.len -= 1;
                slot
            }
        }
    }

    /// The waiter to push out when the queue is full in drop-oldest mode: the oldest, or under
    /// fair share the oldest of the key with the most waiters.
    pub(crate) fn pop_oldest(&mut self) -> Option<Arc<Slot>> {
        match self {
            Waiting::Fifo(line) => line.pop_front(),
            Waiting::Fair(fair) => {
                let (key, _) = fair.fattest()?;
                fair.take(key, true)
            }
        }
    }

    /// The newest waiter of the key with the most waiters (fair share's eviction).
    pub(crate) fn pop_fattest_newest(&mut self) -> Option<Arc<Slot>> {
        match self {
            Waiting::Fifo(line) => line.pop_back(),
            Waiting::Fair(fair) => {
                let (key, _) = fair.fattest()?;
                fair.take(key, false)
            }
        }
    }

    /// Removes `slot` (its wait ended without a slot); whether it was there.
    pub(crate) fn remove(&mut self, slot: &Arc<Slot>) -> bool {
        let line = match self {
            Waiting::Fifo(line) => line,
            Waiting::Fair(fair) => {
                let Some(line) = fair.lines.get_mut(&slot.key) else {
                    return false;
                };
                let Some(i) = line.iter().position(|s| Arc::ptr_eq(s, slot)) else {
                    return false;
                };
                line.remove(i);
                fair.len -= 1;
                if line.is_empty() {
                    fair.retire(slot.key);
                    fair.forget(slot.key);
                }
                return true;
            }
        };
        match line.iter().position(|s| Arc::ptr_eq(s, slot)) {
            Some(i) => {
                line.remove(i);
                true
            }
            None => false,
        }
    }
}

impl Fair {
    /// The key with the most waiters, and how many.
    fn fattest(&self) -> Option<(u64, usize)> {
        self.lines
            .iter()
            .map(|(key, line)| (*key, line.len()))
            .max_by_key(|(_, len)| *len)
    }

    /// The oldest (`front`) or newest waiter of `key`.
    fn take(&mut self, key: u64, front: bool) -> Option<Arc<Slot>> {
        let line = self.lines.get_mut(&key)?;
        let slot = if front {
            line.pop_front()
        } else {
            line.pop_back()
        };
        if line.is_empty() {
            self.retire(key);
            self.forget(key);
        }
        self.len -= 1;
        slot
    }

    /// `key`'s line is empty: it goes, its allocation kept for the next.
    fn retire(&mut self, key: u64) {
        if let Some(line) = self.lines.remove(&key) {
            self.own -= usize::from(key != SHARED_KEY);
            if self.spare.len() <= self.max_keys {
                self.spare.push(line);
            }
        }
    }

    /// `key` has no waiters left: out of the turns.
    fn forget(&mut self, key: u64) {
        self.fresh.retain(|k| *k != key);
        self.turn.retain(|k| *k != key);
    }
}

/// A key's share of `capacity` when `keys` keys wait: rounded up, at least 1.
pub(crate) fn share(capacity: usize, keys: usize) -> usize {
    capacity.div_ceil(keys.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_up_and_never_reach_zero() {
        assert_eq!(share(100, 1), 100);
        assert_eq!(share(100, 3), 34);
        assert_eq!(share(10, 20), 1);
        assert_eq!(share(0, 2), 1);
    }
}
