use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which wire format the backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmApi {
    /// Ollama's native `/api/chat` (NDJSON).
    Ollama,
    /// `/v1/chat/completions` (SSE): vLLM, llama.cpp, LM Studio, gateways, Ollama's `/v1`.
    Openai,
}

impl std::str::FromStr for LlmApi {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ollama" => Ok(LlmApi::Ollama),
            "openai" | "openai-compatible" => Ok(LlmApi::Openai),
            other => Err(format!(
                "'{other}' is not a backend API; use 'ollama' or 'openai'"
            )),
        }
    }
}

/// How structured output is asked of an OpenAI-compatible server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenAiJsonMode {
    /// `response_format: {type: "json_schema", json_schema: {schema}}`, the standard form.
    #[default]
    JsonSchema,
    /// `response_format: {type: "json_object", schema}`, for servers that reject the standard form
    /// (llama-cpp-python's server answers 500 to it).
    JsonObject,
}

impl std::str::FromStr for OpenAiJsonMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json_schema" => Ok(OpenAiJsonMode::JsonSchema),
            "json_object" => Ok(OpenAiJsonMode::JsonObject),
            other => Err(format!(
                "'{other}' is not a JSON mode; use 'json_schema' or 'json_object'"
            )),
        }
    }
}

/// LLM backend settings (the `llm:` section of the config file, or `OLLAMA_*`/`ROOMHOST_*` env).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    pub api: LlmApi,
    /// One or more endpoints; calls go to the least busy one.
    pub base_urls: Vec<String>,
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// In-flight calls per endpoint; match it to the backend's parallel slots (`OLLAMA_NUM_PARALLEL`).
    pub max_concurrency: usize,
    /// Calls that may wait for a slot, over all endpoints; past that a call fails at once.
    pub max_queue: usize,
    pub connect_timeout_secs: f64,
    /// Until the response starts; long, since a cold model load takes tens of seconds.
    pub first_byte_timeout_secs: f64,
    /// Between two chunks of a streaming response.
    pub idle_timeout_secs: f64,
    /// The whole call, queueing excluded.
    pub request_timeout_secs: f64,
    pub max_retries: u32,
    pub retry_base_delay_ms: u64,
    /// Structured-output form for the OpenAI-compatible API.
    pub openai_json_mode: OpenAiJsonMode,
    /// Send JSON schemas to the backend; off for one that mishandles them (answers are still
    /// asked for as JSON in the prompt, and read from prose when they are not).
    pub structured_output: bool,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            api: LlmApi::Ollama,
            base_urls: vec!["http://localhost:11434".into()],
            api_key: None,
            max_concurrency: 4,
            max_queue: 256,
            connect_timeout_secs: 10.0,
            first_byte_timeout_secs: 180.0,
            idle_timeout_secs: 60.0,
            request_timeout_secs: 600.0,
            max_retries: 2,
            retry_base_delay_ms: 250,
            openai_json_mode: OpenAiJsonMode::JsonSchema,
            structured_output: true,
        }
    }
}

impl LlmSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_secs)
    }
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.first_byte_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_secs)
    }
    pub fn retry_base_delay(&self) -> Duration {
        Duration::from_millis(self.retry_base_delay_ms)
    }
}

/// Turns `OLLAMA_HOST`-style values (`0.0.0.0`, `host:port`, `https://host`) into a base URL.
pub fn normalize_base_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    if raw.is_empty() {
        return Err("empty URL".into());
    }
    let (scheme, rest) = match raw.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some((s, _)) => {
            return Err(format!(
                "'{raw}': unsupported scheme '{s}' (use http or https)"
            ))
        }
        None => ("http", raw),
    };
    let (host_port, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if host_port.is_empty() {
        return Err(format!("'{raw}': no host"));
    }
    // A bind-all address names this machine when used as a client target.
    let host_port = host_port.replacen("0.0.0.0", "127.0.0.1", 1);
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        && !host_port.ends_with(']');
    let default_port = if scheme == "https" { "" } else { ":11434" };
    let port = if has_port || scheme == "https" || !path.is_empty() {
        ""
    } else {
        default_port
    };
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    let url = format!("{scheme}://{host_port}{port}{path}");
    reqwest::Url::parse(&url).map_err(|e| format!("'{raw}': {e}"))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::normalize_base_url as n;

    #[test]
    fn ollama_host_forms() {
        assert_eq!(n("0.0.0.0").unwrap(), "http://127.0.0.1:11434");
        assert_eq!(n("localhost:11434").unwrap(), "http://localhost:11434");
        assert_eq!(n("http://ollama:11434/").unwrap(), "http://ollama:11434");
        assert_eq!(
            n("https://gw.example.com/v1").unwrap(),
            "https://gw.example.com/v1"
        );
        assert_eq!(n("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        assert!(n("ftp://x").is_err());
        assert!(n(" ").is_err());
    }
}
