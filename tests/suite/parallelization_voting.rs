//! Voting through the router with the mock LLM: the tally, the schema voters answer with, ties
//! broken by a judge or by the earliest voter, and the quorum.

use crate::support::mock_llm::{auto_reply, MockLlm, MockReply, MockRequest};
use crate::support::parallelization::{
    asks, backend_down, failed, finished, position, prompt, server, subagents, system_of,
};
use roomhost::agents::parallelization::prompts;
use serde_json::{json, Value};

const LANGUAGES: &str = "Which is better: Python or JavaScript?";

fn is_judge(req: &MockRequest) -> bool {
    asks(req, prompts::JUDGE_SYSTEM)
}

fn json_reply(answer: &str, reasoning: &str) -> MockReply {
    MockReply::new().text(json!({"answer": answer, "reasoning": reasoning}).to_string())
}

#[tokio::test]
async fn voters_answer_within_the_named_options_and_the_majority_wins() {
    let mock = MockLlm::start().await;
    // The mock picks enum value `seed % 2`: seeds 42, 43, 44 vote Python, JavaScript, Python.
    let server = server(&mock, "seed: 42\nvoter_temperature: 0.9").await;
    let run = server.run("par", prompt(LANGUAGES)).await;
    let result = finished(&run);

    assert_eq!(result["strategy"], "voting");
    let votes = &result["votes"];
    assert_eq!(votes["answer"], "Python");
    assert_eq!(votes["count"], 2);
    assert_eq!(votes["voters"], 3);
    assert_eq!(votes["valid"], 3);
    let agreement = votes["agreement"].as_f64().unwrap_or(0.0);
    assert!((agreement - 2.0 / 3.0).abs() < 1e-9, "{agreement}");
    assert_eq!(
        votes["tally"],
        json!([{"answer": "Python", "votes": 2}, {"answer": "JavaScript", "votes": 1}])
    );
    assert_eq!(votes["ballots"][1]["answer"], "JavaScript");
    assert!(votes.get("tie_break").is_none());

    let text = run.final_text();
    assert!(text.starts_with("**Python** (2 of 3 voters)"), "{text}");
    assert!(text.contains("Votes: Python 2, JavaScript 1"), "{text}");
    let reasoning = votes["ballots"][0]["reasoning"].as_str().unwrap_or("");
    assert!(!reasoning.is_empty() && text.contains(reasoning), "{text}");

    let mut requests = mock.requests();
    requests.sort_by_key(|r| r.seed);
    assert_eq!(requests.len(), 3);
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(r.seed, Some(42 + i as i64));
        assert_eq!(r.temperature.map(|t| (t * 10.0).round()), Some(9.0));
        let schema = r.format.as_ref().expect("a schema");
        assert_eq!(
            schema["properties"]["answer"]["enum"],
            json!(["Python", "JavaScript"])
        );
        assert_eq!(schema["required"], json!(["answer", "reasoning"]));
        assert_eq!(r.last_user(), Some(LANGUAGES));
    }

    let subs = subagents(&run);
    let names: Vec<&str> = subs.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, ["Voter 1", "Voter 2", "Voter 3"]);
    let done = run.of_type("SUBAGENT_FINISHED");
    assert!(done
        .iter()
        .all(|e| e["result"]["answer"].is_string() && e["result"]["reasoning"].is_string()));
    assert_eq!(run.step_names(), ["fan_out", "aggregate"]);
}

#[tokio::test]
async fn a_yes_no_question_is_answered_yes_or_no() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let run = server
        .run("par", prompt("Is remote work better than office work?"))
        .await;
    let result = finished(&run);
    assert_eq!(result["votes"]["answer"], "yes");
    assert_eq!(result["votes"]["count"], 2);
    for r in mock.requests() {
        let schema = r.format.expect("a schema");
        assert_eq!(schema["properties"]["answer"]["enum"], json!(["yes", "no"]));
    }
}

#[tokio::test]
async fn free_answers_are_normalised_before_counting() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| match req.seed {
        Some(42) => json_reply("The Eiffel Tower.", "tall"),
        Some(43) => json_reply("eiffel tower", "famous"),
        _ => json_reply("Louvre", "art"),
    });
    let server = server(&mock, "").await;
    let run = server
        .run("par", prompt("What is the best known landmark of Paris?"))
        .await;
    let result = finished(&run);
    assert_eq!(result["votes"]["answer"], "The Eiffel Tower");
    assert_eq!(result["votes"]["count"], 2);
    let schema = mock.requests()[0].format.clone().expect("a schema");
    assert!(schema["properties"]["answer"].get("enum").is_none());
}

#[tokio::test]
async fn a_judge_breaks_a_tie() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if is_judge(req) {
            json_reply("JavaScript", "the judge prefers the web")
        } else {
            auto_reply(req, 8)
        }
    });
    // Two voters (seeds 42, 43) split Python / JavaScript.
    let server = server(&mock, "num_voters: 2").await;
    let run = server.run("par", prompt(LANGUAGES)).await;
    let result = finished(&run);
    let votes = &result["votes"];
    assert_eq!(votes["answer"], "JavaScript");
    assert_eq!(votes["count"], 1);
    assert_eq!(votes["tie_break"]["method"], "judge");
    assert_eq!(votes["tie_break"]["tied"], json!(["Python", "JavaScript"]));

    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    let judge: Vec<&MockRequest> = requests.iter().filter(|r| is_judge(r)).collect();
    assert_eq!(judge.len(), 1, "one judge call");
    let judge_prompt = judge[0].last_user().unwrap_or_default();
    assert!(judge_prompt.contains("Python") && judge_prompt.contains("JavaScript"));
    assert_eq!(
        judge[0].format.as_ref().expect("schema")["properties"]["answer"]["enum"],
        json!(["Python", "JavaScript"])
    );
    let text = run.final_text();
    assert!(text.contains("the judge prefers the web"), "{text}");
    assert!(text.contains("broken by a judge"), "{text}");
    let judged = position(&run, |e| {
        e["type"] == "STEP_FINISHED" && e["stepName"] == "tie_break"
    });
    assert!(
        judged
            < position(&run, |e| e["type"] == "TEXT_MESSAGE_START"
                && e.get("subagentRunId").is_none())
    );
}

