//! The per-user limit of runs in flight: with a hung backend, a user's run past the limit is
//! refused with 429, `Retry-After` and the JSON error before any event, while another user's run
//! is admitted; the user's place comes back when a run ends.

use roomhost::auth::AuthMode;
use serde_json::{json, Value};

use crate::support::harness::{eventually, SseReader, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::{server_with, ROOM};
use crate::support::tokens::api_key_entry;

async fn post_run(server: &TestServer, key: &str) -> reqwest::Response {
    TestServer::client()
        .post(format!("{}/rooms/{ROOM}/run", server.url))
        .bearer_auth(key)
        .json(&json!({"prompt": "Is tea better than coffee?", "protocolVersion": "1.0"}))
        .send()
        .await
        .expect("POST")
}

async fn started(server: &TestServer, key: &str) -> SseReader {
    let resp = post_run(server, key).await;
    assert_eq!(resp.status().as_u16(), 200, "{key}'s run was not admitted");
    let mut run = SseReader::new(resp);
    let first = run.next_event().await.expect("a first event");
    assert_eq!(first["type"], "RUN_STARTED");
    run
}

#[tokio::test]
async fn a_user_past_the_limit_gets_429_while_another_user_is_admitted() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().hang());
    let server = server_with(&mock, "num_voters: 2", |s| {
        s.auth = AuthMode::Keys;
        s.api_keys = vec![
            api_key_entry("alice", "a-key"),
            api_key_entry("bob", "b-key"),
        ];
        s.max_runs_per_user = 2;
    })
    .await;

    let alice_first = started(&server, "a-key").await;
    let _alice_second = started(&server, "a-key").await;
    let refused = post_run(&server, "a-key").await;
    assert_eq!(refused.status().as_u16(), 429);
    let retry_after = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after >= 1);
    assert!(refused
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json")));
    let body: Value = refused.json().await.expect("a JSON body, not a stream");
    assert_eq!(body["error"]["code"], "too_many_user_runs", "{body}");

    let _bob = started(&server, "b-key").await;

    // Alice leaves one run: her place comes back once the host has let it go.
    drop(alice_first);
    let app = server.app.clone();
    eventually("alice's first run ends", || app.runs.len() == 2).await;
    let _alice_again = started(&server, "a-key").await;
}
