//! Follow-ups in a thread: every strategy's calls carry the thread's earlier turns (and nothing
//! of `activity` messages), a short message pointing back at the previous answer becomes a
//! follow-up, and a long history is cut oldest first, as the activity reports.

use roomhost::agents::parallelization::detect::{choose, is_follow_up, Source};
use roomhost::agents::parallelization::Strategy;
use serde_json::{json, Value};

use crate::support::mock_llm::MockLlm;
use crate::support::parallelization::{carried, finished, server};

const QUESTION: &str = "Renewable energy: Wind, Sun";
const EARLIER_ANSWER: &str = "## Wind\nTurbines turn moving air into power (ZEPHYR-7).";

/// A thread with one question, its answer, the activity a client sends back, and `message`.
fn thread(message: &str) -> Value {
    json!({
        "messages": [
            {"id": "u1", "role": "user", "content": QUESTION},
            {"id": "a1", "role": "assistant", "content": EARLIER_ANSWER},
            {"id": "x1", "role": "activity", "activityType": "parallelization",
             "content": {"status": "complete", "strategy": "sectioning"}},
            {"id": "u2", "role": "user", "content": message},
        ]
    })
}

#[tokio::test]
async fn every_strategy_answers_a_follow_up_with_the_earlier_answer_in_its_calls() {
    for (message, strategy) in [
        ("/sectioning Make the Wind section longer", "sectioning"),
        ("/voting Which of these is cheapest?", "voting"),
        (
            "/mapreduce Summarize: first report | second report",
            "map_reduce",
        ),
        ("Make the Wind section longer.", "follow_up"),
    ] {
        let mock = MockLlm::start().await;
        let server = server(&mock, "").await;
        let result = finished(&server.run("par", thread(message)).await);
        assert_eq!(result["strategy"], strategy, "{message}");
        assert_eq!(
            result["activity"]["history"],
            json!({"turns_used": 2, "turns_dropped": 0, "turns_shortened": 0}),
            "{message}"
        );
        let requests = mock.requests();
        assert!(!requests.is_empty(), "{message}");
        for request in &requests {
            assert_eq!(
                carried(request)[..2],
                [
                    ("user".to_owned(), QUESTION.to_owned()),
                    ("assistant".to_owned(), EARLIER_ANSWER.to_owned()),
                ],
                "{message}: call {}",
                request.index
            );
            assert!(
                !request.messages.iter().any(|m| m.content.contains("activityType")
                    || m.content.contains("\"status\"")),
                "{message}: activity content reached a prompt"
            );
        }
    }
}

#[tokio::test]
async fn a_thread_without_earlier_turns_sends_none() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let result = finished(
        &server
            .run("par", json!({"prompt": "Make the Wind section longer."}))
            .await,
    );
    assert_ne!(result["strategy"], "follow_up");
    assert!(result["activity"].get("history").is_none());
    for request in mock.requests() {
        assert!(carried(&request).is_empty(), "call {}", request.index);
    }
}

#[tokio::test]
async fn a_follow_up_asked_for_with_nothing_before_is_refused() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let run = server
        .run("par", json!({"prompt": "/followup Make it shorter."}))
        .await;
    assert_eq!(run.status, 400, "{}", run.error_body);
    let message = run.error_body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("earlier answer"), "{message}");
    assert_eq!(mock.request_count(), 0);
}

