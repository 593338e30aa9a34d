//! Which failures are worth another try, and how long to wait before it.

use std::time::Duration;

use super::LlmError;

/// The longest pause between two tries, however many came before.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// `attempt` counts the tries already made (1 after the first failure). Transient failures are
/// retried; a 500 once only (a crashed runner reloads, a broken request fails again); requests the
/// backend refused as such (400, 404) never.
pub(crate) fn is_retryable(error: &LlmError, attempt: u32) -> bool {
    match error {
        LlmError::Connect { .. } | LlmError::Disconnected { .. } => true,
        LlmError::Timeout { which, .. } => *which == super::call::CONNECT,
        LlmError::Status { status, .. } => match status {
            429 | 502 | 503 | 504 => true,
            500 => attempt <= 1,
            _ => false,
        },
        _ => false,
    }
}

/// The backend refused the request's think setting for this model: Ollama's 400 "does not
/// support thinking", or an OpenAI-compatible server's 400 about `reasoning_effort`.
pub(crate) fn refuses_think(error: &LlmError) -> bool {
    match error {
        LlmError::Status {
            status: 400,
            message,
        } => {
            let message = message.to_ascii_lowercase();
            message.contains("does not support thinking")
                || message.contains("reasoning_effort")
                || message.contains("reasoning effort")
        }
        _ => false,
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped, then scaled by a random
/// factor in [0.5, 1) so calls that failed together do not come back together.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    exp.min(MAX_BACKOFF).mul_f64(0.5 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> LlmError {
        LlmError::Status {
            status,
            message: String::new(),
        }
    }

    #[test]
    fn status_codes() {
        for code in [429, 502, 503, 504] {
            assert!(is_retryable(&status(code), 5), "{code}");
        }
        assert!(is_retryable(&status(500), 1));
        assert!(!is_retryable(&status(500), 2));
        for code in [400, 401, 404, 422] {
            assert!(!is_retryable(&status(code), 1), "{code}");
        }
        assert!(!is_retryable(&LlmError::Truncated, 1));
    }

    #[test]
    fn think_refusals_are_recognised() {
        let refusal = |status, message: &str| LlmError::Status {
            status,
            message: message.into(),
        };
        assert!(refuses_think(&refusal(
            400,
            "\"smollm2\" does not support thinking"
        )));
        assert!(refuses_think(&refusal(
            400,
            "Unsupported parameter: 'reasoning_effort' is not supported with this model."
        )));
        assert!(!refuses_think(&refusal(500, "does not support thinking")));
        assert!(!refuses_think(&refusal(400, "invalid format")));
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        for attempt in 1..40 {
            let d = backoff(base, attempt);
            let full = base
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            assert!(d >= full / 2 && d < full, "attempt {attempt}: {d:?}");
        }
    }
}
