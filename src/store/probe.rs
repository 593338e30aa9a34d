//! `/readyz`'s look at the store: a probe ([`Store::probe`]) begun within [`FRESH_FOR`] answers
//! for all callers, and one that has not answered within [`ANSWER_WITHIN`] is taken as a fault.
//! An older probe still under way (stuck behind a lock, or a connection attempt backing off) is
//! not waited for: a new one starts, so the database's return is seen at once; at most one starts
//! per [`FRESH_FOR`], each bounded by the database's own timeouts. Probes run as tasks of their
//! own, so a caller giving up never leaves a transaction half done.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

use super::{Store, StoreError};

/// How long a probe's answer stands.
const FRESH_FOR: Duration = Duration::from_millis(500);
/// How long `/readyz` waits for a probe: a healthy database answers in milliseconds.
const ANSWER_WITHIN: Duration = Duration::from_millis(750);

type Answer = Shared<BoxFuture<'static, Result<(), Arc<StoreError>>>>;

#[derive(Default)]
pub struct Probe {
    last: Mutex<Option<(Instant, Answer)>>,
}

impl Probe {
    /// Whether the store takes writes, as a probe begun within [`FRESH_FOR`] finds.
    pub async fn check(&self, store: &Arc<dyn Store>) -> Result<(), Arc<StoreError>> {
        let answer = {
            // Holds a plain value no panic can leave half-written.
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match &*last {
                Some((at, answer)) if at.elapsed() < FRESH_FOR => answer.clone(),
                _ => {
                    let store = store.clone();
                    let task = tokio::spawn(async move { store.probe().await.map_err(Arc::new) });
                    let answer = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(Arc::new(StoreError::Corrupt(format!("probe task: {e}"))))
                        })
                    }
                    .boxed()
                    .shared();
                    *last = Some((Instant::now(), answer.clone()));
                    answer
                }
            }
        };
        tokio::time::timeout(ANSWER_WITHIN, answer)
            .await
            .unwrap_or_else(|_| Err(Arc::new(StoreError::Stalled)))
    }
}
