//! The concurrency limit shared by every call: `per_endpoint` slots on each endpoint, one FIFO
//! queue in front of all of them (so no slot idles while a call waits), a bounded number of
//! waiters, and the least-busy endpoint for each call that gets a slot.
//!
//! Admission: the slots plus the queue are the client's places. A job of many calls (a run)
//! reserves its places up front with [`Reservation`], or is refused before it starts; its calls
//! then never fail for a full queue. A call made outside a reservation takes one place for its
//! own life. A reservation holds at most a fair share of the places (the slots, or a quarter of the
//! queue if that is more); a job's further calls wait inside the job, not in the shared queue.
//!
//! A job can be stopped ([`Reservation::until`]): its calls still waiting leave the queue, and a
//! slot handed to one of them passes on to the next waiter, so it never reaches the backend.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{LlmError, LlmLoad};

/// The call time assumed for `Retry-After` until a call has finished.
const FIRST_CALL_TIME: Duration = Duration::from_secs(5);
/// `Retry-After` stays within these bounds.
const RETRY_AFTER: (u64, u64) = (1, 60);

pub(crate) struct Limiter {
    /// Permits = free slots over all endpoints; tokio's semaphore serves waiters in FIFO order.
    slots: Arc<Semaphore>,
    state: Mutex<State>,
    queued: AtomicUsize,
    max_queue: usize,
    capacity: usize,
    /// Each endpoint's name in metrics (`backend N`).
    labels: Vec<String>,
}

struct State {
    /// Calls in flight per endpoint.
    busy: Vec<usize>,
    /// Endpoints whose last attempt could not connect.
    down: Vec<bool>,
    /// Places held by reservations and by calls outside one.
    reserved: usize,
    /// Moving average of how long a call holds its slot.
    call_time: Duration,
}

/// Why a job of calls was not admitted, and when to try again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    #[error("the LLM backend is saturated: {held} of its {places} places (slots and queue) are held by runs in progress; retry in {} s", .retry_after.as_secs())]
    Saturated {
        held: usize,
        places: usize,
        retry_after: Duration,
    },
    #[error("every LLM backend is unreachable and the queue is full; retry in {} s", .retry_after.as_secs())]
    Unreachable { retry_after: Duration },
}

impl Refused {
    pub fn retry_after(&self) -> Duration {
        match self {
            Refused::Saturated { retry_after, .. } | Refused::Unreachable { retry_after } => {
                *retry_after
            }
        }
    }
}

/// Places held in an LLM client's queue for one job of many calls; released when dropped. Calls
/// made while a future runs under [`Reservation::scope`] draw from it: at most as many at once as
/// it holds places, the rest waiting inside the job.
#[derive(Default)]
pub struct Reservation {
    held: Option<Arc<Held>>,
    /// Fired when the job is no longer wanted; its waiting calls then give up their turn.
    stop: Option<CancellationToken>,
}

struct Held {
    limiter: Arc<Limiter>,
    places: usize,
    /// One permit per place: a call of the job holds one from before it queues until it ends.
    calls: Arc<Semaphore>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.limiter.state();
        state.reserved = state.reserved.saturating_sub(self.places);
    }
}

tokio::task_local! {
    static RESERVED: Reservation;
}

impl Reservation {
    /// Places held (zero for a job without calls, or a client without a limit).
    pub fn places(&self) -> usize {
        self.held.as_ref().map_or(0, |held| held.places)
    }

    /// Ties the job to `stop`: once it fires, a call of the job that has not reached the backend
    /// yet fails with [`LlmError::Abandoned`] and its slot goes to the next call waiting. The job's
    /// owner fires it where the stop happens (a request, a client leaving), so that no slot freed
    /// meanwhile is spent on the job before the owner gets to drop it.
    pub fn until(self, stop: CancellationToken) -> Self {
        Self {
            stop: Some(stop),
            ..self
        }
    }

    /// Runs `job` with its calls drawing from this reservation, which lasts as long as `job`.
    /// Calls from tasks `job` spawns are outside it.
    pub fn scope<F: Future>(self, job: F) -> impl Future<Output = F::Output> {
        RESERVED.scope(self, job)
    }
}

/// A slot on one endpoint, held for the whole call; dropping it frees the slot.
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    endpoint: usize,
    since: Instant,
    _slot: OwnedSemaphorePermit,
    /// The place the call holds: one of its job's, or its own.
    _place: Result<OwnedSemaphorePermit, OwnPlace>,
}

struct OwnPlace(Arc<Limiter>);

impl Drop for OwnPlace {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.reserved = state.reserved.saturating_sub(1);
    }
}

/// Keeps a waiter counted in the queue while it waits, including when its call is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("roomhost_llm_queued_calls").decrement(1.0);
    }
}

fn shut_down() -> LlmError {
    LlmError::Protocol("the LLM client was shut down".into())
}

