//! Ollama's native `POST /api/chat`: NDJSON, one object per line, the last with `done: true`.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire::{error_message, parse_json, Decoder, Wire};
use super::{ChatChunk, ChatMessage, ChatRequest, Completion, LlmError, Think, Usage};

pub(crate) struct Ollama;

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<Think>,
    options: Options<'a>,
}

#[derive(Serialize)]
struct Options<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_ctx: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
}

impl Wire for Ollama {
    fn provider(&self) -> &'static str {
        "ollama"
    }

    fn chat_url(&self, base: &str) -> String {
        format!("{base}/api/chat")
    }

    fn health_url(&self, base: &str) -> String {
        format!("{base}/api/tags")
    }

    fn body(&self, request: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        let o = &request.options;
        let body = Body {
            model: &request.model,
            messages: &request.messages,
            stream: true,
            format: request.format.as_ref(),
            think: request.think,
            options: Options {
                temperature: o.temperature,
                top_p: o.top_p,
                seed: o.seed,
                num_ctx: o.num_ctx,
                num_predict: o.max_tokens,
                stop: &o.stop,
            },
        };
        serde_json::to_vec(&body)
            .map_err(|e| LlmError::Protocol(format!("cannot encode the request: {e}")))
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(OllamaDecoder::default())
    }
}

/// One NDJSON line: a chunk, the final chunk, or an error. Metrics are left out when zero.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    /// Nanoseconds.
    #[serde(default)]
    total_duration: Option<u64>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: String,
    #[serde(default)]
    thinking: Option<String>,
}

#[derive(Default)]
struct OllamaDecoder {
    saw_content: bool,
}

impl Decoder for OllamaDecoder {
    fn line(&mut self, line: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<(), LlmError> {
        if line.trim_ascii().is_empty() {
            return Ok(());
        }
        let line: Line = parse_json(line)?;
        if let Some(error) = &line.error {
            return Err(LlmError::MidStream(error_message(error)));
        }
        // The acknowledgement of a model load carries no answer.
        if line.done && line.done_reason.as_deref() == Some("load") {
            return Ok(());
        }
        if let Some(message) = line.message {
            if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
                out.push_back(ChatChunk::Thinking(thinking));
            }
            if !message.content.is_empty() {
                self.saw_content = true;
                out.push_back(ChatChunk::Content(message.content));
            }
        }
        if line.done {
            if line.done_reason.as_deref() == Some("length") && !self.saw_content {
                return Err(LlmError::EmptyLength);
            }
            out.push_back(ChatChunk::Done(Completion {
                done_reason: line.done_reason,
                usage: Usage {
                    prompt_tokens: line.prompt_eval_count.unwrap_or(0),
                    completion_tokens: line.eval_count.unwrap_or(0),
                    reasoning_tokens: 0,
                    total_duration: Duration::from_nanos(line.total_duration.unwrap_or(0)),
                    ..Usage::default()
                },
            }));
        }
        Ok(())
    }
}
