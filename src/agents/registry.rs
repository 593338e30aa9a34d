use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{brainstorm, chat, debate, parallelization, shark_tank, Agent, AgentDeps};

/// Builds an agent from a room's `agent.extra_config` (an empty object when the room says
/// `with_agent_config: false`).
pub type Factory = fn(&Value, &AgentDeps) -> Result<Arc<dyn Agent>, FactoryError>;

/// A config value a factory refused; `field` is the path inside `extra_config`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FactoryError {
    pub field: String,
    pub message: String,
}

/// Maps `agent.factory_name` values to agent constructors.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Registry {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every agent this server ships. A new agent is one line here.
    pub fn builtin() -> Self {
        let mut registry = Self::empty();
        registry.register_all(parallelization::FACTORY_NAMES, parallelization::create);
        registry.register_all(chat::FACTORY_NAMES, chat::create);
        registry.register_all(debate::FACTORY_NAMES, debate::create);
        registry.register_all(brainstorm::FACTORY_NAMES, brainstorm::create);
        registry.register_all(shark_tank::FACTORY_NAMES, shark_tank::create);
        registry
    }

    pub fn register(&mut self, name: &str, factory: Factory) -> &mut Self {
        self.factories.insert(name.to_owned(), factory);
        self
    }

    pub fn register_all(&mut self, names: &[&str], factory: Factory) -> &mut Self {
        for name in names {
            self.register(name, factory);
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<Factory> {
        self.factories.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}
