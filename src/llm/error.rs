use std::time::Duration;

/// Why an LLM call failed. Every message says what went wrong and, where it can, what to do.
/// Messages reach anonymous clients, so they name an endpoint by its label (`backend 1`), never by
/// its URL (which may carry credentials); the URL is logged where the call fails.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("cannot connect to the LLM {endpoint}: {detail}; is the server running, and is its URL right? (the server log names it)")]
    Connect { endpoint: String, detail: String },
    #[error("the LLM {endpoint} closed the connection before the response was complete: {detail}")]
    Disconnected { endpoint: String, detail: String },
    #[error("model '{model}' not found on the LLM {endpoint}; pull it first (`ollama pull {model}`) or set the room's model_name")]
    ModelNotFound { model: String, endpoint: String },
    #[error("the LLM backend answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the LLM backend is saturated: {waiting} calls already wait for a slot (queue limit {limit}); try again shortly or raise the LLM queue limit")]
    Saturated { waiting: usize, limit: usize },
    #[error("{which} timeout after {after:?}: {hint}")]
    Timeout {
        which: &'static str,
        after: Duration,
        hint: &'static str,
    },
    #[error("the LLM backend sent an error mid-stream: {0}")]
    MidStream(String),
    #[error("the LLM stream ended before the final chunk (truncated response)")]
    Truncated,
    #[error("the LLM backend sent an unreadable response: {0}")]
    Protocol(String),
    /// The call's job was stopped (its run cancelled) before the call reached the backend.
    #[error("the call was abandoned before it reached the LLM: its run was cancelled")]
    Abandoned,
    #[error("the model hit its token limit before answering (done_reason: length); raise max_tokens/num_predict or lower the think level")]
    EmptyLength,
}

impl LlmError {
    /// A short machine-readable code, used in `RUN_ERROR.code` and per-task errors.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Connect { .. } => "llm_unreachable",
            LlmError::Disconnected { .. } => "llm_disconnected",
            LlmError::ModelNotFound { .. } => "model_not_found",
            LlmError::Status { .. } => "llm_http_error",
            LlmError::Saturated { .. } => "backend_saturated",
            LlmError::Timeout { .. } => "llm_timeout",
            LlmError::MidStream(_) => "llm_stream_error",
            LlmError::Truncated => "llm_truncated",
            LlmError::Protocol(_) => "llm_protocol_error",
            LlmError::EmptyLength => "llm_length",
            LlmError::Abandoned => "cancelled",
        }
    }
}
