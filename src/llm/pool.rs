use std::sync::Arc;

use async_trait::async_trait;

use super::{ChatRequest, ChatStream, LlmClient, LlmError, LlmSettings};
use crate::config::ConfigError;

/// Builds the configured client (placeholder until the backends land).
pub fn build_client(settings: &LlmSettings) -> Result<Arc<dyn LlmClient>, ConfigError> {
    Ok(Arc::new(Placeholder {
        url: settings.base_urls.first().cloned().unwrap_or_default(),
    }))
}

struct Placeholder {
    url: String,
}

#[async_trait]
impl LlmClient for Placeholder {
    async fn chat_stream(&self, _request: ChatRequest) -> Result<ChatStream, LlmError> {
        Err(LlmError::Connect {
            url: self.url.clone(),
            detail: "no backend yet".into(),
        })
    }
    async fn health(&self) -> Result<(), LlmError> {
        Err(LlmError::Connect {
            url: self.url.clone(),
            detail: "no backend yet".into(),
        })
    }
    fn provider(&self) -> &str {
        "none"
    }
}
