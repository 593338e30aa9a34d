//! Why a run could not start or did not finish, and the one list of `RUN_ERROR` codes clients see.

use crate::agui::Event;
use crate::llm::LlmError;

/// Declares the codes once: each variant with the string clients see in `RUN_ERROR.code` and
/// `SUBAGENT_ERROR.code`.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    /// The request cannot be run as given.
    BadInput = "bad_input",
    /// The server stopped the run while shutting down.
    Shutdown = "shutdown",
    /// Cancelled on request, or because nobody followed it after its client left.
    Cancelled = "cancelled",
    /// The server stopped (crashed) while the run was going; its events up to then are kept.
    Interrupted = "interrupted",
    /// A replay could not read the run's stored events.
    Store = "store",
    /// A server bug (a panic, an event that would not encode).
    Internal = "internal",
    /// Every task of a step failed, for different reasons.
    AllTasksFailed = "all_tasks_failed",
    /// Too few voters gave a usable answer.
    QuorumNotMet = "quorum_not_met",
    /// The planner's sections could not be used.
    BadPlan = "bad_plan",
    /// A call's material does not fit the model's context.
    PromptTooLong = "prompt_too_long",
    /// The model answered, but not in the shape asked for.
    InvalidAnswer = "invalid_answer",
    EmptyAnswer = "empty_answer",
    LlmUnreachable = "llm_unreachable",
    LlmDisconnected = "llm_disconnected",
    ModelNotFound = "model_not_found",
    LlmHttpError = "llm_http_error",
    BackendSaturated = "backend_saturated",
    LlmTimeout = "llm_timeout",
    LlmStreamError = "llm_stream_error",
    LlmTruncated = "llm_truncated",
    LlmProtocolError = "llm_protocol_error",
    LlmLength = "llm_length",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&LlmError> for ErrorCode {
    fn from(e: &LlmError) -> Self {
        match e {
            LlmError::Connect { .. } => ErrorCode::LlmUnreachable,
            LlmError::Disconnected { .. } => ErrorCode::LlmDisconnected,
            LlmError::ModelNotFound { .. } => ErrorCode::ModelNotFound,
            LlmError::Status { .. } => ErrorCode::LlmHttpError,
            LlmError::Saturated { .. } => ErrorCode::BackendSaturated,
            LlmError::Timeout { .. } => ErrorCode::LlmTimeout,
            LlmError::MidStream(_) => ErrorCode::LlmStreamError,
            LlmError::Truncated => ErrorCode::LlmTruncated,
            LlmError::Protocol(_) => ErrorCode::LlmProtocolError,
            LlmError::EmptyLength => ErrorCode::LlmLength,
            LlmError::Abandoned => ErrorCode::Cancelled,
        }
    }
}

/// Why a run could not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The request cannot be run as given; answered with HTTP 400 before the stream.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The run failed after it started; `code` goes into `RUN_ERROR.code`.
    #[error("{message}")]
    Failed { code: ErrorCode, message: String },
}

impl AgentError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AgentError::BadInput(_) => ErrorCode::BadInput,
            AgentError::Llm(e) => e.into(),
            AgentError::Failed { code, .. } => *code,
        }
    }
}

/// The run's last event when it fails.
impl From<AgentError> for Event {
    fn from(e: AgentError) -> Self {
        Event::RunError {
            message: e.to_string(),
            code: Some(e.code().as_str().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn llm_errors_keep_their_own_codes() {
        let errors = [
            LlmError::Connect {
                endpoint: "backend 1".into(),
                detail: "refused".into(),
            },
            LlmError::Disconnected {
                endpoint: "backend 1".into(),
                detail: "reset".into(),
            },
            LlmError::ModelNotFound {
                model: "m".into(),
                endpoint: "backend 1".into(),
            },
            LlmError::Status {
                status: 500,
                message: "boom".into(),
            },
            LlmError::Saturated {
                waiting: 1,
                limit: 1,
            },
            LlmError::Timeout {
                which: "read",
                after: Duration::from_secs(1),
                hint: "",
            },
            LlmError::MidStream("x".into()),
            LlmError::Truncated,
            LlmError::Protocol("x".into()),
            LlmError::EmptyLength,
        ];
        for e in &errors {
            assert_eq!(ErrorCode::from(e).as_str(), e.code(), "{e:?}");
        }
    }

    #[test]
    fn run_error_event_carries_the_code() {
        let event = Event::from(AgentError::Failed {
            code: ErrorCode::QuorumNotMet,
            message: "too few".into(),
        });
        let json = serde_json::to_value(&event).expect("encodes");
        assert_eq!(json["code"], "quorum_not_met");
        assert_eq!(json["message"], "too few");
    }
}
