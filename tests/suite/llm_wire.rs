//! The LLM client on the wire: what it sends and how it decodes both formats, byte for byte.

use std::time::Duration;

use crate::support::llm_calls::{ask, call, client, settings, BOTH_APIS};
use crate::support::mock_llm::{MockLlm, MockReply};
use roomhost::llm::{ChatRequest, LlmApi, LlmError, OpenAiJsonMode, Think, ThinkLevel, Usage};
use serde_json::json;

#[tokio::test]
async fn text_streams_in_chunks_and_ends_with_done() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(MockReply::new().text("The capital is Paris."));
        let out = call(&*client(&settings(&[&mock], api)), ask("capital?")).await;
        let done = out.result.expect("a complete answer");
        assert_eq!(out.content, "The capital is Paris.", "{api:?}");
        assert_eq!(out.chunks, 4, "{api:?}");
        assert_eq!(done.done_reason.as_deref(), Some("stop"), "{api:?}");
        assert_eq!(mock.request_count(), 1);
    }
}

#[tokio::test]
async fn thinking_is_kept_apart_from_content() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(MockReply::new().thinking("let me see").text("42"));
        let out = call(&*client(&settings(&[&mock], api)), ask("q")).await;
        out.result.expect("complete");
        assert_eq!(out.thinking, "let me see", "{api:?}");
        assert_eq!(out.content, "42", "{api:?}");
    }
}

/// One OpenAI streaming chunk carrying `delta`, as its SSE frame.
fn openai_delta(delta: serde_json::Value) -> Vec<u8> {
    format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": delta}]})
    )
    .into_bytes()
}

#[tokio::test]
async fn openai_reasoning_field_counts_as_thinking() {
    let mock = MockLlm::start().await;
    mock.push(MockReply::new().raw(vec![
        openai_delta(json!({"reasoning": "hmm"})),
        openai_delta(json!({"content": "yes"})),
        b"data: [DONE]\n\n".to_vec(),
    ]));
    let out = call(&*client(&settings(&[&mock], LlmApi::Openai)), ask("q")).await;
    out.result.expect("complete");
    assert_eq!(
        (out.thinking.as_str(), out.content.as_str()),
        ("hmm", "yes")
    );
}

/// A read boundary inside a line and inside a multi-byte character.
#[tokio::test]
async fn split_lines_and_split_characters_decode_exactly() {
    let text = "héllo — wörld ✓";
    for api in BOTH_APIS {
        let body = match api {
            LlmApi::Ollama => format!(
                "{}\n{}\n",
                json!({"message": {"role": "assistant", "content": text}, "done": false}),
                json!({"message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop"}),
            ),
            LlmApi::Openai => format!(
                "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                json!({"choices": [{"index": 0, "delta": {"content": text}}]}),
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            ),
        };
        let bytes = body.as_bytes();
        let in_e_acute = body.find('é').expect("é in body") + 1;
        let in_dash = body.find('—').expect("— in body") + 2;
        let in_second_line = body.find('\n').expect("a newline") + 5;
        let mock = MockLlm::start().await;
        mock.push(
            MockReply::new()
                .raw(vec![
                    bytes[..in_e_acute].to_vec(),
                    bytes[in_e_acute..in_dash].to_vec(),
                    bytes[in_dash..in_second_line].to_vec(),
                    bytes[in_second_line..].to_vec(),
                ])
                .chunk_delay(Duration::from_millis(20)),
        );
        let out = call(&*client(&settings(&[&mock], api)), ask("q")).await;
        out.result.expect("complete");
        assert_eq!(out.content, text, "{api:?}");
    }
}

#[tokio::test]
async fn an_error_mid_stream_fails_the_call_after_the_chunks_before_it() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(
            MockReply::new()
                .text("one two three four")
                .error_after(2, "out of memory"),
        );
        let out = call(&*client(&settings(&[&mock], api)), ask("q")).await;
        assert_eq!(out.content, "one two ", "{api:?}");
        match out.result {
            Err(LlmError::MidStream(msg)) => assert_eq!(msg, "out of memory", "{api:?}"),
            other => panic!("{api:?}: expected MidStream, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stream_ending_without_its_final_chunk_is_truncated() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(MockReply::new().text("one two three").truncate_after(2));
        let out = call(&*client(&settings(&[&mock], api)), ask("q")).await;
        assert_eq!(out.content, "one two ", "{api:?}");
        assert!(
            matches!(out.result, Err(LlmError::Truncated)),
            "{api:?}: {:?}",
            out.result
        );
    }
}

