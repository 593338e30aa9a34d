//! Map-reduce through the router with the mock LLM: documents from the prompt or attached, the
//! reduce over what succeeded, and long input collapsed level by level or truncated, never failing.

use crate::support::harness::slots;
use crate::support::mock_llm::{auto_reply, MockLlm, MockReply, MockRequest};
use crate::support::parallelization::{
    asks, backend_down, failed, finished, prompt, prompt_start, server, server_with, subagents,
};
use roomhost::agents::parallelization::prompts::{
    COLLAPSE_SYSTEM, MAP_USER, REDUCE_SYSTEM, SUMMARIES_USER,
};
use serde_json::json;

fn is_reduce(req: &MockRequest) -> bool {
    asks(req, REDUCE_SYSTEM)
}

fn is_collapse(req: &MockRequest) -> bool {
    asks(req, COLLAPSE_SYSTEM)
}

#[tokio::test]
async fn documents_are_summarised_then_reduced_in_order() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let run = server
        .run("par", prompt("Summarize: Article1 | Article2 | Article3"))
        .await;
    let result = finished(&run);
    assert_eq!(result["strategy"], "map_reduce");
    assert_eq!(result["documents"], 3);
    assert_eq!(result["collapse_levels"], 0);
    assert_eq!(result["truncated"], false);
    assert_eq!(result["failed"], json!([]));

    let names: Vec<String> = subagents(&run).into_iter().map(|(_, n, _)| n).collect();
    assert_eq!(names, ["Document 1", "Document 2", "Document 3"]);
    let requests = mock.requests();
    assert_eq!(requests.len(), 4);
    let reduce: Vec<&MockRequest> = requests.iter().filter(|r| is_reduce(r)).collect();
    assert_eq!(reduce.len(), 1);
    assert_eq!(
        requests.last().map(is_reduce),
        Some(true),
        "reduce comes last"
    );
    let reduce_prompt = reduce[0].last_user().unwrap_or_default();
    assert!(reduce_prompt.starts_with(&prompt_start(SUMMARIES_USER, "Summarize")));
    let at = |s: &str| reduce_prompt.find(s).expect(s);
    assert!(at("Document 1:") < at("Document 2:") && at("Document 2:") < at("Document 3:"));
    for r in requests.iter().filter(|r| !is_reduce(r)) {
        let user = r.last_user().unwrap_or_default();
        assert!(
            user.starts_with(&prompt_start(MAP_USER, "Summarize")),
            "{user}"
        );
        assert!(user.contains("Article"), "{user}");
    }
    // The answer is the reduce call's text, streamed as the run's one answer message.
    let text = run.final_text();
    let reduce_start = prompt_start(SUMMARIES_USER, "Summarize");
    assert!(
        text.starts_with(&format!("{reduce_start} Document 1:")),
        "{text}"
    );
    assert_eq!(run.step_names(), ["fan_out", "aggregate"]);
}

#[tokio::test]
async fn attached_documents_are_mapped_with_the_question_as_the_task() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let body = json!({
        "prompt": "What do these notes agree on?",
        "forwardedProps": {"documents": ["Notes from Monday.", "Notes from Tuesday."]}
    });
    let run = server.run("par", body).await;
    let result = finished(&run);
    assert_eq!(result["strategy_source"], "pattern");
    assert_eq!(result["documents"], 2);
    let maps: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| !is_reduce(r))
        .map(|r| r.last_user().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(maps.len(), 2);
    assert!(maps
        .iter()
        .all(|m| m.starts_with(&prompt_start(MAP_USER, "What do these notes agree on?"))));
    assert!(maps.iter().any(|m| m.contains("Notes from Tuesday.")));
}

#[tokio::test]
async fn a_single_document_needs_no_reduce_call() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let run = server
        .run("par", prompt("Summarize: The one article there is."))
        .await;
    let result = finished(&run);
    assert_eq!(mock.request_count(), 1);
    let (id, name, _) = &subagents(&run)[0];
    assert_eq!(name, "Document 1");
    assert_eq!(run.final_text(), run.subagent_text(id).trim());
    assert_eq!(result["parts"], 1);
}

