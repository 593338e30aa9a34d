//! The one writer per process: runs hand it their events without waiting, and it writes them in
//! batches, one transaction every [`FLUSH_EVERY`] or [`MAX_BATCH`] writes. When the database
//! fails it logs once, shows in `/readyz` that it does ([`Health`]), keeps retrying and, past
//! [`MAX_QUEUED_EVENTS`] waiting events, drops events and marks their runs' logs cut. A write the
//! database refuses for its own data is dropped alone ([`Fault::Data`]), its run marked cut.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{now_ms, Fault, RunStatus, Store, StoreError, Write};

/// How long the writer gathers writes before a transaction.
const FLUSH_EVERY: Duration = Duration::from_millis(25);
/// The most writes in one transaction.
const MAX_BATCH: usize = 512;
/// Events waiting for the database beyond which new ones are dropped (bounded memory).
pub const MAX_QUEUED_EVENTS: usize = 100_000;
/// The longest wait between two attempts while the database fails: short enough that `/readyz`
/// sees the database back within a second (one failed attempt is logged per outage, not per try).
const MAX_RETRY_DELAY: Duration = Duration::from_millis(500);

enum Op {
    Write(Write),
    /// Answered once everything sent before it is written (or given up on).
    Flush(oneshot::Sender<()>),
}

/// The database's state as the writer last saw it.
#[derive(Default)]
pub struct Health {
    error: Mutex<Option<String>>,
}

impl Health {
    /// The last write error, while writes are failing.
    pub fn error(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Holds a plain value no panic can leave half-written.
        self.error.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle runs write through. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Op>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    pub health: Arc<Health>,
}

impl Writer {
    /// Starts the writer task on `store`; `max_queued` events may wait for it.
    pub fn spawn(store: Arc<dyn Store>, max_queued: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            tx,
            queued: Arc::default(),
            max_queued,
            health: Arc::default(),
        };
        tokio::spawn(write_loop(
            store,
            rx,
            writer.queued.clone(),
            writer.health.clone(),
        ));
        writer
    }

    /// Queues a write that is not an event (finishes and cuts: one or two per run, never
    /// dropped).
    fn send(&self, write: Write) {
        // Fails only once the writer task is gone, i.e. the runtime is shutting down.
        let _ = self.tx.send(Op::Write(write));
    }

    /// Queues an event; false (and not queued) when too many are waiting.
    fn event(&self, write: Write) -> bool {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.tx.send(Op::Write(write)).is_ok()
    }

