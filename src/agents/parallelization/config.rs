//! The room's `agent.extra_config`, typed and checked: a typo here would silently change
//! behaviour, so unknown keys are an error.

use serde::Deserialize;
use serde_json::Value;

use super::strategy::Strategy;
use crate::agents::kit::budget::Budget;
use crate::agents::kit::model::{read_config, ModelSettings, RoomSettings};
use crate::agents::kit::runner::{Ctx, Prompt};
use crate::agents::{AgentError, FactoryError};
use crate::llm::ChatRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// One extra call weighs the tied answers and their reasoning.
    Judge,
    /// The tied answer given by the earliest voter wins.
    First,
}

/// What a call is for; each role has its own token cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Planner,
    Section,
    Voter,
    Judge,
    Map,
    Collapse,
    Reduce,
}

/// `max_tokens`: a cap per role, or one number for all. Every call is bounded, so a model that
/// loops cannot stream forever; the defaults leave room for gpt-oss's low-effort thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "MaxTokensSetting")]
pub struct MaxTokens {
    pub planner: u32,
    pub section: u32,
    pub voter: u32,
    pub judge: u32,
    pub map: u32,
    pub collapse: u32,
    pub reduce: u32,
}

impl Default for MaxTokens {
    fn default() -> Self {
        Self {
            planner: 1024,
            section: 1536,
            voter: 1024,
            judge: 1024,
            map: 1024,
            collapse: 1024,
            reduce: 2048,
        }
    }
}

impl MaxTokens {
    pub fn get(&self, role: Role) -> u32 {
        match role {
            Role::Planner => self.planner,
            Role::Section => self.section,
            Role::Voter => self.voter,
            Role::Judge => self.judge,
            Role::Map => self.map,
            Role::Collapse => self.collapse,
            Role::Reduce => self.reduce,
        }
    }

