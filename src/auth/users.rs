//! The per-user limit of runs in flight, so one user cannot take every LLM slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::User;

type Book = Arc<Mutex<HashMap<User, usize>>>;

/// Runs in flight per user; a user with none has no entry.
#[derive(Default)]
pub struct UserRuns(Book);

/// One run counted against its user until dropped.
pub struct UserRun {
    book: Option<(Book, User)>,
}

impl UserRuns {
    /// Counts a run for `user`, or refuses it with the user's runs in flight when `limit` (0: none)
    /// is reached.
    pub fn enter(&self, user: &User, limit: usize) -> Result<UserRun, usize> {
        if limit == 0 {
            return Ok(UserRun { book: None });
        }
        let mut counts = lock(&self.0);
        let n = counts.entry(user.clone()).or_default();
        if *n >= limit {
            return Err(*n);
        }
        *n += 1;
        Ok(UserRun {
            book: Some((self.0.clone(), user.clone())),
        })
    }
}

impl Drop for UserRun {
    fn drop(&mut self) {
        if let Some((book, user)) = self.book.take() {
            let mut counts = lock(&book);
            if let Some(n) = counts.get_mut(&user) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&user);
                }
            }
        }
    }
}

fn lock(book: &Mutex<HashMap<User, usize>>) -> MutexGuard<'_, HashMap<User, usize>> {
    // Counts stay consistent whatever a panicking holder was doing: poison is ignored.
    book.lock().unwrap_or_else(|p| p.into_inner())
}
