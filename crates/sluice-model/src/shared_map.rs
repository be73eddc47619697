//! A hash map whose clone is cheap and whose changes copy a small part of it.
//!
//! Every apply publishes a new snapshot built from the previous one. With 20,000 hosts a plain
//! `HashMap` clone copied all 20,000 entries (and dropping the old snapshot released them again):
//! most of an apply that changed one Ingress. Here the entries live in a fixed number of shards,
//! each behind an `Arc`; a clone copies the shard pointers and a change copies one shard.
//! A lookup hashes the key once and probes one ordinary (hashbrown) table, so the data plane's
//! cost per lookup does not grow with the number of entries.

use hashbrown::{DefaultHashBuilder, HashTable, hash_table};
use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ops::Index;
use std::sync::Arc;

/// Enough that one shard stays small at tens of thousands of entries; few enough that cloning
/// the shard pointers of an almost empty map costs nothing worth measuring.
const SHARDS: usize = 256;

/// One part of the map, shared between clones until one of them changes it.
type Shard<K, V> = Arc<HashTable<(K, V)>>;

pub struct SharedMap<K, V> {
    hasher: DefaultHashBuilder,
    shards: Box<[Shard<K, V>]>,
    len: usize,
}

/// Bits of the hash that pick the shard. hashbrown takes a table's bucket from the low bits and
/// its probe tag from the top seven; the shard must use neither, or every entry of a shard would
/// share a tag (or a bucket) and probes would degrade.
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

impl<K, V> SharedMap<K, V> {
    pub fn new() -> Self {
        let empty = Arc::new(HashTable::new());
        SharedMap {
            hasher: DefaultHashBuilder::default(),
            shards: (0..SHARDS).map(|_| empty.clone()).collect(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            shards: self.shards.iter(),
            current: None,
            left: self.len,
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

impl<K: Hash + Eq, V> SharedMap<K, V> {
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.shards[shard_of(hash)]
            .find(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SharedMap<K, V> {
    /// Copies the key's shard first when another clone still shares it.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hasher.hash_one(&key);
        let hasher = &self.hasher;
        let shard = Arc::make_mut(&mut self.shards[shard_of(hash)]);
        match shard.entry(hash, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k)) {
            hash_table::Entry::Occupied(mut entry) => {
                Some(std::mem::replace(&mut entry.get_mut().1, value))
            }
            hash_table::Entry::Vacant(entry) => {
                entry.insert((key, value));
                self.len += 1;
                None
            }
        }
    }

    /// Copies the key's shard only when the key is there.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let slot = &mut self.shards[shard_of(hash)];
        slot.find(hash, |(k, _)| k.borrow() == key)?;
        let entry = Arc::make_mut(slot)
            .find_entry(hash, |(k, _)| k.borrow() == key)
            .ok()?;
        let ((_, value), _) = entry.remove();
        self.len -= 1;
        Some(value)
    }
}

impl<K, V> Default for SharedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Clone for SharedMap<K, V> {
    fn clone(&self) -> Self {
        SharedMap {
            hasher: self.hasher.clone(),
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, Q, V> Index<&Q> for SharedMap<K, V>
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    type Output = V;

    /// Panics when the key is absent, like `HashMap`'s index.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("key not in SharedMap")
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for SharedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = SharedMap::new();
        map.extend(entries);
        map
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Extend<(K, V)> for SharedMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (k, v) in entries {
            self.insert(k, v);
        }
    }
}

impl<'a, K, V> IntoIterator for &'a SharedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

/// Entries in no particular order, like `HashMap`'s.
pub struct Iter<'a, K, V> {
    shards: std::slice::Iter<'a, Shard<K, V>>,
    current: Option<hash_table::Iter<'a, (K, V)>>,
    left: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.current.as_mut().and_then(Iterator::next) {
                self.left -= 1;
                return Some((k, v));
            }
            self.current = Some(self.shards.next()?.iter());
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_like_a_hash_map() {
        let mut map: SharedMap<String, u32> = SharedMap::new();
        let mut model: HashMap<String, u32> = HashMap::new();
        // A fixed pseudo-random walk of inserts, replacements and removals over 3,000 keys.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("host-{}.test", x % 3_000);
            if x.is_multiple_of(3) {
                assert_eq!(map.remove(key.as_str()), model.remove(&key));
            } else {
                let value = (x >> 40) as u32;
                assert_eq!(map.insert(key.clone(), value), model.insert(key, value));
            }
            assert_eq!(map.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(map.get(k.as_str()), Some(v));
            assert_eq!(map[k.as_str()], *v);
        }
        let mut seen: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut expected: Vec<_> = model.into_iter().collect();
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected);
        assert_eq!(map.iter().len(), map.len());
        assert!(map.get("absent.test").is_none());
    }

    #[test]
    fn a_clone_is_unaffected_by_changes_to_the_original() {
        let mut original: SharedMap<Arc<str>, u32> = (0..1_000)
            .map(|i| (Arc::from(format!("h{i}")), i))
            .collect();
        let before = original.clone();
        original.insert("h1".into(), 99);
        original.insert("new".into(), 7);
        original.remove("h2");
        assert_eq!(before.get("h1"), Some(&1));
        assert_eq!(before.get("h2"), Some(&2));
        assert!(before.get("new").is_none());
        assert_eq!(before.len(), 1_000);
        assert_eq!(original.get("h1"), Some(&99));
        assert!(original.get("h2").is_none());
        assert_eq!(original.len(), 1_000);
    }

    #[test]
    fn a_change_copies_one_shard_and_shares_the_rest() {
        let mut original: SharedMap<Arc<str>, u32> = (0..10_000)
            .map(|i| (Arc::from(format!("h{i}")), i))
            .collect();
        let before = original.clone();
        original.insert("h5".into(), 55);
        let shared = original
            .shards
            .iter()
            .zip(before.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, SHARDS - 1);
    }

    #[test]
    fn removing_an_absent_key_copies_nothing() {
        let original: SharedMap<Arc<str>, u32> =
            (0..100).map(|i| (Arc::from(format!("h{i}")), i)).collect();
        let mut changed = original.clone();
        assert_eq!(changed.remove("absent"), None);
        assert!(
            changed
                .shards
                .iter()
                .zip(original.shards.iter())
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
    }
}
