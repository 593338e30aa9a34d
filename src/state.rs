//! `AppState`: everything a request handler needs, built once at start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::agents::{Agent, AgentDeps, Registry};
use crate::auth::{Auth, UserRuns};
use crate::config::{ConfigError, Settings};
use crate::llm::{self, LlmClient};
use crate::rooms::{load_rooms_dir, LoadedRoom, RoomConfig, RoomError};
use crate::server::detached::DetachedRuns;
use crate::store::{self, LiveRuns, Probe, Store, Writer};

pub type AppState = Arc<App>;

/// A loaded room with its agent built.
pub struct Room {
    pub config: RoomConfig,
    pub file: PathBuf,
    pub factory_name: String,
    pub agent: Arc<dyn Agent>,
}

pub struct App {
    pub settings: Settings,
    rooms: Vec<Room>,
    pub llm: Arc<dyn LlmClient>,
    /// Every run's task; empty when no run is in flight.
    pub runs: TaskTracker,
    /// Fired when shutdown begins: new runs are refused.
    pub shutdown: CancellationToken,
    /// Fired when the shutdown grace period is over: running streams end with `RUN_ERROR`.
    pub force_stop: CancellationToken,
    /// The store and its writer; `None` with `database_url: none` (or built by [`App::build`]).
    pub stored: Option<Stored>,
    /// Runs going on in this process, for followers and cancel.
    pub live: LiveRuns,
    /// Who may call the API.
    pub auth: Auth,
    /// Runs in flight per user, for `max_runs_per_user`.
    pub user_runs: UserRuns,
    /// Runs going on after their client left, per owner, for `max_detached_per_user`.
    pub detached: DetachedRuns,
    /// Renders `GET /metrics`; `None` when metrics are off.
    pub metrics: Option<PrometheusHandle>,
}

