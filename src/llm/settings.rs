use std::fmt;
use std::num::NonZeroUsize;
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

impl fmt::Display for LlmApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LlmApi::Ollama => "ollama",
            LlmApi::Openai => "openai",
        })
    }
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

impl fmt::Display for OpenAiJsonMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenAiJsonMode::JsonSchema => "json_schema",
            OpenAiJsonMode::JsonObject => "json_object",
        })
    }
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

/// What the client needs, typed and already checked by whoever built it (the server's config).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    pub api: LlmApi,
    /// One or more base URLs (see [`normalize_base_url`]); calls go to the least busy one.
    pub base_urls: Vec<String>,
    /// Sent as a bearer token.
    pub api_key: Option<String>,
    /// In-flight calls per endpoint.
    pub max_concurrency: NonZeroUsize,
    /// Calls that may wait for a slot, over all endpoints; past that a call fails at once.
    pub max_queue: usize,
    pub connect_timeout: Duration,
    /// Until the response starts.
    pub first_byte_timeout: Duration,
    /// Between two chunks of a streaming response.
    pub idle_timeout: Duration,
    /// The whole call, queueing excluded.
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub openai_json_mode: OpenAiJsonMode,
    /// Send JSON schemas to the backend; off for one that mishandles them (answers are still
    /// asked for as JSON in the prompt, and read from prose when they are not).
    pub structured_output: bool,
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
