//! Agents: what runs when a room is asked something. The host hands an agent the run input and an
//! event sink; the agent streams AG-UI events into it and returns the run's result.

pub mod brainstorm;
pub mod chat;
pub mod debate;
mod error;
pub mod kit;
pub mod parallelization;
mod registry;
pub mod shark_tank;

pub use error::{AgentError, ErrorCode};
pub use registry::{Factory, FactoryError, Registry};

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::agui::{Event, RunAgentInput, UsageEntry};
use crate::llm::LlmClient;

/// What a factory gets besides the room's config: the services an agent may use.
#[derive(Clone)]
pub struct AgentDeps {
    /// The shared LLM client: its concurrency limit holds across every run of every room.
    pub llm: Arc<dyn LlmClient>,
    /// Overrides every room's model when set (`ROOMHOST_MODEL`).
    pub model_override: Option<String>,
}

/// Where the host puts a run's events. Pushing never waits for the client: an LLM call's life must
/// not depend on how fast someone reads. The host bounds what it keeps and, when the client is
/// gone or too slow, drops the run's future, which stops the agent's work.
pub trait EventOutlet: Send + Sync {
    fn push(&self, event: Event);
}

/// The agent side of a run's events.
#[derive(Clone)]
pub struct EventSink {
    out: Arc<dyn EventOutlet>,
}

impl EventSink {
    pub fn new(out: Arc<dyn EventOutlet>) -> Self {
        Self { out }
    }

    /// A sink for runs whose events nobody reads (an evaluation wants the result alone).
    pub fn discard() -> Self {
        struct Discard;
        impl EventOutlet for Discard {
            fn push(&self, _: Event) {}
        }
        Self::new(Arc::new(Discard))
    }

    pub async fn send(&self, event: Event) {
        self.out.push(event);
    }
}

/// What a successful run gives the host. The host keeps `answer` as the run's turn in the thread,
/// counts `llm_requests`, and sends `RUN_FINISHED.result` as `details` with the answer (`text`)
/// and the count (`llm_requests`) added; it never reads `details`.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// The answer's text.
    pub answer: String,
    /// The LLM requests the run had answered.
    pub llm_requests: u64,
    /// Token usage per model.
    pub usage: Vec<UsageEntry>,
    /// The `activityType` of the run's activity message.
    pub activity_type: &'static str,
    /// The agent's own report (its activity, its strategy, ...): opaque to the host.
    pub details: Map<String, Value>,
}

impl RunOutput {
    /// `RUN_FINISHED.result`: the details with the answer and the request count.
    pub fn result(&self) -> Value {
        let mut result = self.details.clone();
        result.insert("text".into(), self.answer.clone().into());
        result.insert("llm_requests".into(), self.llm_requests.into());
        Value::Object(result)
    }
}

pub type RunFuture = BoxFuture<'static, Result<RunOutput, AgentError>>;

/// A run the agent accepted: its future, and the most LLM calls it has open at once (in flight or
/// waiting for a slot). The host reserves that many places in the LLM client's queue before the
/// stream starts, or refuses the run; calls beyond it wait inside the run.
pub struct Accepted {
    pub run: RunFuture,
    pub max_calls: usize,
    /// What the run does, for metrics labels: one of a fixed set (a strategy's name).
    pub strategy: &'static str,
}

pub trait Agent: Send + Sync {
    /// Checks the input, decides what the run will cost, and returns the run. Errors here are
    /// answered as HTTP 400 before any stream opens. The future must not send
    /// `RUN_STARTED`/`RUN_FINISHED`/`RUN_ERROR`: the host does, and it sends `RUN_STARTED` before
    /// first polling the future.
    fn start(&self, input: RunAgentInput, events: EventSink) -> Result<Accepted, AgentError>;

    /// The ways this agent can run a request, for a client to offer (`GET /rooms`); none when it
    /// has only one.
    fn strategies(&self) -> Vec<StrategyInfo> {
        Vec::new()
    }
}

/// One of an agent's strategies as a client shows it: `name` is what `forwardedProps.strategy`
/// takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StrategyInfo {
    pub name: &'static str,
    pub label: &'static str,
    pub description: &'static str,
}
