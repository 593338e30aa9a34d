//! Sectioning through the router with the mock LLM: the document, its progressive stream, planned
//! sections and failed sections.

use std::time::Duration;

use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::{
    backend_down, failed, finished, position, prompt, section_of, server, subagents,
};

const AI_ETHICS: &str = "Write about AI ethics: Privacy, Bias, Transparency";

/// Types without the streaming noise, to compare whole runs.
fn outline(run: &crate::support::harness::RunResult) -> Vec<String> {
    run.events
        .iter()
        .filter(|e| {
            !matches!(
                e["type"].as_str(),
                Some("TEXT_MESSAGE_CONTENT" | "ACTIVITY_DELTA")
            )
        })
        .map(|e| match e["type"].as_str().unwrap_or("?") {
            t @ ("STEP_STARTED" | "STEP_FINISHED") => {
                format!("{t} {}", e["stepName"].as_str().unwrap_or(""))
            }
            t if e.get("subagentRunId").is_some() => format!("{t} (subagent)"),
            t => t.to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn listed_sections_become_one_document_in_order() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(AI_ETHICS)).await;
    let result = finished(&run);

    assert_eq!(result["strategy"], "sectioning");
    assert_eq!(result["strategy_source"], "pattern");
    let activity = &result["activity"];
    assert_eq!(activity["sections_source"], "listed");
    assert_eq!(activity["total_tasks"], 3);
    assert_eq!(activity["completed_tasks"], 3);
    let labels: Vec<&str> = activity["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["label"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        labels,
        ["Section: Privacy", "Section: Bias", "Section: Transparency"]
    );

    let subs = subagents(&run);
    let names: Vec<&str> = subs.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, labels);
    assert!(subs.iter().all(|(_, _, end)| end == "SUBAGENT_FINISHED"));

    // The server writes the title and the headings; each section is its writer's text.
    let text = run.final_text();
    let mut expected = "# AI ethics\n\n".to_owned();
    for (i, (id, name, _)) in subs.iter().enumerate() {
        let section = name.trim_start_matches("Section: ");
        if i > 0 {
            expected.push_str("\n\n");
        }
        expected.push_str(&format!("## {section}\n\n{}", run.subagent_text(id)));
        assert_eq!(
            activity["results"][i]["output"].as_str(),
            Some(run.subagent_text(id).as_str())
        );
    }
    assert_eq!(text, expected);

    // Every writer knows the topic, its own section and the others.
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    let mut asked: Vec<String> = requests.iter().map(section_of).collect();
    asked.sort();
    assert_eq!(asked, ["Bias", "Privacy", "Transparency"]);
    for r in &requests {
        let user = r.last_user().unwrap_or_default();
        assert!(user.contains("Write about AI ethics"), "{user}");
        assert!(user.contains("Privacy; Bias; Transparency"), "{user}");
        assert!(r.format.is_none());
    }

    let outline = outline(&run);
    let n = outline.len();
    assert_eq!(
        outline[..4],
        [
            "RUN_STARTED",
            "ACTIVITY_SNAPSHOT",
            "STEP_STARTED fan_out",
            "SUBAGENT_STARTED (subagent)"
        ]
    );
    assert_eq!(
        outline[n - 4..],
        [
            "STEP_STARTED aggregate",
            "TEXT_MESSAGE_END",
            "STEP_FINISHED aggregate",
            "RUN_FINISHED"
        ]
    );
    assert_eq!(
        outline
            .iter()
            .filter(|t| *t == "SUBAGENT_FINISHED (subagent)")
            .count(),
        3
    );

    let usage = run.last()["usage"].as_array().expect("usage").clone();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["model"], "mock");
    assert!(usage[0]["inputTokens"].as_u64().unwrap_or(0) > 0);
    assert!(usage[0]["outputTokens"].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        run.last()["result"]["llm_requests"],
        mock.request_count(),
        "the result counts the LLM requests answered"
    );
}

#[tokio::test]
async fn sections_are_planned_when_none_are_listed() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "min_sections: 3\nmax_sections: 4").await;
    let run = server
        .run("par", prompt("/sectioning Write about the ocean"))
        .await;
    let result = finished(&run);
    assert_eq!(result["strategy_source"], "explicit");
    assert_eq!(result["activity"]["sections_source"], "planned");

    let requests = mock.requests();
    assert_eq!(requests.len(), 4, "one plan call and three writers");
    let plan = &requests[0];
    let schema = plan.format.as_ref().expect("the plan asks for JSON");
    assert_eq!(schema["properties"]["sections"]["minItems"], 3);
    assert_eq!(schema["properties"]["sections"]["maxItems"], 4);
    assert!(requests[1..].iter().all(|r| r.format.is_none()));

    let plan_step = position(&run, |e| {
        e["type"] == "STEP_FINISHED" && e["stepName"] == "plan"
    });
    let first_writer = position(&run, |e| e["type"] == "SUBAGENT_STARTED");
    assert!(plan_step < first_writer);
    let subs = subagents(&run);
    assert_eq!(subs.len(), 3);
    let text = run.final_text();
    assert!(text.starts_with("# The ocean\n\n## "), "{text}");
    let mut at = 0;
    for (_, name, _) in &subs {
        let heading = format!("## {}", name.trim_start_matches("Section: "));
        let found = text[at..].find(&heading).expect("headings in plan order");
        at += found + heading.len();
    }
}

