//! Room configs: one YAML file per room, in soliplex's format, loaded and checked at start-up.

mod load;

pub use load::{load_rooms_dir, RoomError};

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One room's YAML. Keys this server does not use (soliplex's `tools`, `enable_attachments`, …) are
/// kept in `other` and ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomConfig {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub agent: AgentConfig,
    #[serde(default)]
    pub suggestions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome_message: Option<String>,
    /// soliplex's display order; rooms without it sort after those with it, by id.
    #[serde(default, rename = "_order", skip_serializing_if = "Option::is_none")]
    pub order: Option<serde_yaml::Value>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentConfig {
    /// `factory`, or `default` (also when absent): a plain chat room.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub factory_name: Option<String>,
    #[serde(default)]
    pub with_agent_config: bool,
    #[serde(default)]
    pub extra_config: Option<serde_yaml::Value>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// A room config together with the file it came from, for error messages.
#[derive(Debug, Clone)]
pub struct LoadedRoom {
    pub file: PathBuf,
    pub config: RoomConfig,
}
