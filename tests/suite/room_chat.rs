//! Plain chat rooms (soliplex's `agent.kind: default`, or no kind): the room's system prompt,
//! inline or from `./prompt.txt`, one streamed answer, and the thread's history.

use serde_json::json;

use crate::support::harness::{test_settings, verify_agui, TempDir, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::system_of;
use roomhost::agents::Registry;

const ROOM: &str = "\
id: helper
name: Helper
agent:
  model_name: mock
  system_prompt: ./prompt.txt
  provider_type: ollama
  provider_base_url: http://localhost:11434
  retries: 2
suggestions:
  - Hello
";

async fn server(mock: &MockLlm, room: &str) -> TestServer {
    let dir = TempDir::new();
    dir.write("helper/room_config.yaml", room);
    dir.write("helper/prompt.txt", "You are the helper of the tests.\n");
    let settings = test_settings(&mock.url(), dir.path.clone());
    TestServer::start_with(settings, Registry::builtin(), dir).await
}

#[tokio::test]
async fn a_plain_room_streams_one_answer_with_its_system_prompt_from_a_file() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().text("Hello there, friend."));
    let server = server(&mock, ROOM).await;
    let run = server.run("helper", json!({"prompt": "Hi"})).await;
    verify_agui(&run.events).expect("valid stream");
    let last = run.last();
    assert_eq!(last["type"], "RUN_FINISHED", "{last}");
    assert_eq!(run.final_text(), "Hello there, friend.");
    assert_eq!(last["result"]["text"], "Hello there, friend.");
    assert_eq!(last["result"]["llm_requests"], 1);
    assert_eq!(run.activity_state()["status"], "complete");
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        system_of(&requests[0]),
        "You are the helper of the tests.\n"
    );
    assert_eq!(requests[0].model, "mock");
    let (status, room) = server.get("/rooms/helper").await;
    assert_eq!(status, 200);
    assert_eq!(room["agent"]["factory_name"], "default");
}

#[tokio::test]
async fn the_threads_earlier_turns_go_with_the_call() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| MockReply::new().text(format!("answer {}", req.messages.len())));
    let inline = ROOM.replace("./prompt.txt", "Be brief.");
    let server = server(&mock, &inline).await;
    // The client sends its own history.
    let body = json!({"messages": [
        {"id": "1", "role": "user", "content": "first"},
        {"id": "2", "role": "assistant", "content": "first answer"},
        {"id": "3", "role": "user", "content": "second"},
    ]});
    let run = server.run("helper", body).await;
    assert_eq!(run.last()["type"], "RUN_FINISHED");
    let request = &mock.requests()[0];
    let turns: Vec<(&str, &str)> = request
        .messages
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            ("system", "Be brief."),
            ("user", "first"),
            ("assistant", "first answer"),
            ("user", "second"),
        ]
    );

    // A client that sends only its new message in a known thread gets the stored answer back
    // as the earlier turn.
    mock.reset_stats();
    let first = server
        .run("helper", json!({"threadId": "th", "prompt": "one"}))
        .await;
    let answer = first.final_text();
    server
        .run("helper", json!({"threadId": "th", "prompt": "two"}))
        .await;
    let requests = mock.requests();
    let last = requests.last().expect("a call");
    assert!(
        last.messages
            .iter()
            .any(|m| m.role == "assistant" && m.content == answer),
        "{:?}",
        last.messages
    );
}

#[tokio::test]
async fn a_bad_plain_room_key_stops_the_start_naming_it() {
    let dir = TempDir::new();
    dir.write(
        "helper/room_config.yaml",
        &ROOM.replace("retries: 2", "temprature: 0.3"),
    );
    dir.write("helper/prompt.txt", "Be brief.");
    let settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    let error = roomhost::App::open(settings, &Registry::builtin())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("temprature"), "{error}");
}
