//! Server settings: defaults, then an optional YAML file, then environment variables, then flags.
//! Checked once at start-up; every error names where the bad value came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::llm::{normalize_base_url, LlmSettings};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub addr: SocketAddr,
    pub rooms_dir: PathBuf,
    /// Replaces every room's `model_name` (e.g. to try another model without editing rooms).
    pub model: Option<String>,
    /// Origins allowed by CORS; `*` allows any.
    pub cors_origins: Vec<String>,
    pub body_limit_bytes: usize,
    /// Seconds between SSE keep-alive comments.
    pub keep_alive_secs: f64,
    /// On SIGTERM, how long running streams may go on before they are ended with `RUN_ERROR`.
    pub shutdown_grace_secs: f64,
    pub llm: LlmSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            rooms_dir: PathBuf::from("rooms"),
            model: None,
            cors_origins: vec!["*".into()],
            body_limit_bytes: 1024 * 1024,
            keep_alive_secs: 15.0,
            shutdown_grace_secs: 30.0,
            llm: LlmSettings::default(),
        }
    }
}

/// A setting that cannot be used. `source` is the env variable, flag or `file: key` it came from.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

impl ConfigError {
    fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// Command-line flags; each has an environment variable too (see `Settings::apply_env`).
#[derive(Debug, Default, Parser)]
#[command(name = "roomhost", version, about = "Hosts AG-UI rooms over SSE")]
pub struct Cli {
    /// YAML settings file (env ROOMHOST_CONFIG).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (env ROOMHOST_ADDR; default 127.0.0.1:8000).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Folder of room configs (env ROOMHOST_ROOMS_DIR; default ./rooms).
    #[arg(long)]
    pub rooms_dir: Option<PathBuf>,
    /// LLM base URL(s), comma-separated (env OLLAMA_BASE_URL or OLLAMA_HOST).
    #[arg(long)]
    pub llm_url: Option<String>,
    /// Backend API: ollama or openai (env ROOMHOST_LLM_API).
    #[arg(long)]
    pub llm_api: Option<String>,
    /// In-flight LLM calls per endpoint (env ROOMHOST_MAX_CONCURRENCY; default 4).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
}

impl Settings {
    /// Builds the settings from flags, the process environment and the optional config file.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        Self::load_with(cli, |k| std::env::var(k).ok())
    }