#[tokio::test]
async fn the_earliest_voter_breaks_a_tie_when_configured_or_when_the_judge_fails() {
    let mock = MockLlm::start().await;
    let server_first = server(&mock, "num_voters: 2\ntie_break: first").await;
    let run = server_first.run("par", prompt(LANGUAGES)).await;
    let result = finished(&run);
    assert_eq!(result["votes"]["answer"], "Python");
    assert_eq!(result["votes"]["tie_break"]["method"], "first");
    assert_eq!(mock.request_count(), 2, "no judge call");
    assert!(run.final_text().contains("earliest voter"));

    mock.reset_stats();
    mock.respond_with(|req| {
        if is_judge(req) {
            MockReply::new().status(400, "judge unavailable")
        } else {
            auto_reply(req, 8)
        }
    });
    let server_judge = server(&mock, "num_voters: 2").await;
    let run = server_judge.run("par", prompt(LANGUAGES)).await;
    let result = finished(&run);
    let tie_break = &result["votes"]["tie_break"];
    assert_eq!(result["votes"]["answer"], "Python");
    assert_eq!(tie_break["method"], "first");
    assert!(tie_break["note"]
        .as_str()
        .is_some_and(|n| n.contains("judge unavailable")));
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test]
async fn too_few_valid_votes_fail_the_run_and_say_why() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| match req.seed {
        Some(43) => MockReply::new().status(400, "context overflow"),
        Some(44) => json_reply("Ruby", "neither"),
        _ => auto_reply(req, 8),
    });
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(LANGUAGES)).await;
    let message = failed(&run, "quorum_not_met");
    assert!(message.contains("2 of 3 voters failed"), "{message}");
    assert!(message.contains("2 are needed"), "{message}");
    assert!(message.contains("Voter 2") && message.contains("context overflow"));
    assert!(message.contains("Voter 3: 'Ruby' is not one of: Python, JavaScript"));
    let ends: Vec<String> = subagents(&run).into_iter().map(|(_, _, e)| e).collect();
    assert_eq!(
        ends,
        ["SUBAGENT_FINISHED", "SUBAGENT_ERROR", "SUBAGENT_ERROR"]
    );
    assert_eq!(run.final_text(), "");
}

#[tokio::test]
async fn a_failed_voter_is_left_out_when_the_quorum_holds() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| match req.seed {
        Some(43) => MockReply::new().text("not json at all"),
        _ => auto_reply(req, 8),
    });
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(LANGUAGES)).await;
    let result = finished(&run);
    let votes = &result["votes"];
    assert_eq!(votes["answer"], "Python");
    assert_eq!(votes["valid"], 2);
    assert_eq!(votes["agreement"], 1.0);
    assert!(votes["ballots"][1]["error"].is_string());
    let text = run.final_text();
    assert!(text.starts_with("**Python** (2 of 3 voters)"), "{text}");
    assert!(text.contains("Not counted: Voter 2"), "{text}");
    let activity = &result["activity"];
    assert_eq!(activity["failed_tasks"], 1);
    assert_eq!(activity["results"][1]["status"], Value::from("failed"));
}

#[tokio::test]
async fn perspectives_are_given_to_the_voters_in_turn() {
    let mock = MockLlm::start().await;
    let server = server(
        &mock,
        "voter_perspectives: [\"an economist\", \"an engineer\"]",
    )
    .await;
    let run = server.run("par", prompt(LANGUAGES)).await;
    finished(&run);
    let mut requests = mock.requests();
    requests.sort_by_key(|r| r.seed);
    let views: Vec<bool> = requests
        .iter()
        .map(|r| system_of(r).contains("an economist"))
        .collect();
    assert_eq!(views, [true, false, true]);
    assert!(system_of(&requests[1]).contains("an engineer"));
}

#[tokio::test]
async fn voters_failing_alike_are_named_once_with_the_backend_code() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    mock.stop();
    let run = server.run("par", prompt(LANGUAGES)).await;
    backend_down(
        &run,
        &mock,
        "3 of 3 voters failed, leaving 0 valid votes where 2 are needed: Voter 1, Voter 2 and Voter 3",
    );
}

#[tokio::test]
async fn answers_refused_alike_keep_the_quorum_code() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| match req.seed {
        Some(42) => auto_reply(req, 8),
        _ => json_reply("Ruby", "neither"),
    });
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(LANGUAGES)).await;
    let message = failed(&run, "quorum_not_met");
    assert_eq!(
        message,
        "2 of 3 voters failed, leaving 1 valid vote where 2 are needed: Voter 2 and Voter 3: 'Ruby' is not one of: Python, JavaScript"
    );
}