    /// Waits until every write queued so far is in the database, at most `limit`.
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Op::Flush(done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(())))
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Op>,
    queued: Arc<AtomicUsize>,
    health: Arc<Health>,
) {
    let mut batch: Vec<Write> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut delay = FLUSH_EVERY;
    let mut open = true;
    while open || !batch.is_empty() {
        if batch.is_empty() && flushes.is_empty() {
            match rx.recv().await {
                Some(op) => push(op, &mut batch, &mut flushes),
                None => break,
            }
        }
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        // A flush waits for what is there, not for more.
        while open && batch.len() < MAX_BATCH && flushes.is_empty() {
            tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => push(op, &mut batch, &mut flushes),
                    None => open = false,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if batch.is_empty() {
            answer(&mut flushes);
            continue;
        }
        let started = std::time::Instant::now();
        let written = write_batch(store.as_ref(), &batch).await;
        crate::telemetry::store_write(started.elapsed(), written.is_ok());
        match written {
            Ok(()) => {
                let events = batch
                    .iter()
                    .filter(|w| matches!(w, Write::Event { .. }))
                    .count();
                queued.fetch_sub(events, Ordering::Relaxed);
                batch.clear();
                delay = FLUSH_EVERY;
                if health.lock().take().is_some() {
                    tracing::info!("store: writing again");
                }
                // Every write received before these flushes was in the batch.
                answer(&mut flushes);
            }
            Err(e) => {
                // Logged once per outage, not once per try.
                if health.lock().replace(e.to_string()).is_none() {
                    tracing::error!(error = %e, "store: cannot write; streams go on, writes are retried");
                }
                // Whoever waits for a flush is told now rather than after the database is back.
                answer(&mut flushes);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// Writes the batch in one transaction. Should the database refuse a write's own data (a run
/// whose thread was deleted meanwhile, a value it cannot store), each write is tried alone and
/// the ones refused are dropped, their runs marked cut, so that one bad write cannot hold back
/// every later one. Any other error is the database's: the batch is retried whole.
async fn write_batch(store: &dyn Store, batch: &[Write]) -> Result<(), StoreError> {
    match store.write(batch).await {
        Err(e) if e.fault() == Fault::Data => {
            tracing::warn!(error = %e, "store: a batch was refused; writing its parts one by one");
            let mut cut: HashSet<&str> = HashSet::new();
            for write in batch {
                match store.write(std::slice::from_ref(write)).await {
                    Err(e) if e.fault() == Fault::Data => {
                        let (run_id, token) = write.run();
                        // Once per run: the rest of its refused writes go unlogged.
                        if cut.insert(run_id) {
                            tracing::warn!(error = %e, run_id, "store: a write refused for its data was dropped; the run is marked cut");
                            let mark = Write::Cut {
                                run_id: run_id.to_owned(),
                                token: token.clone(),
                            };
                            match store.write(std::slice::from_ref(&mark)).await {
                                Err(e) if e.fault() == Fault::Data => {}
                                other => other?,
                            }
                        }
                    }
                    other => other?,
                }
            }
            Ok(())
        }
        other => other,
    }
}

fn answer(flushes: &mut Vec<oneshot::Sender<()>>) {
    for done in flushes.drain(..) {
        // The waiter may have given up; nothing to tell then.
        let _ = done.send(());
    }
}

fn push(op: Op, batch: &mut Vec<Write>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match op {
        Op::Write(w) => batch.push(w),
        Op::Flush(done) => flushes.push(done),
    }
}

/// One run's event log: numbers its events (the SSE `id`) and hands them to the writer, up to
/// `cap` of them; past the cap, or when the writer is full, the run is marked cut.
pub struct RunLog {
    run_id: String,
    /// The token its start recorded the run with.
    token: Arc<str>,
    next_seq: i64,
    cap: i64,
    cut: bool,
    writer: Option<Writer>,
}

impl RunLog {
    /// The log of a run recorded with `token` (or of a run without a store when `writer` is
    /// `None`).
    pub fn new(writer: Option<Writer>, run_id: &str, token: &str, cap: usize) -> Self {
        RunLog {
            run_id: run_id.to_owned(),
            token: Arc::from(token),
            next_seq: 0,
            cap: i64::try_from(cap).unwrap_or(i64::MAX),
            cut: false,
            writer,
        }
    }

    /// Records one event's JSON; its sequence number.
    pub fn record(&mut self, data: &str) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(writer) = self.writer.as_ref().filter(|_| !self.cut) {
            let event = Write::Event {
                run_id: self.run_id.clone(),
                token: self.token.clone(),
                seq,
                data: data.to_owned(),
            };
            if seq >= self.cap || !writer.event(event) {
                self.cut = true;
                tracing::warn!(run_id = %self.run_id, seq, "store: run's event log cut");
                writer.send(Write::Cut {
                    run_id: self.run_id.clone(),
                    token: self.token.clone(),
                });
            }
        }
        seq
    }

    /// Records how the run ended.
    pub fn finish(&self, status: RunStatus, end: RunEnd) {
        if let Some(writer) = &self.writer {
            writer.send(Write::Finish {
                run_id: self.run_id.clone(),
                token: self.token.clone(),
                status,
                finished: now_ms(),
                end: Box::new(end),
            });
        }
    }

    /// The writer this log writes through, if any.
    pub fn writer(&self) -> Option<&Writer> {
        self.writer.as_ref()
    }
}

/// What a run that ended leaves beside its status (all none when it did not finish).
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    /// `RUN_FINISHED.result` and `.usage`, as JSON.
    pub result: Option<String>,
    pub usage: Option<String>,
    pub answer: Option<String>,
    pub llm_requests: Option<i64>,
}
