//! The model settings every room's `extra_config` shares (model, context, thinking, sampling,
//! parallel tasks), read once here; each room reads its own keys from what is left.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::agents::FactoryError;
use crate::llm::ThinkLevel;

/// `think` in the room config: a level, or `off` for models without a thinking mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    pub model_name: String,
    /// The model's context window in tokens; every call's prompt is budgeted against it.
    pub num_ctx: u32,
    pub think: ThinkSetting,
    /// Stream the model's thinking as `REASONING_*` events of each task's subagent.
    pub show_thinking: bool,
    /// Sampling temperature of the room's calls (a room may set others for some roles).
    pub temperature: f32,
    /// Base seed: parallel task `i` samples with `seed + i`.
    pub seed: i64,
    /// Tasks of one run in flight at once; the LLM client's own limit and queue still apply, this
    /// only keeps one huge run from filling the shared queue.
    pub max_parallel_tasks: u32,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            model_name: "gpt-oss:20b".into(),
            num_ctx: 8192,
            think: ThinkSetting::Low,
            show_thinking: false,
            temperature: 0.7,
            seed: 42,
            max_parallel_tasks: 32,
        }
    }
}

/// A config key of the model section: read by [`ModelSettings::split`].
fn is_model_key(key: &str) -> bool {
    matches!(
        key,
        "model_name"
            | "num_ctx"
            | "think"
            | "show_thinking"
            | "temperature"
            | "seed"
            | "max_parallel_tasks"
    )
}

impl ModelSettings {
    /// The model section of `extra` and the room's own keys (everything else).
    pub fn split(extra: &Value) -> Result<(Self, Value), FactoryError> {
        let (model, rest): (Map<String, Value>, Map<String, Value>) = match extra {
            Value::Object(map) => map
                .clone()
                .into_iter()
                .partition(|(key, _)| is_model_key(key)),
            Value::Null => Default::default(),
            _ => {
                return Err(FactoryError {
                    field: "(root)".into(),
                    message: "extra_config must be a mapping".into(),
                })
            }
        };
        let settings: Self = parse_config(&Value::Object(model))?;
        settings.validate()?;
        Ok((settings, Value::Object(rest)))
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
        if !(0.0..=2.0).contains(&self.temperature) {
            return err(
                "temperature",
                format!("{} is out of range 0.0..=2.0", self.temperature),
            );
        }
        if !(512..=1_048_576).contains(&self.num_ctx) {
            return err(
                "num_ctx",
                format!("{} is out of range 512..=1048576", self.num_ctx),
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
}

/// What a room's config gives the kit: its model section.
pub trait RoomSettings: Send + Sync + 'static {
    fn model(&self) -> &ModelSettings;
    fn model_mut(&mut self) -> &mut ModelSettings;
}

/// A room's config from its `extra_config`: the model section, the room's own keys (unknown ones
/// refused), and the server's model override (`ROOMHOST_MODEL`) when set.
pub fn read_config<T: RoomSettings + DeserializeOwned>(
    extra: &Value,
    model_override: Option<&String>,
) -> Result<T, FactoryError> {
    let (mut model, rest) = ModelSettings::split(extra)?;
    if let Some(name) = model_override {
        model.model_name = name.clone();
    }
    let mut config: T = parse_config(&rest)?;
    *config.model_mut() = model;
    Ok(config)
}

/// A room's own config keys, typed; the error names the path of the bad value.
pub fn parse_config<T: DeserializeOwned>(value: &Value) -> Result<T, FactoryError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        FactoryError {
            field: if path == "." { "(root)".into() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_model_keys_are_every_field() {
        let fields = serde_json::to_value(ModelSettings::default()).expect("serializes");
        let keys: Vec<&String> = fields.as_object().expect("object").keys().collect();
        assert!(keys.iter().all(|k| is_model_key(k)), "{keys:?}");
        assert_eq!(keys.len(), 7);
    }

    #[test]
    fn split_keeps_the_room_keys_apart() {
        let extra = json!({"model_name": "m", "num_rounds": 2, "think": "off"});
        let (model, rest) = ModelSettings::split(&extra).expect("valid");
        assert_eq!(model.model_name, "m");
        assert_eq!(model.think, ThinkSetting::Off);
        assert_eq!(rest, json!({"num_rounds": 2}));
        let bad = ModelSettings::split(&json!({"num_ctx": 10})).unwrap_err();
        assert_eq!(bad.field, "num_ctx");
    }
}
