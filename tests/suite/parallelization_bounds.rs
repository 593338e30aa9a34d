//! What one request may cost, decided before its stream: listed sections and documents within the
//! room's caps, every prompt within the model's context, user text reaching the model verbatim
//! (braces included), and prompts whose size does not grow with the number of sections.

use crate::support::harness::RunResult;
use crate::support::mock_llm::{MockLlm, MockReply, MockRequest};
use crate::support::parallelization::{finished, prompt, server, system_of};
use roomhost::agents::parallelization::prompts;
use serde_json::json;

fn user_of(request: &MockRequest) -> String {
    request.last_user().unwrap_or_default().to_owned()
}

/// A 400 before the stream whose message says `says`, and no LLM call at all.
fn refused(run: &RunResult, mock: &MockLlm, says: &str) {
    assert_eq!(run.status, 400, "{:?}", run.error_body);
    assert!(run.events.is_empty());
    let message = run.error_body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(says), "{message}");
    assert_eq!(mock.request_count(), 0);
}

fn listed(n: usize) -> String {
    let titles: Vec<String> = (1..=n).map(|i| format!("S{i}")).collect();
    format!("Energy: {}", titles.join(", "))
}

#[tokio::test]
async fn listed_sections_above_max_sections_are_refused() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(&listed(500))).await;
    refused(
        &run,
        &mock,
        "500 sections listed; this room writes at most 8",
    );

    // At the cap the run goes ahead, one call per section.
    let result = finished(&server.run("par", prompt(&listed(8))).await);
    assert_eq!(result["sections"].as_array().map(Vec::len), Some(8));
    assert_eq!(mock.request_count(), 8);
}

#[tokio::test]
async fn documents_above_max_documents_are_refused() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "max_documents: 64").await;
    let documents: Vec<String> = (1..=100).map(|i| format!("Report {i}.")).collect();
    let body = json!({"prompt": "Summarize", "forwardedProps": {"documents": documents}});
    refused(
        &server.run("par", body).await,
        &mock,
        "100 documents given; this room reads at most 64",
    );
    let inline = format!("Summarize: {}", documents.join(" | "));
    refused(
        &server.run("par", prompt(&inline)).await,
        &mock,
        "(max_documents)",
    );

    let body = json!({"prompt": "Summarize", "forwardedProps": {"documents": &documents[..64]}});
    let result = finished(&server.run("par", body).await);
    assert_eq!(result["documents"], 64);
    let maps = mock
        .requests()
        .iter()
        .filter(|r| system_of(r).starts_with("You summarize one document"))
        .count();
    assert_eq!(maps, 64);
}

#[tokio::test]
async fn braces_in_sectioning_input_reach_the_model_verbatim() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    finished(
        &server
            .run("par", prompt("About {sections}: Solar, {topic}"))
            .await,
    );
    let users: Vec<String> = mock.requests().iter().map(user_of).collect();
    for section in ["Solar", "{topic}"] {
        let want = format!(
            "Your section: {section}\nTopic: About {{sections}}\nSections of the document, in order: Solar; {{topic}}"
        );
        assert!(users.contains(&want), "{want:?} not in {users:#?}");
    }

    // A planned run: the topic reaches the planner as written.
    mock.reset_stats();
    let topic = "Write about {topic}, {min} and {max} {section}";
    let body = json!({"prompt": topic, "forwardedProps": {"strategy": "sectioning"}});
    finished(&server.run("par", body).await);
    let planner = mock
        .requests()
        .into_iter()
        .find(|r| r.schema().is_some())
        .expect("a planning call");
    assert_eq!(user_of(&planner), format!("Topic: {topic}"));
    assert!(system_of(&planner).contains("between 3 and 8"));
}

#[tokio::test]
async fn braces_in_voting_input_reach_the_model_verbatim() {
    let mock = MockLlm::start().await;
    // Seeds 42 and 43 vote yes and no: a tie for the judge.
    let server = server(
        &mock,
        "num_voters: 2\nvoter_perspectives: [\"a {question}\"]",
    )
    .await;
    let question = "Is {question} better than {candidates} or {allowed}?";
    finished(&server.run("par", prompt(question)).await);
    let requests = mock.requests();
    let (judges, voters): (Vec<&MockRequest>, Vec<&MockRequest>) = requests
        .iter()
        .partition(|r| system_of(r).contains("votes are tied"));
    assert_eq!(voters.len(), 2);
    for voter in voters {
        assert_eq!(user_of(voter), question);
        assert!(system_of(voter).contains("point of view: a {question}."));
    }
    let judge = judges.first().expect("a judge call");
    assert!(
        user_of(judge).starts_with(&format!("Question: {question}\n")),
        "{}",
        user_of(judge)
    );
}