#[tokio::test]
async fn length_with_no_content_is_an_error_and_with_content_a_reason() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(
            MockReply::new()
                .thinking("thinking on and on")
                .done_reason("length"),
        );
        mock.push(MockReply::new().text("cut sho").done_reason("length"));
        let client = client(&settings(&[&mock], api));
        let empty = call(&*client, ask("q")).await;
        assert!(
            matches!(empty.result, Err(LlmError::EmptyLength)),
            "{api:?}: {:?}",
            empty.result
        );
        let partial = call(&*client, ask("q")).await;
        let done = partial.result.expect("content was produced");
        assert_eq!(done.done_reason.as_deref(), Some("length"), "{api:?}");
        assert_eq!(partial.content, "cut sho");
    }
}

#[tokio::test]
async fn ollama_skips_a_load_acknowledgement() {
    let mock = MockLlm::start().await;
    let line = |v: serde_json::Value| format!("{v}\n").into_bytes();
    mock.push(MockReply::new().raw(vec![
        line(json!({"message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "load"})),
        line(json!({"message": {"role": "assistant", "content": "hi"}, "done": false})),
        line(json!({"message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop"})),
    ]));
    let out = call(&*client(&settings(&[&mock], LlmApi::Ollama)), ask("q")).await;
    assert_eq!(
        out.result.expect("complete").done_reason.as_deref(),
        Some("stop")
    );
    assert_eq!(out.content, "hi");
}

#[tokio::test]
async fn unreadable_and_oversized_lines_are_protocol_errors() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(MockReply::new().text("fine").garbage_line());
        mock.push(
            MockReply::new()
                .text("fine")
                .oversized_line(3 * 1024 * 1024),
        );
        let client = client(&settings(&[&mock], api));
        for what in ["garbage", "oversized"] {
            let out = call(&*client, ask("q")).await;
            assert!(
                matches!(out.result, Err(LlmError::Protocol(_))),
                "{api:?} {what}: {:?}",
                out.result
            );
        }
        assert_eq!(mock.request_count(), 2, "protocol errors are not retried");
    }
}

#[tokio::test]
async fn usage_is_reported_per_call_and_sums() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        let client = client(&settings(&[&mock], api));
        let mut total = Usage::default();
        for _ in 0..3 {
            mock.push(MockReply::new().text("a b").usage(10, 4));
            let done = call(&*client, ask("q")).await.result.expect("complete");
            assert!(!done.usage.total_duration.is_zero(), "{api:?}");
            total += done.usage;
        }
        assert_eq!(
            (total.prompt_tokens, total.completion_tokens),
            (30, 12),
            "{api:?}"
        );
    }
}

#[tokio::test]
async fn openai_without_usage_counts_the_deltas() {
    let mock = MockLlm::start().await;
    mock.push(MockReply::new().raw(vec![
        openai_delta(json!({"role": "assistant"})),
        openai_delta(json!({"reasoning_content": "so"})),
        openai_delta(json!({"content": "a"})),
        openai_delta(json!({"content": "b"})),
        b"data: [DONE]\n\n".to_vec(),
    ]));
    let out = call(&*client(&settings(&[&mock], LlmApi::Openai)), ask("q")).await;
    let usage = out.result.expect("complete").usage;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (0, 3));
}

#[tokio::test]
async fn model_not_found_says_to_pull_and_a_wrong_path_says_so() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(MockReply::new().status(404, "model 'nope' not found"));
        mock.push(MockReply::new().status(404, "404 page not found"));
        let client = client(&settings(&[&mock], api));
        let mut request = ask("q");
        request.model = "nope".into();
        let missing = call(&*client, request).await.result.expect_err("404");
        assert!(matches!(missing, LlmError::ModelNotFound { .. }), "{api:?}");
        assert!(
            missing.to_string().contains("ollama pull nope"),
            "{missing}"
        );
        let wrong = call(&*client, ask("q")).await.result.expect_err("404");
        assert!(
            matches!(&wrong, LlmError::Status { status: 404, message } if message.contains("backend API setting")),
            "{api:?}: {wrong}"
        );
    }
}

/// A model without a thinking mode refuses `think` (Ollama) or `reasoning_effort` (an
/// OpenAI-compatible server): the call is sent once more without it and succeeds, and later calls
/// to the same model and endpoint leave it out from the start. Another model still gets it.
#[tokio::test]
async fn a_model_that_refuses_thinking_is_called_without_it_from_then_on() {
    for (api, refusal) in [
        (LlmApi::Ollama, "\"mock\" does not support thinking"),
        (
            LlmApi::Openai,
            "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
        ),
    ] {
        let mock = MockLlm::start().await;
        mock.respond_with(move |req| {
            if req.think.is_some() && req.model == "mock" {
                MockReply::new().status(400, refusal)
            } else {
                MockReply::new().text("hello")
            }
        });
        let client = client(&settings(&[&mock], api));
        let thinking = |model: &str| {
            let mut request = ask("q");
            request.model = model.into();
            request.think = Some(Think::Level(ThinkLevel::Low));
            request
        };
        for _ in 0..2 {
            let out = call(&*client, thinking("mock")).await;
            out.result.expect("the call succeeds without thinking");
            assert_eq!(out.content, "hello", "{api:?}");
        }
        call(&*client, thinking("other")).await.result.expect("ok");
        let sent: Vec<bool> = mock.requests().iter().map(|r| r.think.is_some()).collect();
        assert_eq!(sent, [true, false, false, true], "{api:?}");
    }
}

