//! LLM backends: one streaming chat trait, Ollama-native and OpenAI-compatible implementations,
//! and the per-endpoint concurrency limit, timeouts and retries every call goes through.
//!
//! Nothing here knows about rooms or AG-UI.
//!
//! Layout: `ollama` and `openai` hold what differs between the wire formats (URLs, request body,
//! stream decoder, behind `wire::Wire`); `lines` splits bytes into lines; `call` makes one HTTP
//! attempt with its timeouts; `limiter` holds the per-endpoint slots and the bounded FIFO queue;
//! `retry` says what to retry and how long to wait; `pool` puts them together as the client.
//! Admission (`LlmClient::reserve`): a job of many calls holds its queue places up front, at most
//! max(slots, `max_queue` / 4) of them, or is refused with a `Retry-After` estimate.
//!
//! Settings come in as one typed `LlmSettings`, already checked; where each comes from (file key,
//! environment variable, flag) is the server's business (`config`), so errors and hints here speak
//! of a setting by what it does ("the first-byte timeout").

mod call;
mod error;
mod limiter;
mod lines;
mod meter;
mod ollama;
mod openai;
mod pool;
mod retry;
mod settings;
mod types;
mod wire;

pub use error::LlmError;
pub use limiter::{Refused, Reservation};
pub(crate) use meter::signed;
pub use meter::CALL_SPAN_TARGET;
pub use pool::{build_client, BuildError};
pub use settings::{normalize_base_url, LlmApi, LlmSettings, OpenAiJsonMode};
pub use types::{
    ChatChunk, ChatMessage, ChatRequest, ChatRole, ChatStream, Completion, GenerationOptions,
    LlmLoad, Think, ThinkLevel, Usage,
};

use async_trait::async_trait;

/// A chat backend. Implementations bound their own concurrency: callers may fire any number of
/// calls at once and rely on the client to queue them (or fail fast when the queue is full).
#[async_trait]
pub trait LlmClient: Send + Sync {
    /// Starts one streaming chat call. The returned stream yields content and thinking deltas and
    /// ends with exactly one [`ChatChunk::Done`]; dropping it closes the backend connection and
    /// frees the concurrency slot at once.
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError>;

    /// Whether the backend answers at all (used by `/readyz`); the error says why not.
    async fn health(&self) -> Result<(), LlmError>;

    /// The provider name reported in usage (`ollama`, `openai`).
    fn provider(&self) -> &str;

    /// Calls in flight and waiting, summed over endpoints. Clients without a limiter report zeros.
    fn load(&self) -> LlmLoad {
        LlmLoad::default()
    }

    /// Holds places in the queue for a job that makes at most `calls` calls at once (a run),
    /// before it starts, or refuses it with when to retry. Run the job under
    /// [`Reservation::scope`]: its calls then never fail for a full queue. Clients without a
    /// limit admit everything.
    fn reserve(&self, _calls: usize) -> Result<Reservation, Refused> {
        Ok(Reservation::default())
    }
}