#[tokio::test]
async fn the_document_streams_progressively() {
    let mock = MockLlm::start().await;
    // The first section streams slowly, the others answer at once.
    mock.respond_with(|req| {
        let section = section_of(req);
        match section.as_str() {
            "Privacy" => MockReply::new()
                .text("privacy one two three four five")
                .chunk_delay(Duration::from_millis(80)),
            other => MockReply::new().text(format!("{other} text here")),
        }
    });
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(AI_ETHICS)).await;
    finished(&run);

    let subs = subagents(&run);
    let finished_at = |name: &str| {
        let id = &subs.iter().find(|(_, n, _)| n == name).expect("subagent").0;
        position(&run, |e| {
            e["type"] == "SUBAGENT_FINISHED" && e["subagentRunId"] == id.as_str()
        })
    };
    let answer_delta = |needle: &str| {
        position(&run, |e| {
            e["type"] == "TEXT_MESSAGE_CONTENT"
                && e.get("subagentRunId").is_none()
                && e["delta"].as_str().unwrap_or("").contains(needle)
        })
    };
    let privacy_done = finished_at("Section: Privacy");
    // The first section's tokens reach the answer live, well before its writer is done...
    assert!(answer_delta("privacy") < privacy_done);
    let live_deltas = run.events[..privacy_done]
        .iter()
        .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT" && e.get("subagentRunId").is_none())
        .count();
    assert!(
        live_deltas >= 2,
        "the first section came in {live_deltas} piece(s)"
    );
    // ...while the later sections, though written first, wait for the ones before them.
    assert!(finished_at("Section: Bias") < privacy_done);
    assert!(answer_delta("Bias text") > privacy_done);
    assert!(answer_delta("Transparency text") > finished_at("Section: Bias"));
    assert!(answer_delta("Transparency text") > answer_delta("Bias text"));
}

#[tokio::test]
async fn a_failed_section_is_marked_and_the_others_kept() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| match section_of(req).as_str() {
        "Bias" => MockReply::new().status(400, "the model refused"),
        "Transparency" => MockReply::new()
            .text("transparency starts and then")
            .error_after(2, "the model crashed"),
        other => MockReply::new().text(format!("{other} text")),
    });
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(AI_ETHICS)).await;
    let result = finished(&run);

    let activity = &result["activity"];
    assert_eq!(activity["completed_tasks"], 1);
    assert_eq!(activity["failed_tasks"], 2);
    assert_eq!(activity["results"][1]["status"], "failed");
    let error = activity["results"][1]["error"].as_str().unwrap_or("");
    assert!(error.contains("the model refused"), "{error}");
    assert_eq!(activity["notes"].as_array().map(Vec::len), Some(2));

    let ends: Vec<String> = subagents(&run).into_iter().map(|(_, _, e)| e).collect();
    assert_eq!(
        ends,
        ["SUBAGENT_FINISHED", "SUBAGENT_ERROR", "SUBAGENT_ERROR"]
    );
    let text = run.final_text();
    assert!(text.contains("## Privacy\n\nPrivacy text"), "{text}");
    assert!(
        text.contains("## Bias\n\n_This section could not be written:"),
        "{text}"
    );
    assert!(
        text.contains("## Transparency\n\ntransparency starts \n\n_This section was cut short:"),
        "{text}"
    );
    let sections = result["sections"].as_array().expect("sections");
    assert_eq!(sections[1]["status"], "failed");
}

#[tokio::test]
async fn no_section_written_is_a_run_error() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().status(400, "no such model today"));
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(AI_ETHICS)).await;
    // Every section failed with the same LLM error: its code is the run's.
    let message = failed(&run, "llm_http_error");
    assert!(
        message.starts_with(
            "no section could be written (3 of 3 failed): Privacy, Bias and Transparency: "
        ),
        "{message}"
    );
    assert_eq!(
        message.matches("no such model today").count(),
        1,
        "{message}"
    );
    assert_eq!(run.final_text(), "");
    assert!(run
        .of_type("TEXT_MESSAGE_START")
        .iter()
        .all(|e| e.get("subagentRunId").is_some()));
    let activity = run.activity_state();
    assert_eq!(activity["failed_tasks"], 3);
    assert!(activity["results"]
        .as_array()
        .is_some_and(|r| r.iter().all(|t| t["status"] == "failed")));
}

#[tokio::test]
async fn a_backend_that_is_down_is_said_once_with_its_code() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    mock.stop();
    let run = server
        .run("par", prompt("Write about AI ethics: Privacy, Bias"))
        .await;
    backend_down(
        &run,
        &mock,
        "no section could be written (2 of 2 failed): Privacy and Bias",
    );
    let reason = "cannot connect to the LLM backend 1";
    let notes = run.activity_state()["notes"].clone();
    let notes = notes.as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0]
        .as_str()
        .is_some_and(|n| n.starts_with(&format!("Sections Privacy and Bias: {reason}"))));
}

#[tokio::test]
async fn different_reasons_are_each_said_once_under_the_strategy_code() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| match section_of(req).as_str() {
        "Bias" => MockReply::new().status(400, "the model refused"),
        _ => MockReply::new(),
    });
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(AI_ETHICS)).await;
    let message = failed(&run, "all_tasks_failed");
    assert!(
        message.starts_with(
            "no section could be written (3 of 3 failed): Privacy and Transparency: the model returned an empty answer; Bias: "
        ),
        "{message}"
    );
    assert_eq!(message.matches("empty answer").count(), 1, "{message}");
    assert_eq!(message.matches("the model refused").count(), 1, "{message}");
    let notes = run.activity_state()["notes"].clone();
    assert_eq!(notes.as_array().map(Vec::len), Some(2), "{notes}");
}
