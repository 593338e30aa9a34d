//! Server settings: defaults, then an optional YAML file, then environment variables, then flags.
//! Each setting is declared once below (`settings!`, see `declare`); every value is checked when
//! it is taken, and an error names where it came from: the variable, the flag or `file: key`.

#[macro_use]
pub mod declare;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::auth::AuthMode;
use crate::llm::{LlmApi, LlmSettings, OpenAiJsonMode};
use declare::{api_keys, at_least, at_most, endpoints, otlp_endpoint, positive};

settings! {
    /// Server settings: the top level of the YAML file.
    pub struct Settings, flags Flags, prefix "" {
        /// listen address (the Docker image uses `0.0.0.0:8000`)
        addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8000)), env ["ROOMHOST_ADDR"];
        /// folder of room configs
        rooms_dir: PathBuf = PathBuf::from("rooms"), env ["ROOMHOST_ROOMS_DIR"];
        /// replaces every room's `model_name` (to try another model without editing rooms)
        model: Option<String> = None, env ["ROOMHOST_MODEL"];
        /// allowed browser origins, comma-separated; `*` allows any
        cors_origins: Vec<String> = vec!["*".into()], env ["ROOMHOST_CORS_ORIGINS"];
        /// larger request bodies get 413
        body_limit_bytes: usize = 1024 * 1024, env ["ROOMHOST_BODY_LIMIT"], flag "body-limit",
            check at_least(1024);
        /// SSE keep-alive comment interval
        keep_alive: Duration = Duration::from_secs(15), env ["ROOMHOST_KEEPALIVE_SECS"],
            check positive, serde(with = "declare::duration", alias = "keep_alive_secs");
        /// on SIGTERM, how long running streams may finish before the rest are handed over to
        /// another replica (ended with `RUN_ERROR` when the store is `none` or in memory)
        shutdown_grace: Duration = Duration::from_secs(30), env ["ROOMHOST_SHUTDOWN_GRACE_SECS"],
            serde(with = "declare::duration", alias = "shutdown_grace_secs");
        /// a client that leaves its stream's events unread this long is treated as gone: its run
        /// is cancelled and its connection closed
        client_stall: Duration = Duration::from_secs(30), env ["ROOMHOST_CLIENT_STALL_SECS"],
            check positive, serde(with = "declare::duration");
        /// events a run may hold for a client that reads slower than it streams; past it the
        /// client is treated as gone
        client_buffer_bytes: usize = 8 * 1024 * 1024, env ["ROOMHOST_CLIENT_BUFFER_BYTES"],
            check at_least(4096);
        /// time to send a request's head, counted from when the connection is ready for the next
        /// request: also how long an idle keep-alive connection stays open
        header_timeout: Duration = Duration::from_secs(15), env ["ROOMHOST_HEADER_TIMEOUT_SECS"],
            check positive, serde(with = "declare::duration");
        /// time for a request body to arrive; past it 408 and the connection is closed
        body_timeout: Duration = Duration::from_secs(30), env ["ROOMHOST_BODY_TIMEOUT_SECS"],
            check positive, serde(with = "declare::duration");
        /// open connections; past it a new connection is answered 503 `too_many_connections` and
        /// closed, while open ones keep working
        max_connections: usize = 10_000, env ["ROOMHOST_MAX_CONNECTIONS"], check at_least(1);
        /// largest request line plus headers; past it 431
        max_header_bytes: usize = 16 * 1024, env ["ROOMHOST_MAX_HEADER_BYTES"],
            check at_least(1024);
        /// where threads, runs and their events are kept: `sqlite://FILE` (created if missing,
        /// relative to the working directory), `sqlite::memory:`, `postgres://USER:PASS@HOST/DB`,
        /// or `none` to keep nothing (see [The store](#the-store))
        database_url: String = "sqlite://roomhost.db".into(), env ["ROOMHOST_DATABASE_URL"];
        /// how often a process renews its lease in the store and looks for runs whose owner's
        /// lease expired (see [Running several replicas](#running-several-replicas))
        heartbeat: Duration = Duration::from_secs(2), env ["ROOMHOST_HEARTBEAT"],
            check positive, serde(with = "declare::duration");
        /// how long a lease lasts unrenewed: a process silent this long is taken as dead and
        /// another adopts its running runs (keep it several heartbeats long)
        lease: Duration = Duration::from_secs(8), env ["ROOMHOST_LEASE"],
            check positive, serde(with = "declare::duration");
        /// threads with no run for this many days are deleted (checked hourly); 0 keeps them
        retention_days: u32 = 0, env ["ROOMHOST_RETENTION_DAYS"];
        /// events kept per run; past it the run is marked `events_cut` (its stream goes on)
        max_events_per_run: usize = 100_000, env ["ROOMHOST_MAX_EVENTS_PER_RUN"],
            check at_least(1);
        /// how long a run's start waits for the database to record it (past it the run is refused
        /// with 503 `store_unavailable`), and its end for its last records to be written before
        /// its last event is sent
        store_timeout: Duration = Duration::from_secs(2), env ["ROOMHOST_STORE_TIMEOUT_SECS"],
            check positive, serde(with = "declare::duration");
        /// threads one user may keep (under `auth: none`, everyone together); past it a new
        /// thread is refused with 429 `thread_quota` (0: no limit)
        max_threads_per_user: usize = 10_000, env ["ROOMHOST_MAX_THREADS_PER_USER"];
        /// bytes of run inputs, as clients sent them, one user may keep (under `auth: none`,
        /// everyone together); past it a run is refused with 413 `storage_quota` (0: no limit)
        max_stored_bytes_per_user: usize = 1 << 30, env ["ROOMHOST_MAX_STORED_BYTES_PER_USER"];
        /// feedback rows one user may keep (under `auth: none`, everyone together); past it 429
        /// `feedback_quota` (0: no limit)
        max_feedback_per_user: usize = 100_000, env ["ROOMHOST_MAX_FEEDBACK_PER_USER"];
        /// how long a run goes on after its client left, so a reconnect picks it up (see
        /// [Resuming a run](#resuming-a-run)); then it is cancelled. 0 cancels it at once
        detached_grace: Duration = Duration::from_secs(60), env ["ROOMHOST_DETACHED_GRACE_SECS"],
            serde(with = "declare::duration", alias = "detached_grace_secs");
        /// runs one user (under `auth: none`, one client address) may have going on detached
        /// after their client left; past it a run whose client leaves is cancelled at once
        /// (0: no limit)
        max_detached_per_user: usize = 4, env ["ROOMHOST_MAX_DETACHED_PER_USER"];
        /// LLM queue places the detached runs of one user (or client address) may hold; past it
        /// a run whose client leaves is cancelled at once (0: no limit)
        max_detached_places_per_user: usize = 32, env ["ROOMHOST_MAX_DETACHED_PLACES_PER_USER"];
        /// who may use the API: `none` (anyone; one shared owner), `keys` (bearer API keys,
        /// `api_keys`) or `oidc` (JWTs from the `oidc_*` issuers); see [Sign-in](#sign-in)
        auth: AuthMode = AuthMode::None, env ["ROOMHOST_AUTH"];
        /// API keys for `auth: keys`, comma-separated `user:<sha256 hex of the key>`
        api_keys: Vec<String> = Vec::new(), env ["ROOMHOST_API_KEYS"], check api_keys;
        /// accepted token issuers (`iss`) for `auth: oidc`, comma-separated
        oidc_issuers: Vec<String> = Vec::new(), env ["ROOMHOST_OIDC_ISSUERS"];
        /// each issuer's JWKS URL, in the order of `oidc_issuers`; keys are cached and fetched
        /// again for an unknown `kid` and every 15 minutes
        oidc_jwks_urls: Vec<String> = Vec::new(), env ["ROOMHOST_OIDC_JWKS_URLS"];
        /// a local JWKS file used for every issuer instead of `oidc_jwks_urls`
        oidc_jwks_file: Option<PathBuf> = None, env ["ROOMHOST_OIDC_JWKS_FILE"];
        /// the audience (`aud`) tokens must name
        oidc_audience: Option<String> = None, env ["ROOMHOST_OIDC_AUDIENCE"];
        /// the claim that names the user
        oidc_user_claim: String = "preferred_username".into(), env ["ROOMHOST_OIDC_USER_CLAIM"];
        /// the OAuth client id the soliplex frontend signs in with (`GET /api/login`); defaults
        /// to the audience
        oidc_client_id: Option<String> = None, env ["ROOMHOST_OIDC_CLIENT_ID"];
        /// runs one user may have in flight; past it 429 with `Retry-After` (0: no limit)
        max_runs_per_user: usize = 0, env ["ROOMHOST_MAX_RUNS_PER_USER"];
        /// record metrics and serve them at `GET /metrics` (Prometheus text format)
        metrics: bool = true, env ["ROOMHOST_METRICS"];
        /// `GET /metrics` and `/stats` need the same sign-in as the API
        metrics_auth: bool = false, env ["ROOMHOST_METRICS_AUTH"];
        /// an OpenTelemetry collector's OTLP/HTTP base URL (`http://localhost:4318`): one span per
        /// run and per LLM call go to `{url}/v1/traces` (see [Traces](#traces)); unset: no traces
        otlp_endpoint: Option<String> = None,
            env ["ROOMHOST_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"], check otlp_endpoint;
        /// the `service.name` of the exported spans
        otel_service_name: String = "roomhost".into(), env ["OTEL_SERVICE_NAME"];
    }
    sections { llm: LlmConfig / LlmFlags }
}

