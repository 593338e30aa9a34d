//! Earlier turns of a thread, for a client that sends only its new message with a known
//! `threadId` (`curl`, say): the last finished run's input messages (which hold the turns before
//! it) and its answer, put before the new messages.

use serde_json::Value;

use super::{RunStatus, Store, StoreError};
use crate::agui::{Message, MessageContent, RunAgentInput};

/// Prepends the thread's earlier turns to `input.messages`, unless the client sent a history
/// itself (any assistant message) or the thread has no finished run; how many messages were
/// added.
pub async fn fill(
    store: &dyn Store,
    room: &str,
    input: &mut RunAgentInput,
) -> Result<usize, StoreError> {
    if input.messages.iter().any(|m| m.role == "assistant") {
        return Ok(0);
    }
    let runs = store.thread_runs(room, &input.thread_id).await?;
    let Some(last) = runs.iter().rev().find(|r| r.status == RunStatus::Finished) else {
        return Ok(0);
    };
    let earlier: RunAgentInput = serde_json::from_str(&last.input)
        .map_err(|e| StoreError::Corrupt(format!("run {}: input: {e}", last.id)))?;
    let answer = last
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|r| r.get("text").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let mut turns = earlier.messages;
    turns.push(Message {
        id: format!("{}-answer", last.id),
        role: "assistant".into(),
        content: MessageContent::Text(answer),
        rest: Default::default(),
    });
    let added = turns.len();
    turns.append(&mut input.messages);
    input.messages = turns;
    Ok(added)
}
