use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::AuthError;
use crate::llm::Refused;

/// An error answered before any stream starts: an HTTP status and `{"error": {code, message}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("room '{0}' not found; GET /rooms lists the rooms")]
    RoomNotFound(String),
    #[error("thread '{0}' not found in this room")]
    ThreadNotFound(String),
    #[error("run '{0}' not found in this room")]
    RunNotFound(String),
    #[error("this server keeps no threads or runs (database_url is none)")]
    NoStore,
    #[error("run '{0}' is {1}, not going on in this process")]
    NotRunningHere(String, &'static str),
    #[error("run '{0}' has not started; POST it without Last-Event-ID to start it")]
    NotStarted(String),
    /// 503 with `Retry-After`; what the database said is logged, never answered.
    #[error("the database is not available; retry in a moment")]
    Store(#[from] crate::store::StoreError),
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body is not an AG-UI RunAgentInput: {0}")]
    InvalidInput(String),
    #[error(
        "no user message with text; send messages with role \"user\" or {{\"prompt\": \"...\"}}"
    )]
    NoUserMessage,
    #[error("run '{0}' has already been run; start a new run")]
    RunIdReused(String),
    #[error("{0}")]
    InvalidId(String),
    #[error("thread '{0}' has reached its limit of {1} runs; start a new thread")]
    TooManyRuns(String, i64),
    #[error("parent run '{0}' is not a run of this thread")]
    NoSuchParent(String),
    /// The caller keeps `max_threads_per_user` threads: 429.
    #[error("you keep as many threads as one user may; delete one to start another")]
    ThreadQuota,
    /// The caller's stored run inputs would pass `max_stored_bytes_per_user`: 413.
    #[error("this run would take what you keep stored past what one user may; delete threads to make room")]
    StorageQuota,
    /// The caller's runs have `max_feedback_per_user` feedback rows: 429.
    #[error("you have given as much feedback as one user may keep")]
    FeedbackQuota,
    /// `POST …/cancel` of a run that has ended (it may still be kept here for late followers).
    #[error("run '{0}' has already ended")]
    AlreadyEnded(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("request bodies are not decompressed; send the JSON without Content-Encoding")]
    UnsupportedEncoding,
    #[error("the server is shutting down; retry on another instance or in a moment")]
    ShuttingDown,
    /// The run's LLM calls cannot all be admitted to the queue: 429, or 503 when no backend is
    /// reachable, with `Retry-After`.
    #[error("{0}")]
    Overloaded(#[from] Refused),
    /// 401 with `WWW-Authenticate` (503 when the issuer's keys cannot be loaded).
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    /// The caller has `max_runs_per_user` runs in flight: 429 with `Retry-After`.
    #[error("you have {0} runs in flight, the most one user may have; retry in {USER_RETRY_AFTER_SECS} s, once one has finished")]
    UserBusy(usize),
}

/// `Retry-After` for a user at their limit of runs: about the time a short run takes.
const USER_RETRY_AFTER_SECS: u64 = 5;
/// `Retry-After` while the database is away: `/readyz` notices its return within a second.
const STORE_RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::RoomNotFound(_)
            | ApiError::ThreadNotFound(_)
            | ApiError::RunNotFound(_)
            | ApiError::NoStore
            | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::NotRunningHere(..) | ApiError::NotStarted(_) => StatusCode::CONFLICT,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InvalidJson(_)
            | ApiError::InvalidInput(_)
            | ApiError::NoUserMessage
            | ApiError::RunIdReused(_)
            | ApiError::InvalidId(_)
            | ApiError::NoSuchParent(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooManyRuns(..) | ApiError::AlreadyEnded(_) => StatusCode::CONFLICT,
            ApiError::ThreadQuota | ApiError::FeedbackQuota => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooLarge(_) | ApiError::StorageQuota => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Overloaded(Refused::Saturated { .. }) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded(Refused::Unreachable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(AuthError::KeysUnavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::UserBusy(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::RoomNotFound(_) => "room_not_found",
            ApiError::ThreadNotFound(_) => "thread_not_found",
            ApiError::RunNotFound(_) => "run_not_found",
            ApiError::NoStore => "no_store",
            ApiError::NotRunningHere(..) => "run_not_running",
            ApiError::NotStarted(_) => "run_not_started",
            ApiError::Store(_) => "store_unavailable",
            ApiError::NoRoute(_) => "not_found",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidInput(_) => "invalid_input",
            ApiError::NoUserMessage => "no_user_message",
            ApiError::RunIdReused(_) => "run_id_reused",
            ApiError::InvalidId(_) => "invalid_id",
            ApiError::TooManyRuns(..) => "too_many_runs",
            ApiError::NoSuchParent(_) => "parent_run_not_found",
            ApiError::ThreadQuota => "thread_quota",
            ApiError::StorageQuota => "storage_quota",
            ApiError::FeedbackQuota => "feedback_quota",
            ApiError::AlreadyEnded(_) => "run_ended",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::UnsupportedEncoding => "unsupported_encoding",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Overloaded(Refused::Saturated { .. }) => "backend_saturated",
            ApiError::Overloaded(Refused::Unreachable { .. }) => "backend_unreachable",
            ApiError::Unauthorized(e) => e.code(),
            ApiError::UserBusy(_) => "too_many_user_runs",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The details stay in the log: database errors, key URLs and file paths are not the
        // caller's to see.
        match &self {
            ApiError::Store(e) => tracing::warn!(error = %e, "store: request answered 503"),
            ApiError::Unauthorized(AuthError::KeysUnavailable(detail)) => {
                tracing::warn!(%detail, "auth: signing keys unavailable; request answered 503")
            }
            _ => {}
        }
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Overloaded(refused) => {
                let secs = refused.retry_after().as_secs().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::UserBusy(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(USER_RETRY_AFTER_SECS),
                );
            }
            ApiError::Store(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(STORE_RETRY_AFTER_SECS),
                );
            }
            ApiError::Unauthorized(e) => {
                if let Ok(challenge) = HeaderValue::from_str(&e.challenge()) {
                    headers.insert(header::WWW_AUTHENTICATE, challenge);
                }
            }
            _ => {}
        }
        response
    }
}
