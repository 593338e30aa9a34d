//! Earlier turns of a thread, for a client that sends only its new message with a known
//! `threadId` (`curl`, the chat page): rebuilt from the thread's finished runs, each of which keeps
//! the messages its client sent and its answer's text. Read newest first and only as far as can
//! matter to a model whose context is bounded anyway: at most [`MAX_TURNS`] runs and about
//! [`MAX_BYTES`] of their inputs and answers, and no further back than a run whose client sent a
//! history itself (its input already holds every turn before it).

use super::{Store, StoreError, Turn};
use crate::agui::{Message, MessageContent, RunAgentInput};

/// The most earlier runs a rebuilt history goes back.
pub const MAX_TURNS: usize = 100;
/// About the most bytes of earlier inputs and answers read for a history; the newest turn is
/// always taken.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Runs read at a time.
const PAGE: i64 = 8;

/// Puts the thread's earlier turns before `input.messages`, unless the client sent a history
/// itself (any assistant message); how many messages were added.
pub async fn fill(store: &dyn Store, input: &mut RunAgentInput) -> Result<usize, StoreError> {
    if has_history(&input.messages) {
        return Ok(0);
    }
    // Each earlier run's messages with its answer, newest run first.
    let mut turns: Vec<Vec<Message>> = Vec::new();
    let mut bytes = 0;
    let mut before = None;
    'pages: loop {
        let page = store.turns(&input.thread_id, before.take(), PAGE).await?;
        let last_page = page.len() < PAGE as usize;
        for turn in page {
            bytes += turn.input.len() + turn.answer.as_ref().map_or(0, String::len);
            if bytes > MAX_BYTES && !turns.is_empty() {
                break 'pages;
            }
            before = Some((turn.created, turn.run_id.clone()));
            let (messages, complete) = messages_of(turn)?;
            turns.push(messages);
            if complete || turns.len() >= MAX_TURNS {
                break 'pages;
            }
        }
        if last_page {
            break;
        }
    }
    let mut history: Vec<Message> = turns.into_iter().rev().flatten().collect();
    let added = history.len();
    history.append(&mut input.messages);
    input.messages = history;
    Ok(added)
}

/// Whether the messages hold a conversation's earlier turns (an assistant's answer).
fn has_history(messages: &[Message]) -> bool {
    messages.iter().any(|m| m.role == "assistant")
}

/// A run's messages followed by its answer, and whether they hold the turns before it too.
fn messages_of(turn: Turn) -> Result<(Vec<Message>, bool), StoreError> {
    let earlier: RunAgentInput = serde_json::from_str(&turn.input)
        .map_err(|e| StoreError::Corrupt(format!("run {}: input: {e}", turn.run_id)))?;
    let mut messages = earlier.messages;
    let complete = has_history(&messages);
    messages.push(Message {
        id: format!("{}-answer", turn.run_id),
        role: "assistant".into(),
        content: MessageContent::Text(turn.answer.unwrap_or_default()),
        rest: Default::default(),
    });
    Ok((messages, complete))
}
