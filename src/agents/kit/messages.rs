//! AG-UI text and reasoning messages opened on first use and closed once, and the coalescing of
//! token deltas so that a fast model does not cost one SSE frame per token.

use std::time::Duration;

use tokio::time::Instant;

use crate::agui::{Event, TextRole};

/// Buffered text goes out once it is this long...
pub const FLUSH_BYTES: usize = 64;
/// ...or this old.
pub const FLUSH_AFTER: Duration = Duration::from_millis(50);

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An assistant text message, of the run (`subagent_run_id: None`) or of one subagent.
#[derive(Debug)]
pub struct TextMessage {
    id: String,
    subagent_run_id: Option<String>,
    open: bool,
    /// Everything sent so far.
    text: String,
}

impl TextMessage {
    pub fn new(subagent_run_id: Option<String>) -> Self {
        Self {
            id: new_id(),
            subagent_run_id,
            open: false,
            text: String::new(),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The events that append `delta`, opening the message first if needed.
    pub fn push(&mut self, delta: &str) -> Vec<Event> {
        if delta.is_empty() {
            return Vec::new();
        }
        let mut events = Vec::with_capacity(2);
        if !self.open {
            self.open = true;
            events.push(Event::TextMessageStart {
                message_id: self.id.clone(),
                role: TextRole::Assistant,
                subagent_run_id: self.subagent_run_id.clone(),
            });
        }
        self.text.push_str(delta);
        events.push(Event::TextMessageContent {
            message_id: self.id.clone(),
            delta: delta.to_owned(),
            subagent_run_id: self.subagent_run_id.clone(),
        });
        events
    }

    pub fn close(&mut self) -> Vec<Event> {
        if !std::mem::take(&mut self.open) {
            return Vec::new();
        }
        vec![Event::TextMessageEnd {
            message_id: self.id.clone(),
            subagent_run_id: self.subagent_run_id.clone(),
        }]
    }
}

/// A model's thinking, shown as a reasoning message; a later burst of thinking after the answer
/// started gets a fresh message.
#[derive(Debug)]
pub struct ReasoningMessage {
    id: String,
    subagent_run_id: Option<String>,
    open: bool,
}

impl ReasoningMessage {
    pub fn new(subagent_run_id: Option<String>) -> Self {
        Self {
            id: new_id(),
            subagent_run_id,
            open: false,
        }
    }

    pub fn push(&mut self, delta: &str) -> Vec<Event> {
        if delta.is_empty() {
            return Vec::new();
        }
        let mut events = Vec::with_capacity(3);
        let sub = || self.subagent_run_id.clone();
        if !self.open {
            events.push(Event::ReasoningStart {
                message_id: self.id.clone(),
                subagent_run_id: sub(),
            });
            events.push(Event::ReasoningMessageStart {
                message_id: self.id.clone(),
                role: TextRole::Reasoning,
                subagent_run_id: sub(),
            });
        }
        events.push(Event::ReasoningMessageContent {
            message_id: self.id.clone(),
            delta: delta.to_owned(),
            subagent_run_id: sub(),
        });
        self.open = true;
        events
    }

    pub fn close(&mut self) -> Vec<Event> {
        if !std::mem::take(&mut self.open) {
            return Vec::new();
        }
        let id = std::mem::replace(&mut self.id, new_id());
        vec![
            Event::ReasoningMessageEnd {
                message_id: id.clone(),
                subagent_run_id: self.subagent_run_id.clone(),
            },
            Event::ReasoningEnd {
                message_id: id,
                subagent_run_id: self.subagent_run_id.clone(),
            },
        ]
    }
}

/// Collects deltas until [`FLUSH_BYTES`] are buffered or the oldest is [`FLUSH_AFTER`] old. The
/// very first delta goes out at once: the user should see text after one time-to-first-token.
#[derive(Debug, Default)]
pub struct Coalescer {
    buf: String,
    since: Option<Instant>,
    flushed_first: bool,
}

impl Coalescer {
    /// Adds `delta`; returns the buffer when it is due.
    pub fn push(&mut self, delta: &str) -> Option<String> {
        if delta.is_empty() {
            return None;
        }
        if !self.flushed_first {
            self.flushed_first = true;
            return Some(delta.to_owned());
        }
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        self.buf.push_str(delta);
        (self.buf.len() >= FLUSH_BYTES || now >= since + FLUSH_AFTER).then(|| self.take())?
    }

    /// When the buffered text must go out even if nothing else arrives.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|s| s + FLUSH_AFTER)
    }

    pub fn take(&mut self) -> Option<String> {
        self.since = None;
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescer_flushes_on_size_and_age() {
        let mut c = Coalescer::default();
        assert_eq!(c.deadline(), None);
        assert_eq!(c.push("").as_deref(), None);
        assert_eq!(
            c.push("first").as_deref(),
            Some("first"),
            "the first delta is not held back"
        );
        assert_eq!(c.deadline(), None);
        assert_eq!(c.push("ab"), None);
        assert_eq!(c.push(""), None);
        let deadline = c.deadline().expect("pending text has a deadline");
        assert_eq!(c.push(&"x".repeat(62)).map(|s| s.len()), Some(64));
        assert_eq!(c.deadline(), None);
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(c.push("late"), None);
        assert!(c.deadline() > Some(deadline));
        std::thread::sleep(FLUSH_AFTER);
        assert_eq!(c.push("r").as_deref(), Some("later"));
        assert_eq!(c.take(), None);
    }

    #[test]
    fn messages_open_once_and_close_once() {
        let mut m = TextMessage::new(Some("sub".into()));
        assert!(m.close().is_empty());
        assert!(m.push("").is_empty());
        assert_eq!(m.push("a").len(), 2);
        assert_eq!(m.push("b").len(), 1);
        assert_eq!(m.text(), "ab");
        assert_eq!(m.close().len(), 1);
        assert!(m.close().is_empty());

        let mut r = ReasoningMessage::new(None);
        assert_eq!(r.push("hm").len(), 3);
        assert_eq!(r.push("m").len(), 1);
        let closed = r.close();
        assert_eq!(closed.len(), 2);
        let reopened = r.push("again");
        let id = |e: &Event| match e {
            Event::ReasoningStart { message_id, .. } | Event::ReasoningEnd { message_id, .. } => {
                message_id.clone()
            }
            _ => String::new(),
        };
        assert_ne!(id(&closed[1]), id(&reopened[0]));
    }
}
