//! Building LLM clients against the mock, and draining their streams.

use futures::StreamExt;
use roomhost::config::LlmConfig;
use roomhost::llm::{
    build_client, ChatChunk, ChatMessage, ChatRequest, ChatStream, Completion, LlmApi, LlmClient,
    LlmError, LlmSettings,
};
use std::sync::Arc;
use std::time::Duration;

use super::mock_llm::MockLlm;

pub const BOTH_APIS: [LlmApi; 2] = [LlmApi::Ollama, LlmApi::Openai];

/// Settings for the given mocks with quick retries; tests change what they exercise.
pub fn settings(mocks: &[&MockLlm], api: LlmApi) -> LlmSettings {
    LlmSettings {
        api,
        base_urls: mocks.iter().map(|m| m.url()).collect(),
        retry_base_delay: Duration::from_millis(1),
        ..LlmConfig::default().settings()
    }
}

pub fn client(settings: &LlmSettings) -> Arc<dyn LlmClient> {
    build_client(settings).expect("valid test settings")
}

pub fn ask(prompt: &str) -> ChatRequest {
    ChatRequest::new("mock", vec![ChatMessage::user(prompt)])
}

/// Everything one call streamed.
#[derive(Debug)]
pub struct Outcome {
    pub content: String,
    pub thinking: String,
    /// Content and thinking chunks, in order.
    pub chunks: usize,
    pub result: Result<Completion, LlmError>,
}

pub async fn drain(mut stream: ChatStream) -> Outcome {
    let mut outcome = Outcome {
        content: String::new(),
        thinking: String::new(),
        chunks: 0,
        result: Err(LlmError::Truncated),
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(ChatChunk::Content(c)) => {
                outcome.chunks += 1;
                outcome.content.push_str(&c);
            }
            Ok(ChatChunk::Thinking(t)) => {
                outcome.chunks += 1;
                outcome.thinking.push_str(&t);
            }
            Ok(ChatChunk::Done(done)) => {
                outcome.result = Ok(done);
                assert!(stream.next().await.is_none(), "nothing follows Done");
                return outcome;
            }
            Err(e) => {
                outcome.result = Err(e);
                assert!(stream.next().await.is_none(), "nothing follows an error");
                return outcome;
            }
        }
    }
    panic!("the stream ended without Done or an error");
}

/// Opens a call and drains it; an error opening it lands in `result`.
pub async fn call(client: &dyn LlmClient, request: ChatRequest) -> Outcome {
    match client.chat_stream(request).await {
        Ok(stream) => drain(stream).await,
        Err(e) => Outcome {
            content: String::new(),
            thinking: String::new(),
            chunks: 0,
            result: Err(e),
        },
    }
}
