//! The thread's earlier turns as every call sees them: the user and assistant messages before the
//! message being answered, the newest kept whole first, within a share of the model's context.
//! Older turns are shortened, then dropped, and the activity says how many.

use serde::Serialize;

use super::budget::{estimate_tokens, truncate, MESSAGE_OVERHEAD, MIN_CHUNK_TOKENS};
use crate::agui::Message;
use crate::llm::{ChatMessage, ChatRole};

/// What the activity reports of the history (`history` in its content).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryUse {
    pub turns_used: usize,
    pub turns_dropped: usize,
    /// Kept, but cut to fit (counted in `turns_used`).
    pub turns_shortened: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Oldest first, as chat messages between a call's system and user messages.
    pub turns: Vec<ChatMessage>,
    pub used: HistoryUse,
    /// The turns answer something: a follow-up can refer to an earlier answer.
    pub has_answer: bool,
}

impl History {
    /// The turns before the last user message that fit in `max_tokens`. Only `user` and
    /// `assistant` messages with text count: system, tool, reasoning and `activity` messages
    /// (which a client or the store may send back) are not part of the conversation.
    pub fn read(messages: &[Message], max_tokens: usize) -> Self {
        let end = messages.iter().rposition(|m| m.role == "user").unwrap_or(0);
        let earlier: Vec<ChatMessage> = messages[..end]
            .iter()
            .filter_map(|m| {
                let text = m.content.text();
                let text = text.trim();
                match m.role.as_str() {
                    _ if text.is_empty() => None,
                    "user" => Some(ChatMessage::user(text)),
                    "assistant" => Some(ChatMessage::assistant(text)),
                    _ => None,
                }
            })
            .collect();
        Self::fit(earlier, max_tokens)
    }

    /// Newest first while they fit; the first that does not is shortened when a useful part of it
    /// fits, and it and every older turn are dropped otherwise.
    fn fit(turns: Vec<ChatMessage>, max_tokens: usize) -> Self {
        let total = turns.len();
        let mut left = max_tokens;
        let mut kept = Vec::new();
        let mut shortened = 0;
        for mut turn in turns.into_iter().rev() {
            let size = estimate_tokens(&turn.content) + MESSAGE_OVERHEAD;
            if size <= left {
                left -= size;
                kept.push(turn);
                continue;
            }
            let room = left.saturating_sub(MESSAGE_OVERHEAD);
            if room >= MIN_CHUNK_TOKENS {
                turn.content = format!("{} […]", truncate(&turn.content, room - 2));
                shortened = 1;
                kept.push(turn);
            }
            break;
        }
        kept.reverse();
        Self {
            has_answer: kept.iter().any(|t| t.role == ChatRole::Assistant),
            used: HistoryUse {
                turns_used: kept.len(),
                turns_dropped: total - kept.len(),
                turns_shortened: shortened,
            },
            turns: kept,
        }
    }

    /// Tokens the turns take in a prompt.
    pub fn tokens(&self) -> usize {
        self.turns
            .iter()
            .map(|t| estimate_tokens(&t.content) + MESSAGE_OVERHEAD)
            .sum()
    }

    /// What the user should know when the conversation did not fit whole.
    pub fn note(&self) -> Option<String> {
        let HistoryUse {
            turns_dropped,
            turns_shortened,
            ..
        } = self.used;
        (turns_dropped + turns_shortened > 0).then(|| {
            format!(
                "The conversation is longer than this room's model can read with the request: \
                 {turns_dropped} of its oldest turns were left out and {turns_shortened} shortened."
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agui::MessageContent;

    fn message(role: &str, text: &str) -> Message {
        Message {
            id: String::new(),
            role: role.into(),
            content: MessageContent::Text(text.into()),
            rest: Default::default(),
        }
    }

    #[test]
    fn only_earlier_user_and_assistant_turns_count() {
        let messages = [
            message("system", "be brief"),
            message("user", "Wind and solar: Wind, Sun"),
            message("activity", ""),
            message("assistant", "## Wind\nBlows."),
            message("user", "Make the Wind section longer."),
        ];
        let history = History::read(&messages, 10_000);
        assert_eq!(
            history.turns,
            [
                ChatMessage::user("Wind and solar: Wind, Sun"),
                ChatMessage::assistant("## Wind\nBlows.")
            ]
        );
        assert!(history.has_answer);
        assert_eq!(history.note(), None);
    }

    #[test]
    fn the_oldest_turns_are_shortened_then_dropped() {
        let long = "word ".repeat(400);
        let messages = [
            message("user", &long),
            message("assistant", &long),
            message("user", &long),
            message("assistant", "short answer"),
            message("user", "and then?"),
        ];
        let history = History::read(&messages, 1000);
        assert_eq!(
            history.used,
            HistoryUse {
                turns_used: 3,
                turns_dropped: 1,
                turns_shortened: 1
            }
        );
        assert!(history.tokens() <= 1000);
        assert_eq!(history.turns[2], ChatMessage::assistant("short answer"));
        assert!(history.note().is_some());
    }
}
