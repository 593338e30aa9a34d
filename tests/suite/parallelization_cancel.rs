//! A client that leaves stops the run: every in-flight LLM call of it is closed at once.

use crate::support::harness::eventually;
use crate::support::mock_llm::{auto_reply, MockLlm, MockReply};
use crate::support::parallelization::{asks, prompt, server};
use roomhost::agents::parallelization::prompts;

#[tokio::test]
async fn leaving_closes_every_call_of_each_strategy() {
    let cases = [
        ("Which is better: Python or JavaScript?", 3),
        ("Energy: Wind, Sun, Water", 3),
        ("Summarize: A | B | C | D", 4),
    ];
    for (text, calls) in cases {
        let mock = MockLlm::start().await;
        // Some text, then nothing: the subagents' messages are open when the client leaves.
        mock.respond_with(|_| MockReply::new().text("a few words").hang());
        let server = server(&mock, "").await;
        let mut reader = server.open_run("par", prompt(text)).await;
        reader.read_until("TEXT_MESSAGE_CONTENT").await;
        eventually("every call in flight", || mock.in_flight() == calls).await;
        drop(reader);
        eventually("every call closed", || mock.in_flight() == 0).await;
        assert_eq!(mock.disconnects(), calls, "{text}");
        eventually("the run ended", || server.app.runs.is_empty()).await;
    }
}

#[tokio::test]
async fn leaving_during_the_reduce_closes_it() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if asks(req, prompts::REDUCE_SYSTEM) {
            MockReply::new().text("the combined").hang()
        } else {
            auto_reply(req, 8)
        }
    });
    let server = server(&mock, "").await;
    let mut reader = server.open_run("par", prompt("Summarize: A | B")).await;
    reader.read_until("STEP_STARTED").await;
    eventually("the reduce call", || {
        mock.request_count() == 3 && mock.in_flight() == 1
    })
    .await;
    drop(reader);
    eventually("the reduce closed", || mock.in_flight() == 0).await;
    assert_eq!(mock.disconnects(), 1);
}