    pub fn load_with(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = cli
            .config
            .clone()
            .or_else(|| env("ROOMHOST_CONFIG").map(PathBuf::from));
        let mut settings = match &file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        settings.apply_env(&env)?;
        if let Some(v) = cli.addr {
            settings.addr = v;
        }
        if let Some(v) = &cli.rooms_dir {
            settings.rooms_dir = v.clone();
        }
        if let Some(v) = &cli.llm_url {
            settings.llm.base_urls = split_list(v);
        }
        if let Some(v) = &cli.llm_api {
            settings.llm.api = v.parse().map_err(|e| ConfigError::new("--llm-api", e))?;
        }
        if let Some(v) = cli.max_concurrency {
            settings.llm.max_concurrency = v;
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&name, format!("cannot read: {e}")))?;
        let de = serde_yaml::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            ConfigError::new(format!("{name}: {}", e.path()), e.into_inner().to_string())
        })
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim()
                .parse()
                .map_err(|e| ConfigError::new(key, format!("'{v}': {e}")))
        }
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("ROOMHOST_ADDR") {
            self.addr = parse("ROOMHOST_ADDR", &v)?;
        }
        if let Some(v) = get("ROOMHOST_ROOMS_DIR") {
            self.rooms_dir = PathBuf::from(v);
        }
        if let Some(v) = get("ROOMHOST_MODEL") {
            self.model = Some(v);
        }
        if let Some(v) = get("ROOMHOST_CORS_ORIGINS") {
            self.cors_origins = split_list(&v);
        }
        if let Some(v) = get("ROOMHOST_BODY_LIMIT") {
            self.body_limit_bytes = parse("ROOMHOST_BODY_LIMIT", &v)?;
        }
        if let Some(v) = get("ROOMHOST_KEEPALIVE_SECS") {
            self.keep_alive_secs = parse("ROOMHOST_KEEPALIVE_SECS", &v)?;
        }
        if let Some(v) = get("ROOMHOST_SHUTDOWN_GRACE_SECS") {
            self.shutdown_grace_secs = parse("ROOMHOST_SHUTDOWN_GRACE_SECS", &v)?;
        }
        // OLLAMA_BASE_URL wins over Ollama's own OLLAMA_HOST.
        if let Some(v) = get("OLLAMA_BASE_URL").or_else(|| get("OLLAMA_HOST")) {
            self.llm.base_urls = split_list(&v);
        }
        let llm = &mut self.llm;
        if let Some(v) = get("ROOMHOST_LLM_API") {
            llm.api = parse("ROOMHOST_LLM_API", &v)?;
        }
        if let Some(v) = get("ROOMHOST_LLM_API_KEY") {
            llm.api_key = Some(v);
        }
        if let Some(v) = get("ROOMHOST_MAX_CONCURRENCY") {
            llm.max_concurrency = parse("ROOMHOST_MAX_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("ROOMHOST_MAX_QUEUE") {
            llm.max_queue = parse("ROOMHOST_MAX_QUEUE", &v)?;
        }
        if let Some(v) = get("ROOMHOST_CONNECT_TIMEOUT_SECS") {
            llm.connect_timeout_secs = parse("ROOMHOST_CONNECT_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("ROOMHOST_FIRST_BYTE_TIMEOUT_SECS") {
            llm.first_byte_timeout_secs = parse("ROOMHOST_FIRST_BYTE_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("ROOMHOST_IDLE_TIMEOUT_SECS") {
            llm.idle_timeout_secs = parse("ROOMHOST_IDLE_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("ROOMHOST_REQUEST_TIMEOUT_SECS") {
            llm.request_timeout_secs = parse("ROOMHOST_REQUEST_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("ROOMHOST_MAX_RETRIES") {
            llm.max_retries = parse("ROOMHOST_MAX_RETRIES", &v)?;
        }
        if let Some(v) = get("ROOMHOST_OPENAI_JSON_MODE") {
            llm.openai_json_mode = parse("ROOMHOST_OPENAI_JSON_MODE", &v)?;
        }
        if let Some(v) = get("ROOMHOST_STRUCTURED_OUTPUT") {
            llm.structured_output = parse("ROOMHOST_STRUCTURED_OUTPUT", &v)?;
        }
        Ok(())
    }

    /// Checks ranges and normalises the backend URLs.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let llm = &mut self.llm;
        if llm.base_urls.is_empty() {
            return Err(ConfigError::new(
                "llm.base_urls",
                "no LLM endpoint given; set OLLAMA_BASE_URL",
            ));
        }
        llm.base_urls = llm
            .base_urls
            .iter()
            .map(|u| normalize_base_url(u))
            .collect::<Result<_, _>>()
            .map_err(|e| ConfigError::new("llm.base_urls (OLLAMA_BASE_URL)", e))?;
        if !(1..=1024).contains(&llm.max_concurrency) {
            return Err(ConfigError::new(
                "llm.max_concurrency (ROOMHOST_MAX_CONCURRENCY)",
                format!("{} is out of range 1..=1024", llm.max_concurrency),
            ));
        }
        let secs = [
            ("llm.connect_timeout_secs", llm.connect_timeout_secs),
            ("llm.first_byte_timeout_secs", llm.first_byte_timeout_secs),
            ("llm.idle_timeout_secs", llm.idle_timeout_secs),
            ("llm.request_timeout_secs", llm.request_timeout_secs),
            ("keep_alive_secs", self.keep_alive_secs),
        ];
        for (name, v) in secs {
            if !(v.is_finite() && v > 0.0 && v < 1e7) {
                return Err(ConfigError::new(
                    name,
                    format!("{v} must be a positive number of seconds"),
                ));
            }
        }
        if !(self.shutdown_grace_secs.is_finite() && self.shutdown_grace_secs >= 0.0) {
            return Err(ConfigError::new(
                "shutdown_grace_secs",
                "must be zero or more seconds",
            ));
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::new(
                "body_limit_bytes (ROOMHOST_BODY_LIMIT)",
                "must be at least 1024",
            ));
        }
        Ok(())
    }

    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs_f64(self.keep_alive_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_secs)
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