    fn roles(&self) -> [(&'static str, u32); 7] {
        [
            ("planner", self.planner),
            ("section", self.section),
            ("voter", self.voter),
            ("judge", self.judge),
            ("map", self.map),
            ("collapse", self.collapse),
            ("reduce", self.reduce),
        ]
    }
}

/// How `max_tokens` may be written: one number, or some roles (the rest keep their default).
#[derive(Deserialize)]
#[serde(untagged)]
enum MaxTokensSetting {
    All(u32),
    PerRole(PerRole),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PerRole {
    planner: Option<u32>,
    section: Option<u32>,
    voter: Option<u32>,
    judge: Option<u32>,
    map: Option<u32>,
    collapse: Option<u32>,
    reduce: Option<u32>,
}

impl From<MaxTokensSetting> for MaxTokens {
    fn from(setting: MaxTokensSetting) -> Self {
        let d = MaxTokens::default();
        match setting {
            MaxTokensSetting::All(n) => MaxTokens {
                planner: n,
                section: n,
                voter: n,
                judge: n,
                map: n,
                collapse: n,
                reduce: n,
            },
            MaxTokensSetting::PerRole(p) => MaxTokens {
                planner: p.planner.unwrap_or(d.planner),
                section: p.section.unwrap_or(d.section),
                voter: p.voter.unwrap_or(d.voter),
                judge: p.judge.unwrap_or(d.judge),
                map: p.map.unwrap_or(d.map),
                collapse: p.collapse.unwrap_or(d.collapse),
                reduce: p.reduce.unwrap_or(d.reduce),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParallelizationConfig {
    /// The model section every room shares (`model_name`, `num_ctx`, `think`, `temperature` for
    /// section writers, summarisers and the reducer, `seed`: voter `i` samples with `seed + i`).
    #[serde(skip)]
    pub model: ModelSettings,
    pub default_strategy: Strategy,
    pub num_voters: u32,
    /// Sampling temperature of voters; above 0 so that independent votes can differ.
    pub voter_temperature: f32,
    /// Optional viewpoints, one per voter (cycled when fewer than the voters).
    pub voter_perspectives: Vec<String>,
    pub tie_break: TieBreak,
    /// Valid votes needed for a result; default a majority of `num_voters`.
    pub quorum: Option<u32>,
    pub max_collapse_depth: u32,
    /// Upper bound on generated tokens per call and role, thinking included.
    pub max_tokens: MaxTokens,
    /// Sections a planned sectioning run may have; `max_sections` also caps the sections a
    /// request may list (more is a 400), so one request never makes more calls than this.
    pub min_sections: u32,
    pub max_sections: u32,
    /// Documents one map-reduce request may carry (more is a 400).
    pub max_documents: u32,
    /// Tokens the run's history takes in every prompt; set per run, not a room setting.
    #[serde(skip)]
    pub history_tokens: usize,
}

impl Default for ParallelizationConfig {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            default_strategy: Strategy::Sectioning,
            num_voters: 3,
            voter_temperature: 0.8,
            voter_perspectives: Vec::new(),
            tie_break: TieBreak::Judge,
            quorum: None,
            max_collapse_depth: 3,
            max_tokens: MaxTokens::default(),
            min_sections: 3,
            max_sections: 8,
            max_documents: 64,
            history_tokens: 0,
        }
    }
}

impl ParallelizationConfig {
    pub fn from_value(
        extra: &Value,
        model_override: Option<&String>,
    ) -> Result<Self, FactoryError> {
        let config: Self = read_config(extra, model_override)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), FactoryError> {
        let err = |field: &str, message: String| {
            Err(FactoryError {
                field: field.into(),
                message,
            })
        };
        if !(1..=15).contains(&self.num_voters) {
            return err(
                "num_voters",
                format!("{} is out of range 1..=15", self.num_voters),
            );
        }
        if let Some(q) = self.quorum {
            if q == 0 || q > self.num_voters {
                return err(
                    "quorum",
                    format!("{q} must be between 1 and num_voters ({})", self.num_voters),
                );
            }
        }
        if !(0.0..=2.0).contains(&self.voter_temperature) {
            return err(
                "voter_temperature",
                format!("{} is out of range 0.0..=2.0", self.voter_temperature),
            );
        }
        if self.max_collapse_depth > 10 {
            return err(
                "max_collapse_depth",
                format!("{} is out of range 0..=10", self.max_collapse_depth),
            );
        }
        if let Some((role, _)) = self.max_tokens.roles().into_iter().find(|(_, n)| *n == 0) {
            return err(&format!("max_tokens.{role}"), "must be at least 1".into());
        }
        if self.min_sections < 1 || self.min_sections > self.max_sections || self.max_sections > 20
        {
            return err(
                "max_sections",
                format!(
                    "need 1 <= min_sections ({}) <= max_sections ({}) <= 20",
                    self.min_sections, self.max_sections
                ),
            );
        }
        if !(1..=512).contains(&self.max_documents) {
            return err(
                "max_documents",
                format!("{} is out of range 1..=512", self.max_documents),
            );
        }
        Ok(())
    }

    /// What a prompt of a call answering with `max_tokens` may take beside the run's history.
    pub fn budget(&self, max_tokens: u32) -> Budget {
        Budget::new(self.model.num_ctx, Some(max_tokens)).less(self.history_tokens)
    }

    /// [`budget`](Self::budget) for a call of `role`, answering with at most its `max_tokens`.
    pub fn role_budget(&self, role: Role) -> Budget {
        self.budget(self.max_tokens.get(role))
    }

    /// The most tokens a run's history may take: half of what the prompt of the call with the
    /// longest answer may take, so that the request itself keeps the other half.
    pub fn history_budget(&self) -> usize {
        let longest = self.max_tokens.roles().into_iter().map(|(_, n)| n).max();
        Budget::new(self.model.num_ctx, longest).prompt_tokens() / 2
    }

    /// Majority of the voters unless the room sets `quorum`.
    pub fn quorum(&self) -> u32 {
        self.quorum.unwrap_or(self.num_voters / 2 + 1)
    }
}

impl RoomSettings for ParallelizationConfig {
    fn model(&self) -> &ModelSettings {
        &self.model
    }

    fn model_mut(&mut self) -> &mut ModelSettings {
        &mut self.model
    }
}

impl Ctx<ParallelizationConfig> {
    /// A request answering with at most the role's `max_tokens`.
    pub fn request(
        &self,
        role: Role,
        prompt: Prompt,
        temperature: f32,
        seed: i64,
        format: Option<Value>,
    ) -> Result<ChatRequest, AgentError> {
        let max_tokens = self.config.max_tokens.get(role);
        self.request_capped(max_tokens, prompt, temperature, seed, format)
    }
}