#[test]
fn follow_ups_are_told_from_new_requests() {
    let follow = |text: &str| choose(text, &Value::Null, Strategy::Sectioning, true);
    for text in [
        "Make the Wind section longer.",
        "now summarise that in one paragraph",
        "Which of these is cheapest?",
        "Summarize it in one paragraph",
        "Shorter, please.",
        "Translate the answer into French.",
        "Why is that?",
    ] {
        let choice = follow(text).expect("valid");
        assert_eq!(
            (choice.strategy, choice.source),
            (Strategy::FollowUp, Source::Conversation),
            "{text}"
        );
    }
    // New work in the same thread keeps its own strategy.
    for (text, strategy) in [
        ("Is Rust faster than Go?", Strategy::Voting),
        ("Is it safe to eat raw eggs?", Strategy::Voting),
        (
            "Is it true that cats sleep 16 hours a day?",
            Strategy::Voting,
        ),
        ("Who won the last World Cup?", Strategy::Voting),
        ("Is Python the same as Java?", Strategy::Voting),
        ("Write about tides: Causes, Effects", Strategy::Sectioning),
        (
            "Summarize these: [first text] [second text]",
            Strategy::MapReduce,
        ),
    ] {
        let choice = follow(text).expect("valid");
        assert_eq!(choice.strategy, strategy, "{text}");
        assert_eq!(choice.source, Source::Pattern, "{text}");
    }
    // An explicit choice wins over the conversation.
    let choice = follow("/voting Which of these is cheapest?").expect("valid");
    assert_eq!(
        (choice.strategy, choice.source),
        (Strategy::Voting, Source::Explicit)
    );
    let choice = choose(
        "Make the Wind section longer.",
        &json!({"strategy": "sectioning"}),
        Strategy::Voting,
        true,
    )
    .expect("valid");
    assert_eq!(choice.strategy, Strategy::Sectioning);
    // Without an earlier answer a message is never a follow-up.
    let choice = choose(
        "Make the Wind section longer.",
        &Value::Null,
        Strategy::Sectioning,
        false,
    )
    .expect("valid");
    assert_ne!(choice.strategy, Strategy::FollowUp);
    // A long message is a request of its own, whatever its words.
    assert!(!is_follow_up(&format!("Make {}", "the text ".repeat(20))));
}

#[tokio::test]
async fn a_long_history_is_cut_oldest_first_and_the_activity_says_so() {
    let filler = |mark: &str, bytes: usize| format!("{mark} {}", "word ".repeat(bytes / 5));
    let newest = filler("NEWEST-ANSWER", 300);
    let body = json!({
        "messages": [
            {"role": "user", "content": filler("OLDEST-QUESTION", 1500)},
            {"role": "assistant", "content": filler("OLD-ANSWER", 1500)},
            {"role": "user", "content": filler("RECENT-QUESTION", 300)},
            {"role": "assistant", "content": newest},
            {"role": "user", "content": "Now summarise that in one paragraph."},
        ]
    });
    let mock = MockLlm::start().await;
    let server = server(&mock, "num_ctx: 2048").await;
    let result = finished(&server.run("par", body).await);
    assert_eq!(result["strategy"], "follow_up");
    let activity = &result["activity"];
    assert_eq!(
        activity["history"],
        json!({"turns_used": 3, "turns_dropped": 1, "turns_shortened": 1})
    );
    let notes = activity["notes"].as_array().cloned().unwrap_or_default();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap_or("").contains("oldest turns")),
        "{notes:?}"
    );
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let carried = carried(&requests[0]);
    assert!(carried
        .iter()
        .all(|(_, text)| !text.contains("OLDEST-QUESTION")));
    assert!(carried[0].1.starts_with("OLD-ANSWER") && carried[0].1.ends_with("[…]"));
    assert_eq!(carried.last().map(|(_, t)| t.trim()), Some(newest.trim()));
}

/// A client that sends only its new message with the thread's id (`curl`): the store supplies the
/// earlier turns, and the follow-up's call carries the previous answer.
#[tokio::test]
async fn a_prompt_alone_in_a_known_thread_continues_it_from_the_store() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let first = finished(
        &server
            .run("par", json!({"threadId": "t-wind", "prompt": QUESTION}))
            .await,
    );
    let answer = first["text"].as_str().unwrap_or_default().to_owned();
    assert!(!answer.is_empty());
    let before = mock.request_count();
    let body = json!({"threadId": "t-wind", "prompt": "Make the Wind section longer."});
    let result = finished(&server.run("par", body).await);
    assert_eq!(result["strategy"], "follow_up");
    let requests = mock.requests();
    assert_eq!(requests.len(), before + 1);
    assert_eq!(
        carried(&requests[before]),
        [
            ("user".to_owned(), QUESTION.to_owned()),
            ("assistant".to_owned(), answer),
        ]
    );
}
