//! Amounts held per key, each key within a limit: runs in flight per user, runs and LLM queue
//! places held by detached runs per owner. What is held is given back when its [`Held`] drops.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

type Book<K> = Arc<Mutex<HashMap<K, usize>>>;

/// What each key holds; a key holding nothing has no entry.
pub struct Tally<K>(Book<K>);

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

/// An amount held for a key until dropped.
pub struct Held<K: Hash + Eq> {
    book: Option<(Book<K>, K, usize)>,
}

impl<K: Hash + Eq + Clone> Tally<K> {
    /// Holds `amount` more for `key`, or refuses with what the key holds when that would pass
    /// `limit` (0: no limit).
    pub fn enter(&self, key: &K, amount: usize, limit: usize) -> Result<Held<K>, usize> {
        if limit == 0 {
            return Ok(Held { book: None });
        }
        let mut book = lock(&self.0);
        let held = book.entry(key.clone()).or_default();
        if held.saturating_add(amount) > limit {
            let now = *held;
            if now == 0 {
                book.remove(key);
            }
            return Err(now);
        }
        *held += amount;
        Ok(Held {
            book: Some((self.0.clone(), key.clone(), amount)),
        })
    }
}

impl<K: Hash + Eq> Tally<K> {
    /// What `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        lock(&self.0).get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq> Drop for Held<K> {
    fn drop(&mut self) {
        if let Some((book, key, amount)) = self.book.take() {
            let mut book = lock(&book);
            if let Some(held) = book.get_mut(&key) {
                *held = held.saturating_sub(amount);
                if *held == 0 {
                    book.remove(&key);
                }
            }
        }
    }
}

fn lock<K>(book: &Mutex<HashMap<K, usize>>) -> MutexGuard<'_, HashMap<K, usize>> {
    // Counts stay consistent whatever a panicking holder was doing: poison is ignored.
    book.lock().unwrap_or_else(|p| p.into_inner())
}
