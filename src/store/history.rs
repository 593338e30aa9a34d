//! Earlier turns of a thread, for a client that sends only its new message with a known
//! `threadId` (`curl`, say): the last finished run's input messages (which hold the turns before
//! it) and its answer, put before the new messages.

use super::{LastTurn, StoreError};
use crate::agui::{Message, MessageContent, RunAgentInput};

/// Prepends the turns up to the thread's last finished run (`last`, from
/// [`super::Store::thread_turn`]) to `input.messages`, unless the client sent a history itself
/// (any assistant message) or there is no such run; how many messages were added.
pub fn fill(input: &mut RunAgentInput, last: Option<&LastTurn>) -> Result<usize, StoreError> {
    if input.messages.iter().any(|m| m.role == "assistant") {
        return Ok(0);
    }
    let Some(last) = last else {
        return Ok(0);
    };
    let earlier: RunAgentInput = serde_json::from_str(&last.input)
        .map_err(|e| StoreError::Corrupt(format!("run {}: input: {e}", last.run_id)))?;
    let answer = last.answer.clone().unwrap_or_default();
    let mut turns = earlier.messages;
    turns.push(Message {
        id: format!("{}-answer", last.run_id),
        role: "assistant".into(),
        content: MessageContent::Text(answer),
        rest: Default::default(),
    });
    let added = turns.len();
    turns.append(&mut input.messages);
    input.messages = turns;
    Ok(added)
}