settings! {
    /// The LLM backend: the `llm:` section of the YAML file.
    pub struct LlmConfig, flags LlmFlags, prefix "llm." {
        /// `ollama` (`/api/chat`) or `openai` (`/v1/chat/completions`)
        api: LlmApi = LlmApi::Ollama, env ["ROOMHOST_LLM_API"], flag "llm-api";
        /// one or more endpoints, comma-separated; each call goes to the least busy
        base_urls: Vec<String> = vec!["http://localhost:11434".into()],
            env ["OLLAMA_BASE_URL", "OLLAMA_HOST"], flag "llm-url", check endpoints;
        /// bearer token for OpenAI-compatible gateways
        api_key: Option<String> = None, env ["ROOMHOST_LLM_API_KEY"], flag "llm-api-key",
            serde(skip_serializing);
        /// LLM calls in flight **per endpoint**, shared by every run; match the backend's
        /// parallel slots (`OLLAMA_NUM_PARALLEL`)
        max_concurrency: NonZeroUsize = (const { NonZeroUsize::new(4).expect("4 is not zero") }),
            env ["ROOMHOST_MAX_CONCURRENCY"], check at_most(1024);
        /// calls that may wait for a slot; a run is admitted only when all its calls fit (see
        /// [Admission](#admission))
        max_queue: usize = 256, env ["ROOMHOST_MAX_QUEUE"];
        /// TCP/TLS connect
        connect_timeout: Duration = Duration::from_secs(10), env ["ROOMHOST_CONNECT_TIMEOUT_SECS"],
            check positive, serde(with = "declare::duration", alias = "connect_timeout_secs");
        /// until the first token; long because a cold model load takes tens of seconds
        first_byte_timeout: Duration = Duration::from_secs(180),
            env ["ROOMHOST_FIRST_BYTE_TIMEOUT_SECS"], check positive,
            serde(with = "declare::duration", alias = "first_byte_timeout_secs");
        /// between two chunks
        idle_timeout: Duration = Duration::from_secs(60), env ["ROOMHOST_IDLE_TIMEOUT_SECS"],
            check positive, serde(with = "declare::duration", alias = "idle_timeout_secs");
        /// one whole call, queueing excluded
        request_timeout: Duration = Duration::from_secs(600), env ["ROOMHOST_REQUEST_TIMEOUT_SECS"],
            check positive, serde(with = "declare::duration", alias = "request_timeout_secs");
        /// retries on connection errors, 429, 502, 503, 504 (500 once), with exponential back-off
        /// and jitter; never on 400/404, never after tokens were streamed
        max_retries: u32 = 2, env ["ROOMHOST_MAX_RETRIES"];
        /// the first retry's back-off, doubled on each further retry (less up to half, at random)
        retry_base_delay: Duration = Duration::from_millis(250), env ["ROOMHOST_RETRY_BASE_DELAY"],
            serde(with = "declare::duration");
        /// structured output form for OpenAI servers; `json_object` for llama-cpp-python
        openai_json_mode: OpenAiJsonMode = OpenAiJsonMode::JsonSchema,
            env ["ROOMHOST_OPENAI_JSON_MODE"];
        /// send JSON schemas to the backend; `false` for one that mishandles them (answers are
        /// still asked for as JSON in the prompt, and read from prose when they are not)
        structured_output: bool = true, env ["ROOMHOST_STRUCTURED_OUTPUT"];
    }
}