#[tokio::test]
async fn braces_in_map_reduce_input_reach_the_model_verbatim() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    // The probe: repeated `{text}` once grew 26-fold per map prompt.
    let document = "{text} ".repeat(1000);
    let body = json!({
        "prompt": "Summarize {text} and {instruction}",
        "forwardedProps": {"documents": [document, "{summaries} {label}"]},
    });
    finished(&server.run("par", body).await);
    let users: Vec<String> = mock.requests().iter().map(user_of).collect();
    let task = "Task: Summarize {text} and {instruction}";
    let first = format!("{task}\n\nDocument 1:\n{}", document.trim());
    assert!(users.contains(&first), "the map prompt was altered");
    let second = format!("{task}\n\nDocument 2:\n{{summaries}} {{label}}");
    assert!(users.contains(&second), "{users:#?}");
    let reduce = users.last().expect("a reduce call");
    assert!(
        reduce.starts_with(&format!("{task}\n\nDocument 1:\n")),
        "{reduce}"
    );
}

#[tokio::test]
async fn text_too_long_for_the_context_is_refused_before_the_stream() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "num_ctx: 512").await;
    let long = "word ".repeat(400);
    let cases = [
        (
            json!({"prompt": format!("Is {long}?"), "forwardedProps": {"strategy": "voting"}}),
            "the question is too long",
        ),
        (
            json!({"prompt": format!("Write about {long}"), "forwardedProps": {"strategy": "sectioning"}}),
            "the topic is too long",
        ),
        (
            json!({"prompt": long, "forwardedProps": {"documents": ["A short report."]}}),
            "the instruction is too long",
        ),
    ];
    for (body, says) in cases {
        let run = server.run("par", body).await;
        refused(&run, &mock, says);
        let message = run.error_body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("num_ctx 512"), "{message}");
    }
    // Long documents are no reason to refuse: they are split to fit.
    let body = json!({"prompt": "Summarize", "forwardedProps": {"documents": [long]}});
    finished(&server.run("par", body).await);
}

/// Every section prompt's size is bounded whatever the number of sections, so a run's prompts
/// grow linearly with its sections, not with their square.
#[test]
fn section_prompts_stay_bounded_as_sections_grow() {
    let titles = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("Section {i} {}", "x".repeat(200)))
            .collect()
    };
    let sizes = |sections: &[String]| -> Vec<usize> {
        (0..sections.len())
            .map(|i| {
                let (system, user) = prompts::section("Energy", sections, i);
                system.len() + user.len()
            })
            .collect()
    };
    let ten = sizes(&titles(10));
    let many = sizes(&titles(2000));
    let largest = |s: &[usize]| s.iter().copied().max().unwrap_or(0);
    assert!(
        largest(&many) <= largest(&ten) + 40,
        "{} vs {}",
        largest(&many),
        largest(&ten)
    );
    let total: usize = many.iter().sum();
    assert!(total <= 2000 * largest(&ten) + 2000 * 40);
    // Each title is cut for the other writers.
    let (_, user) = prompts::section("Energy", &titles(3), 0);
    assert!(
        !user.contains(&"x".repeat(prompts::VIEW_TITLE_CHARS)),
        "{user}"
    );
    assert!(user.len() < 4 * prompts::VIEW_TITLE_CHARS + 200, "{user}");
}

#[tokio::test]
async fn a_prompt_grown_past_the_context_at_run_time_is_not_sent() {
    let mock = MockLlm::start().await;
    // Two voters tie, each with reasoning far longer than a 512-token context holds twice (no
    // span repeats, or the repetition guard would cut it).
    let reasoning: String = (0..300).map(|i| format!("because{i} ")).collect();
    mock.respond_with(move |req| {
        let answer = if req.seed == Some(42) { "yes" } else { "no" };
        MockReply::new().text(json!({"answer": answer, "reasoning": reasoning}).to_string())
    });
    let server = server(&mock, "num_ctx: 512\nnum_voters: 2").await;
    let result = finished(
        &server
            .run("par", prompt("Is tea better than coffee?"))
            .await,
    );
    let tie_break = &result["votes"]["tie_break"];
    assert_eq!(tie_break["method"], "first", "{tie_break}");
    let note = tie_break["note"].as_str().unwrap_or("");
    assert!(note.contains("too long for this room's model"), "{note}");
    assert_eq!(mock.request_count(), 2, "the judge's call was never sent");
}
