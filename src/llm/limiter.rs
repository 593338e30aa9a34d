//! The concurrency limit shared by every call: `per_endpoint` slots on each endpoint, one FIFO
//! queue in front of all of them (so no slot idles while a call waits), a bounded number of
//! waiters, and the least-busy endpoint for each call that gets a slot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{LlmError, LlmLoad};

pub(crate) struct Limiter {
    /// Permits = free slots over all endpoints; tokio's semaphore serves waiters in FIFO order.
    slots: Arc<Semaphore>,
    /// Calls in flight per endpoint.
    busy: Mutex<Vec<usize>>,
    queued: AtomicUsize,
    max_queue: usize,
    capacity: usize,
}

/// A slot on one endpoint, held for the whole call; dropping it frees the slot.
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    endpoint: usize,
    _slot: OwnedSemaphorePermit,
}

/// Keeps a waiter counted in the queue while it waits, including when its call is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limiter {
    pub(crate) fn new(endpoints: usize, per_endpoint: usize, max_queue: usize) -> Self {
        let capacity = endpoints * per_endpoint;
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            busy: Mutex::new(vec![0; endpoints]),
            queued: AtomicUsize::new(0),
            max_queue,
            capacity,
        }
    }

    /// Waits for a slot in FIFO order, or fails at once when `max_queue` calls already wait.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Permit, LlmError> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                self.queued
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                        (q < self.max_queue).then_some(q + 1)
                    })
                    .map_err(|waiting| LlmError::Saturated {
                        waiting,
                        limit: self.max_queue,
                    })?;
                let _waiting = Waiting(&self.queued);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| LlmError::Protocol("the LLM client was shut down".into()))?
            }
        };
        Ok(Permit {
            endpoint: self.take_least_busy(),
            limiter: self.clone(),
            _slot: slot,
        })
    }

    /// With a slot in hand some endpoint is below its limit, and the least busy one is.
    fn take_least_busy(&self) -> usize {
        let mut busy = self.busy();
        let endpoint = (0..busy.len()).min_by_key(|&i| busy[i]).unwrap_or(0);
        if let Some(n) = busy.get_mut(endpoint) {
            *n += 1;
        }
        endpoint
    }

    pub(crate) fn load(&self) -> LlmLoad {
        LlmLoad {
            in_flight: self.busy().iter().sum(),
            queued: self.queued.load(Ordering::SeqCst),
            capacity: self.capacity,
        }
    }

    /// The counts stay consistent even if a holder panicked, so a poisoned lock is still usable.
    fn busy(&self) -> MutexGuard<'_, Vec<usize>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Permit {
    pub(crate) fn endpoint(&self) -> usize {
        self.endpoint
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(n) = self.limiter.busy().get_mut(self.endpoint) {
            *n = n.saturating_sub(1);
        }
    }
}