/// The open store, the one writer batching its event writes and `/readyz`'s probe of it.
#[derive(Clone)]
pub struct Stored {
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub probe: Arc<Probe>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Rooms(#[from] RoomError),
    #[error("LLM client: {0}")]
    Llm(#[from] llm::BuildError),
    #[error("cannot listen on {addr}: {detail}")]
    Bind { addr: String, detail: String },
    #[error("database {url}: {reason}")]
    Store { url: String, reason: String },
}

impl App {
    /// What the server runs: [`App::build`] with the store at `settings.database_url` opened and
    /// migrated (runs a previous process left `running` become `interrupted`), its writer and
    /// retention task started. The store is opened last, so a start that fails on its settings or
    /// rooms leaves no database file behind.
    pub async fn open(settings: Settings, registry: &Registry) -> Result<AppState, StartupError> {
        let mut app = Self::assemble(settings, registry)?;
        let url = app.settings.database_url.clone();
        let quota = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let quotas = store::Quotas {
            threads: quota(app.settings.max_threads_per_user),
            stored_bytes: quota(app.settings.max_stored_bytes_per_user),
            feedback: quota(app.settings.max_feedback_per_user),
        };
        let store = store::open(&url, quotas)
            .await
            .map_err(|e| StartupError::Store {
                url: store::mask_password(&url),
                reason: e.to_string(),
            })?;
        app.stored = store.map(|store| {
            if app.settings.retention_days > 0 {
                let days = u64::from(app.settings.retention_days);
                store::spawn_purge(store.clone(), Duration::from_secs(days * 86_400));
            }
            Stored {
                writer: Writer::spawn(store.clone(), store::MAX_QUEUED_EVENTS),
                store,
                probe: Arc::default(),
            }
        });
        Ok(Arc::new(app))
    }

    /// Loads the rooms from `settings.rooms_dir`, builds the LLM client and every room's agent;
    /// no store.
    pub fn build(settings: Settings, registry: &Registry) -> Result<AppState, StartupError> {
        Self::assemble(settings, registry).map(Arc::new)
    }

    fn assemble(settings: Settings, registry: &Registry) -> Result<App, StartupError> {
        // The recorder goes first: the LLM client records its endpoints' slots when built.
        if settings.metrics {
            crate::telemetry::install();
        }
        let llm = llm::build_client(&settings.llm.settings())?;
        let rooms = load_rooms_dir(&settings.rooms_dir)?;
        Self::parts(settings, registry, llm, rooms, None)
    }

    pub fn build_with(
        settings: Settings,
        registry: &Registry,
        llm: Arc<dyn LlmClient>,
        rooms: Vec<LoadedRoom>,
        stored: Option<Stored>,
    ) -> Result<AppState, StartupError> {
        Self::parts(settings, registry, llm, rooms, stored).map(Arc::new)
    }

    fn parts(
        settings: Settings,
        registry: &Registry,
        llm: Arc<dyn LlmClient>,
        rooms: Vec<LoadedRoom>,
        stored: Option<Stored>,
    ) -> Result<App, StartupError> {
        let auth = Auth::from_settings(&settings)?;
        let metrics = settings.metrics.then(crate::telemetry::install).flatten();
        let deps = AgentDeps {
            llm: llm.clone(),
            model_override: settings.model.clone(),
        };
        let rooms = rooms
            .into_iter()
            .map(|room| build_room(room, registry, &deps))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(App {
            settings,
            rooms,
            llm,
            runs: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            force_stop: CancellationToken::new(),
            stored,
            live: LiveRuns::default(),
            auth,
            user_runs: UserRuns::default(),
            detached: DetachedRuns::default(),
            metrics,
        })
    }

    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    pub fn room(&self, id: &str) -> Option<&Room> {
        self.rooms.iter().find(|r| r.config.id == id)
    }
}

fn build_room(room: LoadedRoom, registry: &Registry, deps: &AgentDeps) -> Result<Room, RoomError> {
    let LoadedRoom { file, config } = room;
    let field = |field: &str, message: String| RoomError::Field {
        file: file.clone(),
        field: field.to_owned(),
        message,
    };
    if matches!(config.agent.kind.as_str(), "" | "default") {
        return build_plain_room(config, file, registry, deps);
    }
    if config.agent.kind != "factory" {
        return Err(field(
            "agent.kind",
            format!(
                "unknown kind '{}'; this server supports 'factory' and 'default'",
                config.agent.kind
            ),
        ));
    }
    let name = config
        .agent
        .factory_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            field(
                "agent.factory_name",
                "missing; a factory agent needs one".into(),
            )
        })?;
    let factory = registry.get(&name).ok_or_else(|| {
        let known: Vec<&str> = registry.names().collect();
        field(
            "agent.factory_name",
            format!(
                "unknown factory '{name}'; known factories: {}",
                known.join(", ")
            ),
        )
    })?;
    let extra = match (&config.agent.extra_config, config.agent.with_agent_config) {
        (Some(extra), true) => serde_json::to_value(extra)
            .map_err(|e| field("agent.extra_config", format!("cannot be read as JSON: {e}")))?,
        _ => Value::Object(Default::default()),
    };
    if !extra.is_object() {
        return Err(field(
            "agent.extra_config",
            "must be a mapping of keys".into(),
        ));
    }
    let agent = factory(&extra, deps)
        .map_err(|e| field(&format!("agent.extra_config.{}", e.field), e.message))?;
    Ok(Room {
        config,
        file,
        factory_name: name,
        agent,
    })
}

/// A plain chat room: its agent keys (`model_name`, `system_prompt`, `provider_type`, ...) are
/// the chat agent's config; a `system_prompt` naming a file (`./prompt.txt`) is read from beside
/// the room file.
fn build_plain_room(
    config: RoomConfig,
    file: PathBuf,
    registry: &Registry,
    deps: &AgentDeps,
) -> Result<Room, RoomError> {
    let field = |field: &str, message: String| RoomError::Field {
        file: file.clone(),
        field: field.to_owned(),
        message,
    };
    let name = crate::agents::chat::FACTORY_NAMES[0];
    let factory = registry
        .get(name)
        .ok_or_else(|| field("agent.kind", "this server has no plain chat agent".into()))?;
    let mut extra = serde_json::Map::new();
    for (key, value) in &config.agent.other {
        let value = serde_json::to_value(value)
            .map_err(|e| field(&format!("agent.{key}"), format!("cannot be read: {e}")))?;
        extra.insert(key.clone(), value);
    }
    if let Some(Value::String(prompt)) = extra.get("system_prompt") {
        if let Some(relative) = prompt.strip_prefix("./") {
            let path = file
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(relative);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                field(
                    "agent.system_prompt",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            extra.insert("system_prompt".into(), Value::String(text));
        }
    }
    let agent = factory(&Value::Object(extra), deps)
        .map_err(|e| field(&format!("agent.{}", e.field), e.message))?;
    Ok(Room {
        config,
        file,
        factory_name: name.to_owned(),
        agent,
    })
}
