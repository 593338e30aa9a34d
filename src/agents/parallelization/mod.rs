//! The parallelization room's agent: sectioning, voting and map-reduce fan-outs.

pub mod config;

pub use config::{ParallelizationConfig, Strategy};

use std::sync::Arc;

use serde_json::Value;

use super::{Agent, AgentDeps, AgentError, EventSink, FactoryError, RunFuture};
use crate::agui::RunAgentInput;

/// The names a room's `factory_name` may use for this agent.
pub const FACTORY_NAMES: &[&str] = &[
    "crazy_glue.factories.parallelization_factory.create_parallelization_agent",
    "parallelization",
];

pub fn create(extra: &Value, deps: &AgentDeps) -> Result<Arc<dyn Agent>, FactoryError> {
    let mut config = ParallelizationConfig::from_value(extra)?;
    if let Some(model) = &deps.model_override {
        config.model_name = model.clone();
    }
    Ok(Arc::new(ParallelizationAgent {
        config,
        deps: deps.clone(),
    }))
}

pub struct ParallelizationAgent {
    config: ParallelizationConfig,
    deps: AgentDeps,
}

impl Agent for ParallelizationAgent {
    fn start(&self, _input: RunAgentInput, _events: EventSink) -> Result<RunFuture, AgentError> {
        let _ = (&self.config, &self.deps);
        Err(AgentError::BadInput(
            "the parallelization agent is being built".into(),
        ))
    }
}
