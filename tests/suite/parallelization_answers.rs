//! Real models as they are, against the mock LLM: structured answers read from JSON in its usual
//! wrappings, re-asked once, or read from prose; the thinking fallback for a model without a
//! thinking mode; a cap per role and the calls that hit it; the repetition guard.

use crate::support::mock_llm::{auto_reply, prose_reply, MockLlm, MockReply, MockRequest};
use crate::support::parallelization::{failed, finished, prompt, server, server_with, system_of};
use serde_json::{json, Value};

const LANGUAGES: &str = "Which is better: Python or JavaScript?";
const AI_ETHICS: &str = "Write about AI ethics: Privacy, Bias, Transparency";

fn ballot(answer: &str) -> String {
    json!({"answer": answer, "reasoning": "it reads well"}).to_string()
}

/// Every voter gives `text`; the run's ballots and each task's `source`.
async fn voters_say(text: String) -> (Vec<Value>, Vec<Value>) {
    let mock = MockLlm::start().await;
    mock.respond_with(move |_| MockReply::new().text(&text));
    let server = server(&mock, "").await;
    let result = finished(&server.run("par", prompt(LANGUAGES)).await);
    assert_eq!(mock.request_count(), 3, "read at once, never re-asked");
    let ballots = result["votes"]["ballots"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let results = result["activity"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (ballots, results)
}

#[tokio::test]
async fn json_is_found_bare_fenced_after_a_preamble_and_after_the_final_channel() {
    for text in [
        ballot("Python"),
        format!("```json\n{}\n```", ballot("Python")),
        format!(
            "The form is {{\"answer\": ...}}. Python is simpler to start with, so:\n{}",
            ballot("Python")
        ),
        format!(
            "<|channel|>analysis<|message|>{}<|end|><|start|>assistant<|channel|>final<|message|>{}",
            ballot("JavaScript"),
            ballot("Python")
        ),
    ] {
        let (ballots, results) = voters_say(text.clone()).await;
        for (b, r) in ballots.iter().zip(&results) {
            assert_eq!(b["answer"], "Python", "{text}");
            assert_eq!(b["source"], "json", "{text}");
            assert_eq!(r["source"], "json", "{text}");
        }
    }
}

fn is_reask(req: &MockRequest) -> bool {
    req.messages.len() > 2
}

#[tokio::test]
async fn a_reply_that_is_not_the_json_is_asked_again_in_the_same_conversation() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if is_reask(req) {
            MockReply::new().text(ballot("JavaScript"))
        } else {
            MockReply::new().text("Both have merits.")
        }
    });
    let server = server(&mock, "").await;
    let result = finished(&server.run("par", prompt(LANGUAGES)).await);
    assert_eq!(result["votes"]["answer"], "JavaScript");
    for b in result["votes"]["ballots"].as_array().into_iter().flatten() {
        assert_eq!(b["source"], "reask", "{b}");
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), 6, "each voter re-asked once");
    let again = requests.iter().find(|r| is_reask(r)).expect("a re-ask");
    let roles: Vec<&str> = again.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(again.messages[2].content, "Both have merits.");
    let reask = &again.messages[3].content;
    assert!(reask.contains("not the JSON object asked for"), "{reask}");
    assert!(again.schema().is_some(), "the schema is asked for again");
}

#[tokio::test]
async fn prose_that_names_one_option_is_read_as_free_text() {
    let mock = MockLlm::start().await;
    mock.respond_with(prose_reply);
    let server = server(&mock, "seed: 42").await;
    let run = server.run("par", prompt(LANGUAGES)).await;
    let result = finished(&run);
    let votes = &result["votes"];
    // The prose picks enum value `seed % 2`: seeds 42, 43, 44 say Python, JavaScript, Python.
    assert_eq!(votes["answer"], "Python");
    assert_eq!(votes["count"], 2);
    for b in votes["ballots"].as_array().into_iter().flatten() {
        assert_eq!(b["source"], "free_text", "{b}");
        assert!(b["reasoning"]
            .as_str()
            .is_some_and(|r| r.starts_with("I'd pick")));
    }
    for r in result["activity"]["results"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(r["source"], "free_text", "{r}");
    }
    assert_eq!(mock.request_count(), 6, "re-asked before reading the prose");
    // The voters were told the form and the options, not only given a schema.
    let system = system_of(&mock.requests()[0]);
    assert!(system.contains("\"answer\"") && system.contains("Python, JavaScript"));
}

#[tokio::test]
async fn prose_naming_no_single_option_fails_the_vote_after_one_reask() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().text("Python and JavaScript both work well."));
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(LANGUAGES)).await;
    let message = failed(&run, "quorum_not_met");
    assert!(
        message.contains("not the JSON object asked for"),
        "{message}"
    );
    assert_eq!(mock.request_count(), 6);
}