impl Limiter {
    pub(crate) fn new(labels: Vec<String>, per_endpoint: usize, max_queue: usize) -> Self {
        let endpoints = labels.len();
        let capacity = endpoints * per_endpoint;
        for label in &labels {
            metrics::gauge!("roomhost_llm_slots", "endpoint" => label.clone())
                .set(per_endpoint as f64);
        }
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            state: Mutex::new(State {
                busy: vec![0; endpoints],
                down: vec![false; endpoints],
                reserved: 0,
                call_time: FIRST_CALL_TIME,
            }),
            queued: AtomicUsize::new(0),
            max_queue,
            capacity,
            labels,
        }
    }

    fn places(&self) -> usize {
        self.capacity + self.max_queue
    }

    /// The most places one reservation holds.
    fn fair_share(&self) -> usize {
        self.capacity.max(self.max_queue / 4)
    }

    /// Holds places for a job that makes at most `calls` calls at once (capped at a fair share),
    /// or refuses it when they are not all free.
    pub(crate) fn reserve(self: &Arc<Self>, calls: usize) -> Result<Reservation, Refused> {
        let places = calls.min(self.fair_share());
        if places == 0 {
            return Ok(Reservation::default());
        }
        self.take(places)?;
        Ok(Reservation {
            held: Some(Arc::new(Held {
                limiter: self.clone(),
                places,
                calls: Arc::new(Semaphore::new(places)),
            })),
            stop: None,
        })
    }

    fn take(&self, places: usize) -> Result<(), Refused> {
        let mut state = self.state();
        if state.reserved + places > self.places() {
            return Err(self.refusal(&state));
        }
        state.reserved += places;
        Ok(())
    }

    /// `Retry-After`: the waves of calls ahead (places held over slots) times the average call.
    fn refusal(&self, state: &State) -> Refused {
        let waves = state.reserved as f64 / self.capacity.max(1) as f64;
        let secs = (waves * state.call_time.as_secs_f64()).ceil() as u64;
        let retry_after = Duration::from_secs(secs.clamp(RETRY_AFTER.0, RETRY_AFTER.1));
        if state.down.iter().all(|&down| down) {
            Refused::Unreachable { retry_after }
        } else {
            Refused::Saturated {
                held: state.reserved,
                places: self.places(),
                retry_after,
            }
        }
    }

    /// Waits for a slot in FIFO order. A call of a reserved job first waits for one of its job's
    /// places; any other call takes a place of its own, or fails at once when none is free. A call
    /// of a stopped job gives up its turn (see [`Reservation::until`]).
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Permit, LlmError> {
        let (job, stop) = RESERVED
            .try_with(|r| {
                let held = r
                    .held
                    .clone()
                    .filter(|held| Arc::ptr_eq(&held.limiter, self));
                (held, r.stop.clone())
            })
            .unwrap_or_default();
        let stop = stop.unwrap_or_default();
        let place = match job {
            Some(held) => Ok(tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(LlmError::Abandoned),
                place = held.calls.clone().acquire_owned() => place.map_err(|_| shut_down())?,
            }),
            None => {
                self.take(1).map_err(|_| LlmError::Saturated {
                    waiting: self.queued.load(Ordering::SeqCst),
                    limit: self.max_queue,
                })?;
                Err(OwnPlace(self.clone()))
            }
        };
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) if !stop.is_cancelled() => slot,
            Ok(_) => return Err(LlmError::Abandoned),
            Err(_) => {
                // The place taken above bounds the queue: no check is needed here.
                self.queued.fetch_add(1, Ordering::SeqCst);
                metrics::gauge!("roomhost_llm_queued_calls").increment(1.0);
                let waiting = Waiting(&self.queued);
                let slot = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Err(LlmError::Abandoned),
                    slot = self.slots.clone().acquire_owned() => slot.map_err(|_| shut_down())?,
                };
                drop(waiting);
                // A slot freed by a cancel storm is handed over before the runtime has read the
                // other clients' hang-ups: yielding lets it (a yield resumes after the I/O
                // driver's next turn), so a job stopped meanwhile passes the slot on here instead
                // of spending it on a backend call dropped at once.
                tokio::task::yield_now().await;
                if stop.is_cancelled() {
                    return Err(LlmError::Abandoned);
                }
                slot
            }
        };
        Ok(Permit {
            endpoint: self.take_least_busy(),
            limiter: self.clone(),
            since: Instant::now(),
            _slot: slot,
            _place: place,
        })
    }

    /// With a slot in hand some endpoint is below its limit, and the least busy one is.
    fn take_least_busy(&self) -> usize {
        let mut state = self.state();
        let busy = &mut state.busy;
        let endpoint = (0..busy.len()).min_by_key(|&i| busy[i]).unwrap_or(0);
        if let Some(n) = busy.get_mut(endpoint) {
            *n += 1;
            self.in_flight_gauge(endpoint, *n);
        }
        endpoint
    }

    fn in_flight_gauge(&self, endpoint: usize, n: usize) {
        if let Some(label) = self.labels.get(endpoint) {
            metrics::gauge!("roomhost_llm_in_flight_calls", "endpoint" => label.clone())
                .set(n as f64);
        }
    }

    /// Notes whether `endpoint` could be reached, for telling a full queue from a dead backend.
    pub(crate) fn record_reachable(&self, endpoint: usize, reachable: bool) {
        if let Some(down) = self.state().down.get_mut(endpoint) {
            *down = !reachable;
        }
    }

    pub(crate) fn load(&self) -> LlmLoad {
        let state = self.state();
        LlmLoad {
            in_flight: state.busy.iter().sum(),
            queued: self.queued.load(Ordering::SeqCst),
            capacity: self.capacity,
            reserved: state.reserved,
        }
    }

    /// The counts stay consistent even if a holder panicked, so a poisoned lock is still usable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Permit {
    pub(crate) fn endpoint(&self) -> usize {
        self.endpoint
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.limiter.state();
        if let Some(n) = state.busy.get_mut(self.endpoint) {
            *n = n.saturating_sub(1);
            self.limiter.in_flight_gauge(self.endpoint, *n);
        }
        // An exponential moving average over the last few calls.
        state.call_time = state.call_time.mul_f64(0.8) + self.since.elapsed().mul_f64(0.2);
    }
}
