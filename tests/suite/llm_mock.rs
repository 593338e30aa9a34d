//! The mock LLM server itself: both wire formats, the auto answers, the HTTP control endpoints.

use std::time::Duration;

use crate::support::harness::eventually;
use crate::support::mock_llm::{MockLlm, MockReply};
use serde_json::{json, Value};

async fn post(url: String, body: Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("mock answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

#[tokio::test]
async fn ollama_stream_echoes_the_prompt_and_ends_with_done() {
    let mock = MockLlm::start().await;
    let (status, body) = post(
        format!("{}/api/chat", mock.url()),
        json!({"model": "m", "messages": [{"role": "user", "content": "tell me about cats"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let text: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert!(text.starts_with("tell me about cats:"), "{text}");
    let last = lines.last().expect("a final line");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(mock.request_count(), 1);
    assert_eq!(mock.requests()[0].last_user(), Some("tell me about cats"));
}

#[tokio::test]
async fn openai_stream_has_usage_and_done_marker() {
    let mock = MockLlm::start().await;
    mock.push(MockReply::new().text("a b c").usage(7, 3));
    let (status, body) = post(
        format!("{}/v1/chat/completions", mock.url()),
        json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let events: Vec<&str> = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("JSON event"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "a b c");
    assert_eq!(chunks.last().expect("usage")["usage"]["prompt_tokens"], 7);
}

#[tokio::test]
async fn schema_answers_are_valid_and_enums_follow_the_seed() {
    let mock = MockLlm::start().await;
    let schema = json!({"type": "object", "properties": {
        "strategy": {"type": "string", "enum": ["a", "b", "c"]},
        "tasks": {"type": "array", "items": {"type": "string"}},
        "n": {"type": "integer", "minimum": 2},
        "ok": {"type": "boolean"}
    }, "required": ["strategy", "tasks", "n", "ok"]});
    let (_, body) = post(
        format!("{}/v1/chat/completions", mock.url()),
        json!({"model": "m", "seed": 4, "response_format": {"type": "json_schema",
               "json_schema": {"name": "x", "schema": schema}},
               "messages": [{"role": "user", "content": "plan a trip"}]}),
    )
    .await;
    let whole: Value = serde_json::from_str(&body).expect("non-streamed JSON");
    let content = whole["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    let answer: Value = serde_json::from_str(content).expect("content is JSON");
    assert_eq!(answer["strategy"], "b");
    assert_eq!(answer["tasks"].as_array().map(Vec::len), Some(3));
    assert_eq!(answer["n"], 2);
    assert_eq!(answer["ok"], true);
}

#[tokio::test]
async fn status_errors_use_each_api_shape() {
    let mock = MockLlm::start().await;
    mock.push(MockReply::new().status(404, "model 'x' not found"));
    mock.push(MockReply::new().status(503, "busy"));
    let (s1, b1) = post(format!("{}/api/chat", mock.url()), json!({"model": "x"})).await;
    let (s2, b2) = post(
        format!("{}/v1/chat/completions", mock.url()),
        json!({"model": "x"}),
    )
    .await;
    assert_eq!((s1, s2), (404, 503));
    assert_eq!(
        serde_json::from_str::<Value>(&b1).expect("json")["error"],
        "model 'x' not found"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&b2).expect("json")["error"]["message"],
        "busy"
    );
}

#[tokio::test]
async fn a_client_leaving_a_hung_reply_is_a_disconnect() {
    let mock = MockLlm::start().await;
    mock.push(MockReply::new().text("one two").hang());
    let resp = reqwest::Client::new()
        .post(format!("{}/api/chat", mock.url()))
        .json(&json!({"model": "m"}))
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(mock.in_flight(), 1);
    drop(resp);
    eventually("the mock sees the disconnect", || mock.disconnects() == 1).await;
    assert_eq!(mock.in_flight(), 0);
}

#[tokio::test]
async fn http_control_scripts_failures_and_reports_stats() {
    let mock = MockLlm::start().await;
    let http = reqwest::Client::new();
    let mode = http
        .post(format!("{}/_mock/mode", mock.url()))
        .json(&json!({"mode": "fail_status", "status": 503, "fail_every": 2}))
        .send()
        .await
        .expect("mode set");
    assert_eq!(mode.status().as_u16(), 204);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            post(format!("{}/api/chat", mock.url()), json!({"model": "m"}))
                .await
                .0,
        );
    }
    assert_eq!(statuses, [200, 503, 200, 503]);
    let stats: Value = http
        .get(format!("{}/_mock/stats", mock.url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["in_flight"], 0);
    http.post(format!("{}/_mock/reset", mock.url()))
        .send()
        .await
        .expect("reset");
    assert_eq!(mock.request_count(), 0);
    assert_eq!(
        post(format!("{}/api/chat", mock.url()), json!({"model": "m"}))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn stop_refuses_new_connections() {
    let mock = MockLlm::start().await;
    mock.stop();
    let url = format!("{}/", mock.url());
    wait_until_async(|| {
        let url = url.clone();
        async move { reqwest::get(url).await.is_err() }
    })
    .await;
}

async fn wait_until_async<F: std::future::Future<Output = bool>>(cond: impl Fn() -> F) {
    for _ in 0..200 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 2 s");
}
