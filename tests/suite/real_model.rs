//! The LLM client against a real model (SmolLM2-135M) through both wire formats: llama-cpp-python's
//! OpenAI-compatible server and the Ollama-native shim (`scripts/ollama_shim.py`), both started by
//! `scripts/with-real-model.sh`. Asserts structure, never wording.
#![cfg(feature = "real-model")]

use crate::support::harness::{real_llm, real_ollama, slots};
use crate::support::llm_calls::{call, client};
use futures::StreamExt;
use roomhost::config::LlmConfig;
use roomhost::llm::{
    ChatChunk, ChatMessage, ChatRequest, LlmApi, LlmError, LlmSettings, OpenAiJsonMode, Think,
    ThinkLevel,
};
use serde_json::{json, Value};

fn real_settings(api: LlmApi) -> (LlmSettings, String) {
    let (url, model) = match api {
        LlmApi::Openai => real_llm(),
        LlmApi::Ollama => real_ollama(),
    };
    let settings = LlmSettings {
        api,
        base_urls: vec![url],
        // llama-cpp-python's server answers 500 to the standard json_schema form.
        openai_json_mode: OpenAiJsonMode::JsonObject,
        // Both serve one call at a time.
        max_concurrency: slots(1),
        ..LlmConfig::default().settings()
    };
    (settings, model)
}

fn request(model: &str, prompt: &str, max_tokens: u32) -> ChatRequest {
    let mut request = ChatRequest::new(
        model,
        vec![
            ChatMessage::system("You are a helpful assistant."),
            ChatMessage::user(prompt),
        ],
    );
    request.options.temperature = Some(0.0);
    request.options.seed = Some(1);
    request.options.max_tokens = Some(max_tokens);
    request
}

async fn streams_text_and_counts_usage(api: LlmApi) {
    let (settings, model) = real_settings(api);
    let client = client(&settings);
    let out = call(
        &*client,
        request(
            &model,
            "What is the capital of France? Answer in one sentence.",
            48,
        ),
    )
    .await;
    let done = out.result.expect("the model answers");
    assert!(!out.content.trim().is_empty(), "an answer with text");
    assert!(out.chunks > 1, "streamed in several chunks: {}", out.chunks);
    // llama-cpp-python sends no usage when streaming; the client counts the deltas instead.
    assert!(done.usage.completion_tokens > 0, "{:?}", done.usage);
    if api == LlmApi::Ollama {
        // Ollama reports both counts in its final chunk.
        assert!(done.usage.prompt_tokens > 0, "{:?}", done.usage);
        assert!(done.done_reason.is_some(), "{done:?}");
    }
    assert_eq!(client.load().in_flight, 0);
}

async fn structured_output_parses_and_has_the_schema_keys(api: LlmApi) {
    let (settings, model) = real_settings(api);
    let client = client(&settings);
    let mut req = request(
        &model,
        "Give the capital city of France and its country as JSON.",
        128,
    );
    req.format = Some(json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"]
    }));
    let out = call(&*client, req).await;
    out.result.expect("the model answers");
    let answer: Value = serde_json::from_str(&out.content)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.content));
    for key in ["city", "country"] {
        assert!(answer.get(key).is_some(), "no '{key}' in {answer}");
    }
}

async fn dropping_a_stream_mid_way_frees_the_slot_for_the_next_call(api: LlmApi) {
    let (settings, model) = real_settings(api);
    let client = client(&settings);
    let mut stream = client
        .chat_stream(request(
            &model,
            "Write a long story about a lighthouse.",
            400,
        ))
        .await
        .expect("the call opens");
    let first = stream
        .next()
        .await
        .expect("a first chunk")
        .expect("no error");
    assert!(matches!(first, ChatChunk::Content(_)), "{first:?}");
    drop(stream);
    assert_eq!(client.load().in_flight, 0, "the slot is freed on drop");
    let out = call(&*client, request(&model, "Say hello.", 16)).await;
    out.result.expect("the next call works");
    assert!(!out.content.trim().is_empty());
}

#[tokio::test]
async fn openai_streams_text_and_counts_usage() {
    streams_text_and_counts_usage(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_streams_text_and_counts_usage() {
    streams_text_and_counts_usage(LlmApi::Ollama).await;
}

#[tokio::test]
async fn openai_structured_output_parses_and_has_the_schema_keys() {
    structured_output_parses_and_has_the_schema_keys(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_structured_output_parses_and_has_the_schema_keys() {
    structured_output_parses_and_has_the_schema_keys(LlmApi::Ollama).await;
}

#[tokio::test]
async fn openai_dropping_a_stream_mid_way_frees_the_slot_for_the_next_call() {
    dropping_a_stream_mid_way_frees_the_slot_for_the_next_call(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_dropping_a_stream_mid_way_frees_the_slot_for_the_next_call() {
    dropping_a_stream_mid_way_frees_the_slot_for_the_next_call(LlmApi::Ollama).await;
}

#[tokio::test]
async fn ollama_unknown_model_is_model_not_found() {
    let (settings, _) = real_settings(LlmApi::Ollama);
    let client = client(&settings);
    let out = call(&*client, request("no-such-model:1b", "Say hello.", 8)).await;
    match out.result {
        Err(LlmError::ModelNotFound { model, .. }) => assert_eq!(model, "no-such-model:1b"),
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
    assert_eq!(client.load().in_flight, 0);
}

/// The shim refuses `think` for SmolLM2 as Ollama does for a model without a thinking mode; the
/// client sends the call again without it.
#[tokio::test]
async fn ollama_think_on_a_non_thinking_model_falls_back_to_no_thinking() {
    let (settings, model) = real_settings(LlmApi::Ollama);
    let client = client(&settings);
    for _ in 0..2 {
        let mut req = request(&model, "Say hello.", 8);
        req.think = Some(Think::Level(ThinkLevel::Low));
        let out = call(&*client, req).await;
        out.result.expect("answered without thinking");
        assert!(!out.content.trim().is_empty());
    }
}
