//! How a task's tokens reach the client: coalesced deltas, and thinking kept out of answers or
//! shown as the subagent's reasoning.

use crate::support::harness::RunResult;
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::{finished, opening, prompt, prompt_start, server, subagents};
use roomhost::agents::parallelization::prompts;
use serde_json::Value;

const SECTIONS: &str = "Energy: Wind, Sun";

fn texts_mentioning(run: &RunResult, needle: &str) -> usize {
    run.of_type("TEXT_MESSAGE_CONTENT")
        .iter()
        .filter(|e| e["delta"].as_str().unwrap_or("").contains(needle))
        .count()
}

#[tokio::test]
async fn token_deltas_are_coalesced() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().chunks(vec!["word ".to_owned(); 50]));
    let server = server(&mock, "").await;
    let run = server.run("par", prompt(SECTIONS)).await;
    finished(&run);
    for (id, _, _) in subagents(&run) {
        assert_eq!(run.subagent_text(&id), "word ".repeat(50));
        let frames = run
            .of_type("TEXT_MESSAGE_CONTENT")
            .iter()
            .filter(|e| e["subagentRunId"] == id.as_str())
            .count();
        // 250 bytes in 50 tokens, flushed every 64 bytes.
        assert!((1..=5).contains(&frames), "{frames} frames for 50 tokens");
    }
}

#[tokio::test]
async fn thinking_stays_out_of_the_answers() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "think: low").await;
    let run = server.run("par", prompt(SECTIONS)).await;
    finished(&run);
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.think == Some(Value::from("low"))));
    assert!(run.types().iter().all(|t| !t.starts_with("REASONING")));
    assert_eq!(texts_mentioning(&run, "Considering"), 0);
    assert!(!run.final_text().is_empty());
}

#[tokio::test]
async fn shown_thinking_is_each_subagents_reasoning() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "think: low\nshow_thinking: true").await;
    let run = server.run("par", prompt(SECTIONS)).await;
    finished(&run);
    assert_eq!(texts_mentioning(&run, "Considering"), 0);
    for (id, _, _) in subagents(&run) {
        let of_this = |ty: &str| {
            run.events
                .iter()
                .position(|e| e["type"] == ty && e["subagentRunId"] == id.as_str())
                .unwrap_or_else(|| panic!("no {ty} for {id}"))
        };
        assert!(of_this("REASONING_START") < of_this("REASONING_MESSAGE_START"));
        assert!(of_this("REASONING_END") < of_this("TEXT_MESSAGE_START"));
        let thought: String = run
            .of_type("REASONING_MESSAGE_CONTENT")
            .iter()
            .filter(|e| e["subagentRunId"] == id.as_str())
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert!(
            thought.starts_with(&format!("Considering {}", opening(prompts::SECTION_USER))),
            "{thought}"
        );
    }
}

#[tokio::test]
async fn the_reduce_calls_thinking_is_the_runs_own_reasoning() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "think: low\nshow_thinking: true").await;
    let run = server.run("par", prompt("Summarize: A1 | B2")).await;
    finished(&run);
    let run_level: Vec<&Value> = run
        .of_type("REASONING_MESSAGE_CONTENT")
        .into_iter()
        .filter(|e| e.get("subagentRunId").is_none())
        .collect();
    assert!(!run_level.is_empty());
    assert!(!run.final_text().contains("Considering"));
    assert!(run
        .final_text()
        .starts_with(&prompt_start(prompts::SUMMARIES_USER, "Summarize")));
}