#[tokio::test]
async fn failed_documents_are_named_and_the_rest_reduced() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if req.last_user().unwrap_or_default().contains("Article2") {
            MockReply::new().status(400, "document too strange")
        } else {
            auto_reply(req, 8)
        }
    });
    let server = server(&mock, "").await;
    let run = server
        .run("par", prompt("Summarize: Article1 | Article2 | Article3"))
        .await;
    let result = finished(&run);
    let failed_docs = result["failed"].as_array().expect("failed").clone();
    assert_eq!(failed_docs.len(), 1);
    assert!(failed_docs[0]
        .as_str()
        .is_some_and(|f| f.starts_with("Document 2: ") && f.contains("document too strange")));
    let reduce = mock
        .requests()
        .into_iter()
        .find(is_reduce)
        .expect("a reduce call");
    let reduce_prompt = reduce.last_user().unwrap_or_default().to_owned();
    assert!(reduce_prompt.contains("Document 1:") && reduce_prompt.contains("Document 3:"));
    assert!(!reduce_prompt.contains("Document 2:"));
    let text = run.final_text();
    assert!(text.contains("_Not included: Document 2: "), "{text}");
    assert_eq!(result["activity"]["failed_tasks"], 1);
}

#[tokio::test]
async fn nothing_summarised_is_a_run_error_saying_each_reason_once() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if req.last_user().unwrap_or_default().contains("Article2") {
            MockReply::new()
        } else {
            MockReply::new().status(400, "unreadable")
        }
    });
    let server = server(&mock, "").await;
    let run = server
        .run("par", prompt("Summarize: Article1 | Article2 | Article3"))
        .await;
    // An error status and an empty answer: not one backend failure, so the strategy's code.
    let message = failed(&run, "all_tasks_failed");
    assert!(
        message.starts_with(
            "no document could be summarized (3 of 3 failed): Document 1 and Document 3: "
        ),
        "{message}"
    );
    assert_eq!(message.matches("unreadable").count(), 1, "{message}");
    assert!(
        message.ends_with("; Document 2: the model returned an empty answer"),
        "{message}"
    );
}

#[tokio::test]
async fn a_backend_that_is_down_is_the_run_error_code() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    mock.stop();
    let run = server.run("par", prompt("Summarize: A | B")).await;
    backend_down(
        &run,
        &mock,
        "no document could be summarized (2 of 2 failed): Document 1 and Document 2",
    );
}

#[tokio::test]
async fn a_failed_reduce_still_answers_with_the_summaries() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if is_reduce(req) {
            MockReply::new().status(400, "reduce refused")
        } else {
            auto_reply(req, 8)
        }
    });
    let server = server(&mock, "").await;
    let run = server.run("par", prompt("Summarize: A1 | B2")).await;
    finished(&run);
    let text = run.final_text();
    assert!(text.contains("could not be combined"), "{text}");
    let map_start = prompt_start(MAP_USER, "Summarize");
    assert!(
        text.contains(&format!("**Document 1:** {map_start}")),
        "{text}"
    );
    assert!(text.contains("**Document 2:**"), "{text}");
}

/// About 2 MB of prose in paragraphs.
fn long_text() -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 2_000_000 {
        i += 1;
        text.push_str(&format!(
            "Paragraph {i} tells of the harbour, the ships that came in that year and the goods they carried. \
             The merchants counted their stock and wrote it down carefully.\n\n"
        ));
    }
    text
}

