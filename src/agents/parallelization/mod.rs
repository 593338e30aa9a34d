//! The parallelization room's agent: sectioning, voting and map-reduce fan-outs, and follow-ups.
//!
//! `start` reads the message and the thread's earlier turns (`history`) and picks the strategy
//! (`detect`); the run's future streams the activity, one subagent per parallel task (`runner`)
//! and the answer, strategy by strategy (`strategy` lists them: `sectioning`, `voting`,
//! `map_reduce`, `follow_up`). Every call carries the earlier turns.

pub mod config;
pub mod detect;
mod follow_up;
mod map_reduce;
mod progress;
pub mod prompts;
mod sectioning;
mod strategy;
pub mod vote;
mod voting;

pub use config::ParallelizationConfig;
pub use follow_up::FollowUp;
pub use map_reduce::Summarize;
pub use sectioning::Sections;
pub use strategy::{Job, Strategy};
pub use voting::Vote;

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{
    Accepted, Agent, AgentDeps, AgentError, EventSink, FactoryError, RunOutput, StrategyInfo,
};
use crate::agents::kit::history::History;
use crate::agents::kit::runner as kit;
use crate::agui::RunAgentInput;
use detect::Choice;
use progress::{Activity, RunStatus};

/// The kit's run, context and task with this room's config and activity.
pub(crate) type Run = kit::Run<ParallelizationConfig, Activity>;
pub(crate) type Ctx = kit::Ctx<ParallelizationConfig>;
pub(crate) type TaskSpec<'a> = kit::TaskSpec<'a, ParallelizationConfig>;

/// The names a room's `factory_name` may use for this agent.
pub const FACTORY_NAMES: &[&str] = &[
    "crazy_glue.factories.parallelization_factory.create_parallelization_agent",
    "parallelization",
];

pub fn create(extra: &Value, deps: &AgentDeps) -> Result<Arc<dyn Agent>, FactoryError> {
    let config = ParallelizationConfig::from_value(extra, deps.model_override.as_ref())?;
    Ok(Arc::new(ParallelizationAgent {
        config: Arc::new(config),
        deps: deps.clone(),
    }))
}

pub struct ParallelizationAgent {
    config: Arc<ParallelizationConfig>,
    deps: AgentDeps,
}

/// What a strategy produced: the answer's text and its part of `RUN_FINISHED.result`.
pub(crate) struct Outcome {
    text: String,
    details: Value,
}

impl Agent for ParallelizationAgent {
    fn strategies(&self) -> Vec<StrategyInfo> {
        Strategy::catalogue()
    }

    fn start(&self, input: RunAgentInput, events: EventSink) -> Result<Accepted, AgentError> {
        let text = input
            .last_user_text()
            .ok_or_else(|| AgentError::BadInput("the run has no user message with text".into()))?;
        let history = History::read(&input.messages, self.config.history_budget());
        let choice = detect::choose(
            &text,
            &input.forwarded_props,
            self.config.default_strategy,
            history.has_answer,
        )
        .map_err(AgentError::BadInput)?;
        // Every budget of the run leaves room for the history its calls carry.
        let config = Arc::new(ParallelizationConfig {
            history_tokens: history.tokens(),
            ..(*self.config).clone()
        });
        let calls = choice.job.admit(&config).map_err(AgentError::BadInput)?;
        let mut progress =
            progress::start(choice.strategy, choice.source, choice.job.sections_source());
        if !history.turns.is_empty() {
            progress.update(|a| a.history = Some(history.used));
        }
        if let Some(note) = history.note() {
            progress.note(note);
        }
        let ctx = Ctx::new(self.deps.llm.clone(), events, config, &history);
        let run = Run::new(ctx, progress);
        let strategy = choice.strategy.as_str();
        Ok(Accepted {
            run: Box::pin(execute(run, choice)),
            // Fan-outs keep at most `max_parallel_tasks` calls open; the other calls come one at
            // a time (plan, judge, reduce).
            max_calls: calls.clamp(1, self.config.model.max_parallel_tasks as usize),
            strategy,
        })
    }
}

async fn execute(mut run: Run, choice: Choice) -> Result<RunOutput, AgentError> {
    tracing::Span::current().record("strategy", choice.strategy.as_str());
    tracing::info!(source = ?choice.source, "strategy chosen");
    run.send_snapshot().await;
    let outcome = choice.job.run(&mut run).await;
    let status = if outcome.is_ok() {
        RunStatus::Complete
    } else {
        RunStatus::Failed
    };
    run.progress.set_status(status);
    run.send_progress().await;
    let outcome = outcome?;
    let mut details = Map::new();
    details.insert("strategy".into(), json!(choice.strategy));
    details.insert("strategy_source".into(), json!(choice.source));
    if let Value::Object(more) = outcome.details {
        details.extend(more);
    }
    details.insert("activity".into(), run.progress.content());
    Ok(RunOutput {
        answer: outcome.text,
        llm_requests: run.usage.requests(),
        usage: run.usage.entries(run.ctx.llm.provider()),
        activity_type: run.progress.activity_type(),
        details,
    })
}