#[tokio::test]
async fn other_400s_are_not_retried_without_thinking() {
    let mock = MockLlm::start().await;
    mock.push(MockReply::new().status(400, "invalid format"));
    let client = client(&settings(&[&mock], LlmApi::Ollama));
    let mut request = ask("q");
    request.think = Some(Think::Level(ThinkLevel::Low));
    let err = call(&*client, request).await.result.expect_err("400");
    assert!(matches!(err, LlmError::Status { status: 400, .. }), "{err}");
    assert_eq!(mock.request_count(), 1, "a 400 is not retried");
}

fn full_request() -> ChatRequest {
    let mut request = ask("q");
    request.options.temperature = Some(0.5);
    request.options.top_p = Some(0.9);
    request.options.seed = Some(7);
    request.options.num_ctx = Some(8192);
    request.options.max_tokens = Some(300);
    request.options.stop = vec!["END".into()];
    request.format = Some(json!({"type": "object", "properties": {"a": {"type": "string"}}}));
    request.think = Some(Think::Level(ThinkLevel::Low));
    request
}

#[tokio::test]
async fn ollama_request_carries_options_format_and_think() {
    let mock = MockLlm::start().await;
    let out = call(
        &*client(&settings(&[&mock], LlmApi::Ollama)),
        full_request(),
    )
    .await;
    out.result.expect("complete");
    let body = &mock.requests()[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["think"], "low");
    assert_eq!(body["format"]["properties"]["a"]["type"], "string");
    assert_eq!(
        body["options"],
        json!({"temperature": 0.5, "top_p": 0.9, "seed": 7, "num_ctx": 8192,
               "num_predict": 300, "stop": ["END"]})
    );
    assert_eq!(body["messages"], json!([{"role": "user", "content": "q"}]));
}

#[tokio::test]
async fn openai_request_carries_options_response_format_reasoning_and_key() {
    for (mode, expected_type) in [
        (OpenAiJsonMode::JsonSchema, "json_schema"),
        (OpenAiJsonMode::JsonObject, "json_object"),
    ] {
        let mock = MockLlm::start().await;
        let mut settings = settings(&[&mock], LlmApi::Openai);
        settings.openai_json_mode = mode;
        settings.api_key = Some("sk-test".into());
        let out = call(&*client(&settings), full_request()).await;
        out.result.expect("complete");
        let seen = &mock.requests()[0];
        let body = &seen.body;
        assert_eq!(seen.authorization.as_deref(), Some("Bearer sk-test"));
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], 300);
        assert_eq!(body["seed"], 7);
        assert_eq!(body["stop"], json!(["END"]));
        assert_eq!(body["reasoning_effort"], "low");
        assert!(body.get("num_ctx").is_none() && body.get("options").is_none());
        assert_eq!(body["response_format"]["type"], expected_type);
        let schema = seen.schema().expect("the mock finds the schema");
        assert_eq!(schema["properties"]["a"]["type"], "string");
    }
}

#[tokio::test]
async fn openai_base_url_may_end_in_v1() {
    let mock = MockLlm::start().await;
    let mut settings = settings(&[&mock], LlmApi::Openai);
    settings.base_urls = vec![format!("{}/v1", mock.url())];
    let client = client(&settings);
    call(&*client, ask("q")).await.result.expect("complete");
    client.health().await.expect("healthy");
    assert_eq!(mock.requests()[0].path, "/v1/chat/completions");
}

#[tokio::test]
async fn health_answers_while_the_backend_runs() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        let client = client(&settings(&[&mock], api));
        client.health().await.expect("healthy");
        mock.stop();
        // A pooled connection may be found closed before a new one is refused.
        let down = client.health().await.expect_err("backend stopped");
        assert!(
            matches!(
                down,
                LlmError::Connect { .. } | LlmError::Disconnected { .. }
            ),
            "{api:?}: {down}"
        );
        assert_eq!(
            client.provider(),
            if api == LlmApi::Ollama {
                "ollama"
            } else {
                "openai"
            }
        );
    }
}
