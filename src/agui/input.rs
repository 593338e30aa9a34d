//! `RunAgentInput`, the body an AG-UI client posts to start a run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Read camelCase (AG-UI) or snake_case (soliplex's terminal client).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAgentInput {
    #[serde(default, alias = "thread_id")]
    pub thread_id: String,
    #[serde(default, alias = "run_id")]
    pub run_id: String,
    #[serde(
        default,
        alias = "parent_run_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_run_id: Option<String>,
    #[serde(
        default,
        alias = "protocol_version",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<String>,
    #[serde(default)]
    pub state: Value,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub context: Vec<Value>,
    #[serde(default, alias = "forwarded_props")]
    pub forwarded_props: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub id: String,
    pub role: String,
    #[serde(default)]
    pub content: MessageContent,
    /// Every other field (`activityType`, `toolCalls`, `toolCallId`, `name`, ...), kept as sent:
    /// the stored `run_input` goes back to clients, which validate it.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

/// A message's content: a plain string, or (for user messages) an array of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
    /// Content of roles this server does not read (tool results, activity snapshots).
    Other(Value),
}

impl Default for MessageContent {
    fn default() -> Self {
        MessageContent::Text(String::new())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The rest of a part (an image's `source`, a file's `mimeType`), kept as sent.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

impl MessageContent {
    /// The text a user typed: parts of type `text` joined, other parts (images, files) skipped.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(t) => t.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
            MessageContent::Other(_) => String::new(),
        }
    }
}

impl RunAgentInput {
    /// The text of the last user message, if it has any non-blank text.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.text())
            .filter(|t| !t.trim().is_empty())
    }

    /// A string option from `forwardedProps`, e.g. `strategy`.
    pub fn forwarded_str(&self, key: &str) -> Option<&str> {
        self.forwarded_props.get(key).and_then(Value::as_str)
    }
}
