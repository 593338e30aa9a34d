//! News between replicas sharing a PostgreSQL store, over `LISTEN/NOTIFY`: which runs have new
//! events (their followers elsewhere wake at once instead of at the next poll), which runs were
//! asked to cancel, and which process handed its runs over. Notifications are sent on commit and
//! may be lost while the listening connection is down: every reader also polls, less often.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{watch, Notify};

use super::StoreError;

/// Payload: run ids with new events, comma-separated.
pub const EVENTS: &str = "roomhost_events";
/// Payload: a run id whose owner is asked to cancel it.
pub const CANCEL: &str = "roomhost_cancel";
/// Payload: the instance that released its lease; its runs are orphans now.
pub const HANDOVER: &str = "roomhost_handover";
/// A notification's payload is limited to 8000 bytes.
const MAX_PAYLOAD: usize = 7_900;
/// How long the listener waits before listening again after its connection failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// What this process heard.
#[derive(Default)]
pub struct Notices {
    /// Runs followed here that run elsewhere: woken when their events are stored.
    runs: Mutex<HashMap<String, watch::Sender<()>>>,
    /// Woken on a cancel request or a handover, for this process's replica check.
    pub wake: Notify,
}

impl Notices {
    /// A receiver marked changed whenever the run's events grow in another process.
    pub fn watch(&self, run_id: &str) -> watch::Receiver<()> {
        let mut runs = lock(&self.runs);
        runs.retain(|_, tx| tx.receiver_count() > 0);
        runs.entry(run_id.to_owned())
            .or_insert_with(|| watch::Sender::new(()))
            .subscribe()
    }

    fn heard(&self, channel: &str, payload: &str) {
        if channel == EVENTS {
            let runs = lock(&self.runs);
            for run_id in payload.split(',') {
                if let Some(tx) = runs.get(run_id) {
                    tx.send_replace(());
                }
            }
        } else {
            self.wake.notify_one();
        }
    }
}

/// The run ids joined into as few payloads as fit.
pub fn payloads(run_ids: BTreeSet<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in run_ids {
        match out.last_mut() {
            Some(last) if last.len() + 1 + id.len() <= MAX_PAYLOAD => {
                last.push(',');
                last.push_str(id);
            }
            _ => out.push(id.to_owned()),
        }
    }
    out
}

/// Listens on one connection of its own for as long as the process runs. The first connection
/// must succeed (the store is unusable otherwise); later failures are logged and retried.
pub async fn listen(url: &str, notices: Arc<Notices>) -> Result<(), StoreError> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen_all([EVENTS, CANCEL, HANDOVER]).await?;
    tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => notices.heard(n.channel(), n.payload()),
                // The connection was lost; the next call connects and listens again. What was
                // sent meanwhile is found by polling.
                Ok(None) => {
                    tracing::warn!("store: the notification connection dropped; listening again")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store: cannot listen for notifications");
                    tokio::time::sleep(RELISTEN_AFTER).await;
                }
            }
        }
    });
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A plain map no panic can leave half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
