//! This process among the replicas sharing its store: it holds a lease that it renews every
//! `heartbeat`, takes up the running runs of processes whose lease expired (or that handed theirs
//! over), and cancels its runs that another replica was asked to cancel. A live process's runs
//! are never touched: only a lease that ran out makes a run an orphan.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::adopt;
use crate::state::{AppState, Stored};
use crate::store::{now_ms, Notices, Store};

/// How often this process looks for cancel requests made on other replicas; with PostgreSQL a
/// notification usually brings them sooner.
const CANCEL_POLL: Duration = Duration::from_millis(500);

/// Starts the replica check; `None` without a store. It stops when `stop` fires.
pub(super) fn spawn(app: AppState, stop: CancellationToken) -> Option<JoinHandle<()>> {
    let stored = app.stored.clone()?;
    Some(tokio::spawn(async move {
        let notices = stored.store.notices();
        let mut beat = tokio::time::interval(app.settings.heartbeat);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut cancels = tokio::time::interval(CANCEL_POLL);
        cancels.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let woken = woken(&notices);
        tokio::pin!(woken);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = beat.tick() => {
                    renew(&app, &stored).await;
                    take_orphans(&app, &stored).await;
                }
                _ = cancels.tick() => cancel_requested(&app, stored.store.as_ref()).await,
                _ = &mut woken => {
                    woken.set(self::woken(&notices));
                    cancel_requested(&app, stored.store.as_ref()).await;
                    take_orphans(&app, &stored).await;
                }
            }
        }
    }))
}

/// Resolves when another replica announces a cancel request or a handover (never without
/// notifications).
async fn woken(notices: &Option<Arc<Notices>>) {
    match notices {
        Some(n) => n.wake.notified().await,
        None => std::future::pending().await,
    }
}

async fn renew(app: &AppState, stored: &Stored) {
    let now = now_ms();
    let lease = i64::try_from(app.settings.lease.as_millis()).unwrap_or(i64::MAX);
    if let Err(e) = stored
        .store
        .renew_lease(now, now.saturating_add(lease))
        .await
    {
        tracing::warn!(error = %e, "store: cannot renew this process's lease; other replicas may take its runs");
    }
}

/// Cancels this process's runs that were asked to cancel elsewhere.
async fn cancel_requested(app: &AppState, store: &dyn Store) {
    match store.cancel_requests().await {
        Ok(ids) => {
            for id in ids {
                if let Some(live) = app.live.get(&id) {
                    live.cancel.cancel();
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "store: cannot read cancel requests"),
    }
}

/// Claims the runs whose owner's lease expired and takes each up (a process shutting down takes
/// none).
async fn take_orphans(app: &AppState, stored: &Stored) {
    if app.shutdown.is_cancelled() {
        return;
    }
    let orphans = match stored.store.orphans(now_ms()).await {
        Ok(orphans) => orphans,
        Err(e) => {
            tracing::warn!(error = %e, "store: cannot look for runs left by stopped replicas");
            return;
        }
    };
    for orphan in orphans {
        match stored.store.claim(&orphan).await {
            Ok(true) => adopt::take_up(app, stored, orphan).await,
            // Another replica was first, or the run ended meanwhile.
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, run_id = %orphan.run_id, "store: cannot claim a run")
            }
        }
    }
}

/// Hands this process's runs over: its lease ends now, so another replica (or this one
/// restarted) takes them up at once. Called once every event streamed here is stored.
pub(super) async fn hand_over(stored: &Stored) {
    match stored.store.release_lease().await {
        Ok(()) => tracing::info!("runs still going were handed over to the other replicas"),
        Err(e) => {
            tracing::warn!(error = %e, "store: cannot release the lease; other replicas take this process's runs once it expires")
        }
    }
}