impl LlmConfig {
    /// What the LLM client takes. The values are as checked when they were loaded.
    pub fn settings(&self) -> LlmSettings {
        LlmSettings {
            api: self.api,
            base_urls: self.base_urls.clone(),
            api_key: self.api_key.clone(),
            max_concurrency: self.max_concurrency,
            max_queue: self.max_queue,
            connect_timeout: self.connect_timeout,
            first_byte_timeout: self.first_byte_timeout,
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
            retry_base_delay: self.retry_base_delay,
            openai_json_mode: self.openai_json_mode,
            structured_output: self.structured_output,
        }
    }
}

/// What to do when the LLM backend does not answer, for the start-up warning and `/readyz`.
pub const LLM_UNREACHABLE_HINT: &str = "start the LLM server, or set OLLAMA_BASE_URL (flag --llm-url, file key llm.base_urls) to where it listens; to try roomhost without a model: cargo run --release --example demo";

/// A setting that cannot be used. `source` is the env variable, flag or `file: key` it came from.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// The command line: the settings file and one flag per setting.
#[derive(Debug, Default, Parser)]
#[command(name = "roomhost", version, about = "Hosts AG-UI rooms over SSE")]
pub struct Cli {
    /// YAML settings file (env ROOMHOST_CONFIG)
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: Flags,
}

impl Settings {
    /// Builds the settings from flags, the process environment and the optional config file.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        Self::load_with(cli, |k| std::env::var(k).ok())
    }

    pub fn load_with(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = cli.config.clone().or_else(|| {
            declare::first_set(&env, &["ROOMHOST_CONFIG"]).map(|(_, v)| PathBuf::from(v))
        });
        let mut settings = match &file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        settings.apply(&env, &cli.flags)?;
        Ok(settings)
    }

    /// Reads and checks a YAML settings file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&name, format!("cannot read: {e}")))?;
        let de = serde_yaml::Deserializer::from_str(&text);
        let mut settings: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            ConfigError::new(format!("{name}: {}", e.path()), e.into_inner().to_string())
        })?;
        settings.check(&|key| format!("{name}: {key}"))?;
        Ok(settings)
    }

    /// Checks settings built in code; errors name the YAML key.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.check(&str::to_owned)
    }

    /// Every declared setting, for the README's table.
    pub fn table() -> String {
        declare::table(&Self::declarations())
    }
}
