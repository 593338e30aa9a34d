//! `/readyz`'s look at the store: one probe ([`Store::probe`]) at a time, its answer kept for
//! [`FRESH_FOR`], and one that has not answered within [`ANSWER_WITHIN`] taken as a fault. The
//! probe runs as a task of its own, so a caller giving up never leaves a transaction half done.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

use super::{Store, StoreError};

/// How long a probe's answer stands.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// How long `/readyz` waits for a probe.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);

type Answer = Shared<BoxFuture<'static, Result<(), Arc<StoreError>>>>;

#[derive(Default)]
pub struct Probe {
    last: Mutex<Option<(Instant, Answer)>>,
}

impl Probe {
    /// Whether the store takes writes, as a probe begun within the last second (or the one still
    /// under way) found.
    pub async fn check(&self, store: &Arc<dyn Store>) -> Result<(), Arc<StoreError>> {
        let answer = {
            // Holds a plain value no panic can leave half-written.
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match &*last {
                Some((at, answer)) if answer.peek().is_none() || at.elapsed() < FRESH_FOR => {
                    answer.clone()
                }
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
