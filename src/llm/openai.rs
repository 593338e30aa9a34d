//! The OpenAI-compatible `POST /v1/chat/completions` with `stream: true`: SSE events until
//! `data: [DONE]`. Served by vLLM, llama.cpp, LM Studio, gateways and Ollama's `/v1`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::lines::MAX_LINE_BYTES;
use super::wire::{error_message, parse_json, Decoder, Wire};
use super::{
    ChatChunk, ChatMessage, ChatRequest, Completion, LlmError, OpenAiJsonMode, Think, ThinkLevel,
    Usage,
};

pub(crate) struct OpenAi {
    pub(crate) json_mode: OpenAiJsonMode,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl OpenAi {
    fn response_format(&self, schema: &Value) -> Value {
        match self.json_mode {
            OpenAiJsonMode::JsonSchema => json!({
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": schema},
            }),
            OpenAiJsonMode::JsonObject => json!({"type": "json_object", "schema": schema}),
        }
    }
}

/// `think: false` sends nothing: not every server knows `"none"`, and leaving it out asks for no
/// reasoning.
fn reasoning_effort(think: Think) -> Option<&'static str> {
    match think {
        Think::Enabled(false) => None,
        Think::Enabled(true) | Think::Level(ThinkLevel::Medium) => Some("medium"),
        Think::Level(ThinkLevel::Low) => Some("low"),
        Think::Level(ThinkLevel::High) => Some("high"),
    }
}

/// Appends the API path, whether or not the configured base already ends in `/v1`.
fn v1(base: &str, path: &str) -> String {
    if base.ends_with("/v1") {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    }
}

impl Wire for OpenAi {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn chat_url(&self, base: &str) -> String {
        v1(base, "chat/completions")
    }

    fn health_url(&self, base: &str) -> String {
        v1(base, "models")
    }

    fn body(&self, request: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        let o = &request.options;
        let body = Body {
            model: &request.model,
            messages: &request.messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            temperature: o.temperature,
            top_p: o.top_p,
            seed: o.seed,
            max_tokens: o.max_tokens,
            stop: &o.stop,
            response_format: request.format.as_ref().map(|s| self.response_format(s)),
            reasoning_effort: request.think.and_then(reasoning_effort),
        };
        serde_json::to_vec(&body)
            .map_err(|e| LlmError::Protocol(format!("cannot encode the request: {e}")))
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(SseDecoder::default())
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<UsageJson>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// Reasoning is `reasoning` on Ollama and `reasoning_content` on vLLM and llama.cpp.
#[derive(Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

/// SSE: `data:` lines gather into one event until a blank line; comments and other fields are
/// skipped. The finish reason and usage come in separate events before `[DONE]`.
#[derive(Default)]
struct SseDecoder {
    data: Vec<u8>,
    saw_content: bool,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// Content and reasoning deltas received: servers stream one token per delta, so this stands
    /// in for the completion count when no usage is sent (llama-cpp-python ignores
    /// `include_usage`).
    deltas: u64,
}

impl SseDecoder {
    fn dispatch(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), LlmError> {
        let data = std::mem::take(&mut self.data);
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(());
        }
        if data == b"[DONE]" {
            if self.finish_reason.as_deref() == Some("length") && !self.saw_content {
                return Err(LlmError::EmptyLength);
            }
            let usage = self.usage.unwrap_or(Usage {
                completion_tokens: self.deltas,
                ..Usage::default()
            });
            out.push_back(ChatChunk::Done(Completion {
                done_reason: self.finish_reason.take(),
                usage,
            }));
            return Ok(());
        }
        let event: Event = parse_json(data)?;
        if let Some(error) = &event.error {
            return Err(LlmError::MidStream(error_message(error)));
        }
        if let Some(usage) = event.usage {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                reasoning_tokens: usage
                    .completion_tokens_details
                    .map_or(0, |d| d.reasoning_tokens),
                ..Usage::default()
            });
        }
        if let Some(choice) = event.choices.into_iter().next() {
            let delta = choice.delta;
            if let Some(thinking) = delta
                .reasoning_content
                .or(delta.reasoning)
                .filter(|t| !t.is_empty())
            {
                self.deltas += 1;
                out.push_back(ChatChunk::Thinking(thinking));
            }
            if let Some(content) = delta.content.filter(|c| !c.is_empty()) {
                self.deltas += 1;
                self.saw_content = true;
                out.push_back(ChatChunk::Content(content));
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }
}

impl Decoder for SseDecoder {
    fn line(&mut self, line: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<(), LlmError> {
        if line.is_empty() {
            return self.dispatch(out);
        }
        let Some(value) = line.strip_prefix(b"data:") else {
            // Comments (`: ping`) and the fields `event:`, `id:`, `retry:` carry nothing for us.
            return Ok(());
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if !self.data.is_empty() {
            self.data.push(b'\n');
        }
        if self.data.len() + value.len() > MAX_LINE_BYTES {
            return Err(LlmError::Protocol(format!(
                "an SSE event longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        self.data.extend_from_slice(value);
        Ok(())
    }

    fn end(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), LlmError> {
        self.dispatch(out)
    }
}
