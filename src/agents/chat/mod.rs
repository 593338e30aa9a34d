//! Plain chat rooms (soliplex's `agent.kind: default`, or no kind): one streamed call with the
//! room's system prompt and the thread's history.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::kit::board::Board;
use super::kit::budget::Budget;
use super::kit::history::History;
use super::kit::messages::TextMessage;
use super::kit::model::{read_config, ModelSettings, RoomSettings};
use super::kit::runner::{Ctx, Run};
use super::{Accepted, Agent, AgentDeps, AgentError, EventSink, FactoryError, RunOutput};
use crate::agui::RunAgentInput;

/// The names a room's factory resolves to; the host gives plain rooms the first.
pub const FACTORY_NAMES: &[&str] = &["default", "chat"];

pub const ACTIVITY_TYPE: &str = "chat";

/// A plain room's agent keys (the host reads `system_prompt: ./file` for it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    #[serde(skip)]
    pub model: ModelSettings,
    pub system_prompt: String,
    /// Upper bound on the answer's tokens, thinking included.
    pub max_tokens: u32,
    /// soliplex's keys, accepted: calls go to the server's LLM endpoints (`llm.*`), which
    /// retry by themselves.
    pub retries: Option<u32>,
    pub provider_type: Option<String>,
    pub provider_base_url: Option<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            system_prompt: "You are a helpful assistant.".into(),
            max_tokens: 2048,
            retries: None,
            provider_type: None,
            provider_base_url: None,
        }
    }
}

impl RoomSettings for ChatConfig {
    fn model(&self) -> &ModelSettings {
        &self.model
    }

    fn model_mut(&mut self) -> &mut ModelSettings {
        &mut self.model
    }
}

impl ChatConfig {
    pub fn from_value(
        extra: &Value,
        model_override: Option<&String>,
    ) -> Result<Self, FactoryError> {
        let config: Self = read_config(extra, model_override)?;
        if let Some(kind) = config.provider_type.as_deref() {
            if !matches!(kind, "ollama" | "openai") {
                return Err(FactoryError {
                    field: "provider_type".into(),
                    message: format!("'{kind}' is not ollama or openai"),
                });
            }
        }
        if config.max_tokens == 0 {
            return Err(FactoryError {
                field: "max_tokens".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(config)
    }
}

pub fn create(extra: &Value, deps: &AgentDeps) -> Result<Arc<dyn Agent>, FactoryError> {
    let config = ChatConfig::from_value(extra, deps.model_override.as_ref())?;
    if config.provider_base_url.is_some() {
        tracing::warn!(
            "a room's provider_base_url is not used: its calls go to the server's LLM endpoints"
        );
    }
    Ok(Arc::new(ChatAgent {
        config: Arc::new(config),
        deps: deps.clone(),
    }))
}

struct ChatAgent {
    config: Arc<ChatConfig>,
    deps: AgentDeps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Starting,
    Answering,
    Complete,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
struct Activity {
    status: Status,
    turns_used: usize,
}

impl Agent for ChatAgent {
    fn start(&self, input: RunAgentInput, events: EventSink) -> Result<Accepted, AgentError> {
        let text = input
            .last_user_text()
            .ok_or_else(|| AgentError::BadInput("the run has no user message with text".into()))?;
        let config = self.config.clone();
        let budget = Budget::new(config.model.num_ctx, Some(config.max_tokens));
        let history = History::read(&input.messages, budget.prompt_tokens() / 2);
        let ctx = Ctx::new(self.deps.llm.clone(), events, config.clone(), &history);
        let prompt = (config.system_prompt.clone(), text);
        let request = ctx
            .request_capped(
                config.max_tokens,
                prompt,
                config.model.temperature,
                config.model.seed,
                None,
            )
            .map_err(|e| AgentError::BadInput(e.to_string()))?;
        let mut board = Board::new(
            ACTIVITY_TYPE,
            Activity {
                status: Status::Starting,
                turns_used: history.used.turns_used,
            },
        );
        if let Some(note) = history.note() {
            board.note(note);
        }
        let mut run = Run::new(ctx, board);
        Ok(Accepted {
            run: Box::pin(async move {
                run.send_snapshot().await;
                run.progress.update(|a| a.status = Status::Answering);
                run.send_progress().await;
                let mut message = TextMessage::new(None);
                let answer = run.call(request, Some(&mut message)).await;
                run.ctx.send(message.close()).await;
                let status = if answer.is_ok() {
                    Status::Complete
                } else {
                    Status::Failed
                };
                run.progress.update(|a| a.status = status);
                run.send_progress().await;
                let answer = answer?;
                let mut details = Map::new();
                details.insert("activity".into(), run.progress.content());
                Ok(RunOutput {
                    answer,
                    llm_requests: run.usage.requests(),
                    usage: run.usage.entries(run.ctx.llm.provider()),
                    activity_type: ACTIVITY_TYPE,
                    details,
                })
            }),
            max_calls: 1,
            strategy: "chat",
        })
    }
}
