//! How a task's tokens reach the client: coalesced deltas, and thinking kept out of answers or
//! shown as the subagent's reasoning.

use std::time::{Duration, Instant};

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

/// The coalescing rule (`messages::Coalescer`): the first delta goes out at once, then text is
/// held until 64 bytes are buffered or the oldest held byte is 50 ms old.
const FLUSH_BYTES: usize = 64;
const FLUSH_AFTER: Duration = Duration::from_millis(50);

#[tokio::test]
async fn token_deltas_are_coalesced() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().chunks(vec!["word ".to_owned(); 50]));
    let server = server(&mock, "").await;
    let started = Instant::now();
    let run = server.run("par", prompt(SECTIONS)).await;
    // Text can only be flushed by age once per FLUSH_AFTER, so the wall time of the run bounds
    // how many frames a slow (busy) machine may add; a fast one gets the size rule alone.
    let age_flushes = (started.elapsed().as_millis() / FLUSH_AFTER.as_millis()) as usize;
    finished(&run);
    for (id, _, _) in subagents(&run) {
        assert_eq!(run.subagent_text(&id), "word ".repeat(50));
        let frames: Vec<&str> = run
            .of_type("TEXT_MESSAGE_CONTENT")
            .iter()
            .filter(|e| e["subagentRunId"] == id.as_str())
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(frames[0], "word ", "the first token is not held back");
        assert!(
            frames.iter().all(|f| f.len() < FLUSH_BYTES + "word ".len()),
            "text is flushed as soon as {FLUSH_BYTES} bytes are held: {frames:?}"
        );
        // 250 bytes in 50 tokens: the first, at most 3 full buffers, the rest at the end.
        let most = 1 + (250 - 5) / FLUSH_BYTES + 1 + age_flushes;
        assert!(
            frames.len() <= most,
            "{} frames for 50 tokens, at most {most} allowed",
            frames.len()
        );
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