#[tokio::test]
async fn two_megabytes_collapse_level_by_level_within_the_depth() {
    let mock = MockLlm::start().await;
    let server = server_with(&mock, "num_ctx: 4096\nmax_collapse_depth: 3", |s| {
        s.body_limit_bytes = 8 * 1024 * 1024;
        s.llm.max_concurrency = slots(8);
    })
    .await;
    let body = json!({
        "prompt": "Summarize the harbour records",
        "forwardedProps": {"documents": [long_text(), "A short second document."]}
    });
    let run = server.run("par", body).await;
    let result = finished(&run);

    let parts = result["parts"].as_u64().expect("parts") as usize;
    assert!(
        parts > 100,
        "2 MB must be split for a 4096-token context: {parts}"
    );
    let levels = result["collapse_levels"].as_u64().expect("levels");
    assert!((1..=3).contains(&levels), "{levels}");
    assert_eq!(result["truncated"], false);
    assert!(!run.final_text().is_empty());

    let requests = mock.requests();
    let collapses = requests.iter().filter(|r| is_collapse(r)).count();
    let reduces = requests.iter().filter(|r| is_reduce(r)).count();
    assert_eq!(reduces, 1);
    assert!(
        collapses >= 1 && collapses < parts,
        "{collapses} collapse calls"
    );
    assert_eq!(requests.len(), parts + collapses + reduces);
    // Every call was budgeted to fit the context (3 bytes a token is the agent's estimate).
    for r in &requests {
        let bytes: usize = r.messages.iter().map(|m| m.content.len()).sum();
        assert!(
            bytes / 3 <= 4096,
            "a {bytes}-byte prompt for a 4096-token context"
        );
    }
    let names: Vec<String> = subagents(&run).into_iter().map(|(_, n, _)| n).collect();
    assert!(names
        .iter()
        .any(|n| n.starts_with("Document 1, part 2 of ")));
    assert!(names.iter().any(|n| n == "Document 2"));
    assert!(names.iter().any(|n| n.starts_with("Collapse 1: ")));
}

#[tokio::test]
async fn input_too_long_for_the_depth_is_truncated_and_says_so() {
    let mock = MockLlm::start().await;
    let server = server_with(&mock, "num_ctx: 4096\nmax_collapse_depth: 0", |s| {
        s.body_limit_bytes = 8 * 1024 * 1024;
        s.llm.max_concurrency = slots(8);
    })
    .await;
    let body = json!({
        "prompt": "Summarize the harbour records",
        "forwardedProps": {"documents": [long_text()]}
    });
    let run = server.run("par", body).await;
    let result = finished(&run);
    assert_eq!(result["collapse_levels"], 0);
    assert_eq!(result["truncated"], true);
    let requests = mock.requests();
    assert_eq!(requests.iter().filter(|r| is_collapse(r)).count(), 0);
    let reduce = requests.iter().find(|r| is_reduce(r)).expect("reduce");
    let bytes: usize = reduce.messages.iter().map(|m| m.content.len()).sum();
    assert!(bytes / 3 <= 4096, "{bytes}");
    let text = run.final_text();
    assert!(
        text.contains("_Note: The summaries were still too long after 0 collapse levels"),
        "{text}"
    );
    let notes = result["activity"]["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1);
}

#[tokio::test]
async fn summaries_that_cannot_be_combined_say_each_reason_once() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if is_collapse(req) {
            MockReply::new().status(400, "collapse refused")
        } else {
            auto_reply(req, 150)
        }
    });
    let server = server_with(&mock, "num_ctx: 4096", |s| {
        s.body_limit_bytes = 8 * 1024 * 1024;
        s.llm.max_concurrency = slots(8);
    })
    .await;
    let mut text = long_text();
    text.truncate(200_000);
    let body = json!({
        "prompt": "Summarize the harbour records",
        "forwardedProps": {"documents": [text]}
    });
    let run = server.run("par", body).await;
    let message = failed(&run, "llm_http_error");
    let collapses = mock.requests().iter().filter(|r| is_collapse(r)).count();
    assert!(collapses > 1, "{collapses} collapse calls");
    // The groups are named apart, though their labels hold commas.
    assert!(
        message.starts_with(&format!(
            "the summaries could not be combined ({collapses} of {collapses} failed): Document 1, parts 1–"
        )) && message.contains(" / Document 1, parts "),
        "{message}"
    );
    assert_eq!(message.matches("collapse refused").count(), 1, "{message}");
}
