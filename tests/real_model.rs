//! The LLM client against a real model server (llama-cpp-python + SmolLM2-135M), started by
//! `scripts/with-real-model.sh`. Asserts structure, never wording.
#![cfg(feature = "real-model")]

mod support;

use futures::StreamExt;
use roomhost::llm::{ChatChunk, ChatMessage, ChatRequest, LlmApi, LlmSettings, OpenAiJsonMode};
use serde_json::{json, Value};
use support::harness::real_llm;
use support::llm_calls::{call, client};

fn real_settings() -> (LlmSettings, String) {
    let (url, model) = real_llm();
    let settings = LlmSettings {
        api: LlmApi::Openai,
        base_urls: vec![url],
        // llama-cpp-python's server answers 500 to the standard json_schema form.
        openai_json_mode: OpenAiJsonMode::JsonObject,
        max_concurrency: 1,
        ..LlmSettings::default()
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

#[tokio::test]
async fn streams_text_and_counts_usage() {
    let (settings, model) = real_settings();
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
    assert_eq!(client.load().in_flight, 0);
}

#[tokio::test]
async fn structured_output_parses_and_has_the_schema_keys() {
    let (settings, model) = real_settings();
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

#[tokio::test]
async fn dropping_a_stream_mid_way_frees_the_slot_for_the_next_call() {
    let (settings, model) = real_settings();
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
