//! Taking up a run whose owner died: it ends `interrupted`, with its last event stored under a
//! sequence number of its own, so that a client reconnecting anywhere reads how it ended.

use crate::agents::{AgentError, ErrorCode};
use crate::agui::Event;
use crate::state::{AppState, Stored};
use crate::store::{now_ms, Orphan};

/// Takes up a run this process has just claimed.
pub(super) async fn take_up(_app: &AppState, stored: &Stored, orphan: Orphan) {
    interrupt(stored, &orphan).await;
}

/// Ends a claimed run `interrupted`, its last event stored.
async fn interrupt(stored: &Stored, orphan: &Orphan) {
    let last = Event::from(AgentError::Failed {
        code: ErrorCode::Interrupted,
        message: "the server running this run stopped before it finished and the run could not \
                  be taken up elsewhere; start a new run"
            .into(),
    });
    let json = serde_json::to_string(&last).unwrap_or_default();
    match stored
        .store
        .interrupt(&orphan.run_id, now_ms(), &json)
        .await
    {
        Ok(true) => {
            tracing::warn!(run_id = %orphan.run_id, "a stopped replica's run ended interrupted")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, run_id = %orphan.run_id, "store: cannot end a stopped replica's run")
        }
    }
}
