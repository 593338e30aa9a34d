//! Errors before the stream starts: status plus `{"error": {code, message}}`; health routes;
//! the soliplex-compatible run routes.

use crate::support::harness::{test_settings, verify_agui, RunResult, TempDir, TestServer};
use crate::support::test_agent;
use serde_json::{json, Value};

async fn server() -> TestServer {
    let dir = TempDir::with_rooms(&[&test_agent::room("echo", 2, 0, false)]);
    // Credentials in the URL must never reach a client.
    let mut settings = test_settings("http://user:secret@127.0.0.1:9", dir.path.clone());
    settings.body_limit_bytes = 4096;
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

async fn post_raw(
    server: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = TestServer::client()
        .post(format!("{}{path}", server.url))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON error body"))
}

fn assert_error(got: (u16, Value), status: u16, code: &str, says: &str) {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(says), "{message:?} does not say {says:?}");
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn malformed_json_is_400() {
    let s = server().await;
    let got = post_raw(&s, "/rooms/echo/run", JSON, b"{\"prompt\": ".to_vec()).await;
    assert_error(got, 400, "invalid_json", "not valid JSON");
}

#[tokio::test]
async fn a_body_that_is_not_run_input_is_400() {
    let s = server().await;
    let got = post_raw(
        &s,
        "/rooms/echo/run",
        JSON,
        br#"{"messages": "hi"}"#.to_vec(),
    )
    .await;
    assert_error(got, 400, "invalid_input", "messages");
    let got = post_raw(&s, "/rooms/echo/run", JSON, b"[1]".to_vec()).await;
    assert_error(got, 400, "invalid_input", "JSON object");
    let got = post_raw(&s, "/rooms/echo/run", JSON, br#"{"prompt": 5}"#.to_vec()).await;
    assert_error(got, 400, "invalid_input", "`prompt` must be a string");
}

#[tokio::test]
async fn no_user_message_is_400() {
    let s = server().await;
    for body in [
        json!({"messages": []}),
        json!({"messages": [{"id": "1", "role": "assistant", "content": "hi"}]}),
        json!({"messages": [{"id": "1", "role": "user", "content": "   "}]}),
        json!({"prompt": ""}),
    ] {
        let got = post_raw(&s, "/rooms/echo/run", JSON, body.to_string().into_bytes()).await;
        assert_error(got, 400, "no_user_message", "no user message");
    }
}

#[tokio::test]
async fn unknown_room_is_404() {
    let s = server().await;
    let got = post_raw(&s, "/rooms/nope/run", JSON, br#"{"prompt": "x"}"#.to_vec()).await;
    assert_error(got, 404, "room_not_found", "'nope'");
    let (status, body) = s.get("/no/such/route").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn too_large_is_413() {
    let s = server().await;
    let body = json!({"prompt": "x".repeat(10_000)})
        .to_string()
        .into_bytes();
    assert_error(
        post_raw(&s, "/rooms/echo/run", JSON, body).await,
        413,
        "payload_too_large",
        "4096",
    );
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let s = server().await;
    let body = br#"{"prompt": "x"}"#.to_vec();
    let got = post_raw(&s, "/rooms/echo/run", Some("text/plain"), body.clone()).await;
    assert_error(got, 415, "unsupported_media_type", "application/json");
    let got = post_raw(&s, "/rooms/echo/run", None, body.clone()).await;
    assert_error(got, 415, "unsupported_media_type", "application/json");
    let resp = TestServer::client()
        .post(format!("{}/rooms/echo/run", s.url))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "a charset parameter is fine");
}

#[tokio::test]
async fn a_compressed_body_is_415_not_invalid_json() {
    let s = server().await;
    let send = |encoding: &'static str| {
        TestServer::client()
            .post(format!("{}/rooms/echo/run", s.url))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(br#"{"prompt": "x"}"#.to_vec())
            .send()
    };
    for encoding in ["gzip", "br, gzip", "x-unknown"] {
        let resp = send(encoding).await.expect("request");
        let got = (resp.status().as_u16(), resp.json().await.expect("JSON"));
        assert_error(got, 415, "unsupported_encoding", "Content-Encoding");
    }
    let resp = send("identity").await.expect("request");
    assert_eq!(resp.status().as_u16(), 200, "identity is no encoding");
}

#[tokio::test]
async fn health_and_readiness() {
    let s = server().await;
    let (status, body) = s.get("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = s.get("/readyz").await;
    assert_eq!(status, 503, "no LLM backend listens on port 9");
    assert_eq!(body["status"], "not_ready");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("backend 1") && !reason.contains("127.0.0.1") && !reason.contains("secret"),
        "the reason names the backend by its label, not its URL: {body}"
    );
    let hint = body["llm"]["hint"].as_str().unwrap_or_default();
    assert!(
        body["llm"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("backend 1")
            && hint.contains("OLLAMA_BASE_URL")
            && hint.contains("--example demo")
            && !hint.contains("127.0.0.1"),
        "the LLM's state says what to set, without the URL: {body}"
    );

    let (status, stats) = s.get("/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["runs_in_flight"], 0);
    assert_eq!(
        stats["llm"],
        json!({"in_flight": 0, "queued": 0, "capacity": 4, "reserved": 0})
    );
}

#[tokio::test]
async fn ready_when_the_llm_backend_answers() {
    let mock = crate::support::mock_llm::MockLlm::start().await;
    let dir = TempDir::with_rooms(&[&test_agent::room("echo", 1, 0, false)]);
    let settings = test_settings(&mock.url(), dir.path.clone());
    let s = TestServer::start_with(settings, test_agent::registry(), dir).await;
    let (status, body) = s.get("/readyz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    mock.stop();
    let (status, body) = s.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test]
async fn soliplex_threads_and_runs() {
    let s = server().await;
    let created: Value = s
        .post("/api/v1/rooms/echo/agui", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let thread = created["thread_id"].as_str().unwrap().to_owned();
    let first_run = created["run_id"].as_str().unwrap().to_owned();

    let path = format!("/api/v1/rooms/echo/agui/{thread}/{first_run}");
    let run = RunResult::read(
        s.post(
            &path,
            &json!({"messages": [{"id": "m", "role": "user", "content": "hi"}]}),
        )
        .await,
    )
    .await;
    verify_agui(&run.events).unwrap();
    assert_eq!(run.events[0]["threadId"], thread.as_str());
    assert_eq!(run.events[0]["runId"], first_run.as_str());

    let again = RunResult::read(s.post(&path, &json!({"prompt": "hi"})).await).await;
    assert_eq!(again.status, 400);
    assert!(again.error_body["detail"]
        .as_str()
        .unwrap_or("")
        .contains("already been run"));

    let next: Value = s
        .post(&format!("/api/v1/rooms/echo/agui/{thread}"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let next_run = next["run_id"].as_str().unwrap();
    assert_ne!(next_run, first_run);
    let run = RunResult::read(
        s.post(
            &format!("/api/v1/rooms/echo/agui/{thread}/{next_run}"),
            &json!({"prompt": "again"}),
        )
        .await,
    )
    .await;
    assert_eq!(run.last()["type"], "RUN_FINISHED");

    let resp = s
        .post(
            &format!("/api/v1/rooms/echo/agui/{}", uuid::Uuid::new_v4()),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 404);
    let resp = s.post("/api/v1/rooms/nope/agui", &json!({})).await;
    assert_eq!(resp.status().as_u16(), 404);
}