#[tokio::test]
async fn the_default_think_level_falls_back_for_a_model_without_thinking() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if req.think.is_some() {
            MockReply::new().status(400, "\"mock\" does not support thinking")
        } else {
            auto_reply(req, 8)
        }
    });
    // `think` is set the way the shipped room leaves it: the default, low.
    let server = server(&mock, "think: low").await;
    let result = finished(&server.run("par", prompt(LANGUAGES)).await);
    assert_eq!(result["votes"]["valid"], 3);
    let with_think = mock.requests().iter().filter(|r| r.think.is_some()).count();
    assert!(with_think >= 1, "thinking was asked for first");
    let run = server.run("par", prompt(LANGUAGES)).await;
    finished(&run);
    let late = &mock.requests()[with_think + 3..];
    assert!(late.iter().all(|r| r.think.is_none()), "remembered");
}

#[tokio::test]
async fn an_explicit_think_off_sends_none() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "think: \"off\"").await;
    finished(&server.run("par", prompt(LANGUAGES)).await);
    assert!(mock.requests().iter().all(|r| r.think.is_none()));
}

#[tokio::test]
async fn each_role_has_a_token_cap_and_the_room_may_change_it() {
    let mock = MockLlm::start().await;
    let defaults = server(&mock, "").await;
    finished(&defaults.run("par", prompt(LANGUAGES)).await);
    assert!(mock.requests().iter().all(|r| r.max_tokens == Some(1024)));
    mock.reset_stats();
    let custom = server(&mock, "max_tokens: {voter: 77, section: 99}").await;
    finished(&custom.run("par", prompt(LANGUAGES)).await);
    finished(&custom.run("par", prompt(AI_ETHICS)).await);
    let caps: Vec<Option<i64>> = mock.requests().iter().map(|r| r.max_tokens).collect();
    assert_eq!(
        caps,
        [Some(77), Some(77), Some(77), Some(99), Some(99), Some(99)]
    );
    mock.reset_stats();
    let one = server(&mock, "max_tokens: 55").await;
    finished(&one.run("par", prompt(AI_ETHICS)).await);
    assert!(mock.requests().iter().all(|r| r.max_tokens == Some(55)));
}

#[tokio::test]
async fn a_call_that_hits_its_cap_is_complete_and_marked_truncated() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if req
            .last_user()
            .is_some_and(|u| u.starts_with("Your section: Bias"))
        {
            MockReply::new()
                .text("Bias enters through the data and")
                .done_reason("length")
        } else {
            auto_reply(req, 8)
        }
    });
    let server = server(&mock, "").await;
    let result = finished(&server.run("par", prompt(AI_ETHICS)).await);
    let results = result["activity"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let marks: Vec<&Value> = results.iter().map(|r| &r["truncated"]).collect();
    assert_eq!(marks, [&Value::Null, &json!("max_tokens"), &Value::Null]);
    assert!(results.iter().all(|r| r["status"] == "complete"));
    assert_eq!(result["sections"][1]["status"], "complete");
}

#[tokio::test]
async fn a_looping_answer_is_stopped_and_marked() {
    let mock = MockLlm::start().await;
    let sentence = "The articles say the same thing again. ";
    mock.respond_with(move |req| {
        if req
            .last_user()
            .is_some_and(|u| u.starts_with("Your section: Bias"))
        {
            MockReply::new().text(format!("Bias matters. {}", sentence.repeat(200)))
        } else {
            auto_reply(req, 8)
        }
    });
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(AI_ETHICS)).await;
    let result = finished(&run);
    let bias = &result["activity"]["results"][1];
    assert_eq!(bias["truncated"], "repetition", "{bias}");
    assert_eq!(bias["status"], "complete");
    let output = bias["output"].as_str().unwrap_or_default();
    let repeats = output.matches(sentence.trim()).count();
    assert!(
        (4..40).contains(&repeats),
        "stopped early: {repeats} repeats"
    );
}

#[tokio::test]
async fn without_structured_output_no_schema_is_sent_and_the_prompt_still_asks_for_json() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        MockReply::new().text(ballot(if req.seed == Some(43) {
            "JavaScript"
        } else {
            "Python"
        }))
    });
    let server = server_with(&mock, "", |s| s.llm.structured_output = false).await;
    let result = finished(&server.run("par", prompt(LANGUAGES)).await);
    assert_eq!(result["votes"]["answer"], "Python");
    let requests = mock.requests();
    assert!(requests.iter().all(|r| r.format.is_none()));
    assert!(system_of(&requests[0]).contains("reply with JSON only"));
}
