//! What differs between the two wire formats: the URLs, the request body and the stream decoder.
//! Everything else (HTTP, limits, timeouts, retries) is shared and lives in `call` and `pool`.

use std::collections::VecDeque;

use serde_json::Value;

use super::{ChatChunk, ChatRequest, LlmError};

pub(crate) trait Wire: Send + Sync {
    /// The provider name reported in usage.
    fn provider(&self) -> &'static str;
    fn chat_url(&self, base: &str) -> String;
    /// A cheap GET that answers when the backend is up.
    fn health_url(&self, base: &str) -> String;
    /// The serialized request body.
    fn body(&self, request: &ChatRequest) -> Result<Vec<u8>, LlmError>;
    /// A fresh decoder for one response body.
    fn decoder(&self) -> Box<dyn Decoder>;
}

/// Turns the lines of one streamed response into chunks. It emits at most one
/// [`ChatChunk::Done`]; the caller stops reading after it.
pub(crate) trait Decoder: Send {
    fn line(&mut self, line: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<(), LlmError>;
    /// At end of stream, after the last line.
    fn end(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), LlmError> {
        Ok(())
    }
}

/// Parses one JSON line, or says which line could not be read.
pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, LlmError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let shown: String = String::from_utf8_lossy(bytes).chars().take(120).collect();
        LlmError::Protocol(format!("cannot read the line '{shown}': {e}"))
    })
}

/// The message of an in-band error, whether `"error": "text"` (Ollama) or
/// `"error": {"message": ...}` (OpenAI).
pub(crate) fn error_message(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_owned),
    }
}
