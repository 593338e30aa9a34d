//! Runs in flight in this process. Each keeps its most recent events, so a client that comes back
//! (or a second one) follows it live from any sequence number, and counts who follows it, so a run
//! nobody follows for the detached grace is cancelled.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Events a live run keeps in memory; older ones are read back from the store.
const RECENT: usize = 512;

/// Every run in flight here, by run id.
#[derive(Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<String, Arc<LiveRun>>>,
}

impl LiveRuns {
    /// Adds a run, stopped by `cancel`; `None` if one with that id is here already (going on, or
    /// just finished).
    pub fn insert(
        &self,
        run_id: &str,
        room: &str,
        owner: &str,
        thread_id: &str,
        cancel: CancellationToken,
    ) -> Option<Arc<LiveRun>> {
        let mut runs = lock(&self.runs);
        if runs.contains_key(run_id) {
            return None;
        }
        let run = Arc::new(LiveRun {
            room: room.to_owned(),
            owner: owner.to_owned(),
            thread_id: thread_id.to_owned(),
            tail: Mutex::default(),
            last: watch::Sender::new(-1),
            cancel,
            followers: AtomicUsize::new(0),
            followers_changed: Notify::new(),
        });
        runs.insert(run_id.to_owned(), run.clone());
        Some(run)
    }

    pub fn get(&self, run_id: &str) -> Option<Arc<LiveRun>> {
        lock(&self.runs).get(run_id).cloned()
    }

    /// Whether a run of `owner`'s thread is here (going on, or just finished).
    pub fn in_thread(&self, thread_id: &str, owner: &str) -> bool {
        lock(&self.runs)
            .values()
            .any(|r| r.thread_id == thread_id && r.owner == owner)
    }

    /// Cancels and forgets the thread's runs (the thread is being deleted).
    pub fn remove_thread(&self, thread_id: &str) {
        lock(&self.runs).retain(|_, r| {
            if r.thread_id == thread_id {
                r.cancel.cancel();
            }
            r.thread_id != thread_id
        });
    }

    pub fn remove(&self, run_id: &str) {
        lock(&self.runs).remove(run_id);
    }

    pub fn len(&self) -> usize {
        lock(&self.runs).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Default)]
struct Tail {
    events: VecDeque<(i64, Arc<str>)>,
    ended: bool,
}

pub struct LiveRun {
    pub room: String,
    /// The user who started it: nobody else may follow or cancel it.
    pub owner: String,
    pub thread_id: String,
    tail: Mutex<Tail>,
    /// The last sequence number pushed; followers wait for it to change.
    last: watch::Sender<i64>,
    /// Fired to stop the run: `POST .../cancel`, the thread deleted, or (with no detached grace)
    /// its client gone.
    pub cancel: CancellationToken,
    followers: AtomicUsize,
    followers_changed: Notify,
}

/// What a follower at some position gets.
pub enum Since {
    /// The events after it, in order (maybe none yet), and whether the run has ended.
    Events(Vec<(i64, Arc<str>)>, bool),
    /// The next event is no longer kept here: read it from the store.
    Gap,
}

impl LiveRun {
    /// Adds the run's next event (its JSON).
    pub fn push(&self, seq: i64, data: Arc<str>) {
        let mut tail = lock(&self.tail);
        if tail.events.len() == RECENT {
            tail.events.pop_front();
        }
        tail.events.push_back((seq, data));
        drop(tail);
        self.last.send_replace(seq);
    }

    /// No more events will come.
    pub fn end(&self) {
        lock(&self.tail).ended = true;
        self.last.send_modify(|_| {});
    }

    /// Whether the run has had its last event.
    pub fn has_ended(&self) -> bool {
        lock(&self.tail).ended
    }

    /// The events with a sequence number above `after`.
    pub fn since(&self, after: i64) -> Since {
        let tail = lock(&self.tail);
        match tail.events.front() {
            Some(&(first, _)) if first > after + 1 => Since::Gap,
            _ => Since::Events(
                tail.events
                    .iter()
                    .filter(|(seq, _)| *seq > after)
                    .cloned()
                    .collect(),
                tail.ended,
            ),
        }
    }

    /// The sequence number of the oldest event kept.
    pub fn oldest(&self) -> Option<i64> {
        lock(&self.tail).events.front().map(|(seq, _)| *seq)
    }

    /// A receiver that wakes when an event is pushed or the run ends.
    pub fn watch(&self) -> watch::Receiver<i64> {
        self.last.subscribe()
    }

    /// Counts a follower until the guard is dropped.
    pub fn follow(self: &Arc<Self>) -> Follower {
        self.followers.fetch_add(1, Ordering::SeqCst);
        self.followers_changed.notify_waiters();
        Follower(self.clone())
    }

    /// Resolves once nobody has followed the run for `grace`.
    pub async fn unfollowed_for(&self, grace: Duration) {
        loop {
            let changed = self.followers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.followers.load(Ordering::SeqCst) == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(grace) => {
                        if self.followers.load(Ordering::SeqCst) == 0 {
                            return;
                        }
                    }
                    _ = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

/// One client following a run; dropping it lets the detached grace start.
pub struct Follower(Arc<LiveRun>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.followers.fetch_sub(1, Ordering::SeqCst);
        self.0.followers_changed.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain collections that a panic elsewhere cannot leave half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
