//! The room's `agent.extra_config`, typed and checked: a typo here would silently change
//! behaviour, so unknown keys are an error.

use serde::Deserialize;
use serde_json::Value;

use super::budget::Budget;
use super::strategy::Strategy;
use crate::agents::FactoryError;
use crate::llm::ThinkLevel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// One extra call weighs the tied answers and their reasoning.
    Judge,
    /// The tied answer given by the earliest voter wins.
    First,
}

/// `think` in the room config: a level, or `off` for models without a thinking mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThinkSetting {
    Off,
    Low,
    Medium,
    High,
}

impl ThinkSetting {
    pub fn level(self) -> Option<ThinkLevel> {
        match self {
            ThinkSetting::Off => None,
            ThinkSetting::Low => Some(ThinkLevel::Low),
            ThinkSetting::Medium => Some(ThinkLevel::Medium),
            ThinkSetting::High => Some(ThinkLevel::High),
        }
    }
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
    pub model_name: String,
    pub default_strategy: Strategy,
    pub num_voters: u32,
    /// Sampling temperature of voters; above 0 so that independent votes can differ.
    pub voter_temperature: f32,
    /// Sampling temperature of section writers, document summarisers and the reducer.
    pub temperature: f32,
    /// Base seed: voter `i` samples with `seed + i`.
    pub seed: i64,
    /// Optional viewpoints, one per voter (cycled when fewer than the voters).
    pub voter_perspectives: Vec<String>,
    pub tie_break: TieBreak,
    /// Valid votes needed for a result; default a majority of `num_voters`.
    pub quorum: Option<u32>,
    /// The model's context window in tokens; map-reduce budgets every call against it.
    pub num_ctx: u32,
    pub max_collapse_depth: u32,
    /// Upper bound on generated tokens per call and role, thinking included.
    pub max_tokens: MaxTokens,
    pub think: ThinkSetting,
    /// Stream the model's thinking as `REASONING_*` events of each task's subagent.
    pub show_thinking: bool,
    /// Sections a planned sectioning run may have; `max_sections` also caps the sections a
    /// request may list (more is a 400), so one request never makes more calls than this.
    pub min_sections: u32,
    pub max_sections: u32,
    /// Documents one map-reduce request may carry (more is a 400).
    pub max_documents: u32,
    /// Tasks of one run in flight at once; the LLM client's own limit and queue still apply, this
    /// only keeps one huge map-reduce from filling the shared queue.
    pub max_parallel_tasks: u32,
    /// Tokens the run's history takes in every prompt; set per run, not a room setting.
    #[serde(skip)]
    pub history_tokens: usize,
}

impl Default for ParallelizationConfig {
    fn default() -> Self {
        Self {
            model_name: "gpt-oss:20b".into(),
            default_strategy: Strategy::Sectioning,
            num_voters: 3,
            voter_temperature: 0.8,
            temperature: 0.7,
            seed: 42,
            voter_perspectives: Vec::new(),
            tie_break: TieBreak::Judge,
            quorum: None,
            num_ctx: 8192,
            max_collapse_depth: 3,
            max_tokens: MaxTokens::default(),
            think: ThinkSetting::Low,
            show_thinking: false,
            min_sections: 3,
            max_sections: 8,
            max_documents: 64,
            max_parallel_tasks: 32,
            history_tokens: 0,
        }
    }
}

impl ParallelizationConfig {
    pub fn from_value(extra: &Value) -> Result<Self, FactoryError> {
        let config: Self = serde_path_to_error::deserialize(extra).map_err(|e| {
            let path = e.path().to_string();
            FactoryError {
                field: if path == "." { "(root)".into() } else { path },
                message: e.into_inner().to_string(),
            }
        })?;
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
        if self.model_name.trim().is_empty() {
            return err("model_name", "must not be empty".into());
        }
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
        for (field, t) in [
            ("voter_temperature", self.voter_temperature),
            ("temperature", self.temperature),
        ] {
            if !(0.0..=2.0).contains(&t) {
                return err(field, format!("{t} is out of range 0.0..=2.0"));
            }
        }
        if !(512..=1_048_576).contains(&self.num_ctx) {
            return err(
                "num_ctx",
                format!("{} is out of range 512..=1048576", self.num_ctx),
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
        if !(1..=256).contains(&self.max_parallel_tasks) {
            return err(
                "max_parallel_tasks",
                format!("{} is out of range 1..=256", self.max_parallel_tasks),
            );
        }
        Ok(())
    }

    /// What a prompt of a call answering with `max_tokens` may take beside the run's history.
    pub fn budget(&self, max_tokens: u32) -> Budget {
        Budget::new(self.num_ctx, Some(max_tokens)).less(self.history_tokens)
    }

    /// [`budget`](Self::budget) for a call of `role`, answering with at most its `max_tokens`.
    pub fn role_budget(&self, role: Role) -> Budget {
        self.budget(self.max_tokens.get(role))
    }

    /// The most tokens a run's history may take: half of what the prompt of the call with the
    /// longest answer may take, so that the request itself keeps the other half.
    pub fn history_budget(&self) -> usize {
        let longest = self.max_tokens.roles().into_iter().map(|(_, n)| n).max();
        Budget::new(self.num_ctx, longest).prompt_tokens() / 2
    }

    /// Majority of the voters unless the room sets `quorum`.
    pub fn quorum(&self) -> u32 {
        self.quorum.unwrap_or(self.num_voters / 2 + 1)
    }
}
