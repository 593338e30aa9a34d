#![cfg(feature = "real-model")]
//! The room's three suggestions through the router against a real model (SmolLM2-135M), behind
//! llama-cpp-python's OpenAI-compatible server and behind the Ollama-native shim
//! (`scripts/ollama_shim.py`, what `ROOMHOST_LLM_API=ollama` talks to), both started by
//! `scripts/with-real-model.sh`. Asserts structure, never wording.

use std::time::Duration;

use crate::support::harness::{
    real_llm, real_ollama, slots, test_settings, RunResult, TempDir, TestServer,
};
use crate::support::parallelization::{finished, prompt, room_yaml, subagents, ROOM};
use roomhost::agents::Registry;
use roomhost::llm::{LlmApi, OpenAiJsonMode};

/// The router against the real model through `api`. The room leaves `think` off (`room_yaml`), as
/// a model without a thinking mode needs on Ollama.
async fn real_server(api: LlmApi) -> TestServer {
    let (url, model) = match api {
        LlmApi::Openai => real_llm(),
        LlmApi::Ollama => real_ollama(),
    };
    // The server's context is 2048 tokens; short answers keep the runs quick on a busy machine.
    let dir = TempDir::with_rooms(&[&room_yaml(
        "num_ctx: 2048\nmax_tokens: 64\ntemperature: 0.2\nseed: 7",
    )]);
    let mut settings = test_settings(&url, dir.path.clone());
    settings.model = Some(model);
    settings.llm.api = api;
    // llama-cpp-python's server answers 500 to the standard json_schema form.
    settings.llm.openai_json_mode = OpenAiJsonMode::JsonObject;
    // Each serves one call at a time; the others wait in its queue (or in ours).
    settings.llm.max_concurrency = slots(1);
    settings.llm.first_byte_timeout = Duration::from_secs(120);
    settings.llm.idle_timeout = Duration::from_secs(60);
    settings.llm.request_timeout = Duration::from_secs(180);
    TestServer::start_with(settings, Registry::builtin(), dir).await
}

/// Runs `text` in the room. A tiny model on a busy 2-core machine can take minutes for a whole
/// run, longer than the harness client waits.
async fn run(server: &TestServer, text: &str) -> RunResult {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let response = client
        .post(format!("{}/rooms/{ROOM}/run", server.url))
        .json(&prompt(text))
        .send()
        .await
        .expect("POST");
    RunResult::read(response).await
}

async fn sectioning_writes_the_three_sections_in_order(api: LlmApi) {
    let server = real_server(api).await;
    let run = run(
        &server,
        "Write about AI ethics: Privacy, Bias, Transparency",
    )
    .await;
    let result = finished(&run);
    assert_eq!(result["strategy"], "sectioning");
    let ends: Vec<String> = subagents(&run).into_iter().map(|(_, _, e)| e).collect();
    assert_eq!(ends, ["SUBAGENT_FINISHED"; 3]);
    let text = run.final_text();
    let at = |heading: &str| {
        text.find(heading)
            .unwrap_or_else(|| panic!("no {heading} in {text}"))
    };
    assert!(at("## Privacy\n") < at("## Bias\n"));
    assert!(at("## Bias\n") < at("## Transparency\n"));
    let last = &text[at("## Transparency\n") + "## Transparency\n".len()..];
    assert!(!last.trim().is_empty(), "the last section has text");
}

async fn voting_answers_among_the_options_with_a_count(api: LlmApi) {
    let server = real_server(api).await;
    let run = run(&server, "Is remote work better than office work?").await;
    let result = finished(&run);
    let votes = &result["votes"];
    let answer = votes["answer"].as_str().unwrap_or("");
    assert!(["yes", "no"].contains(&answer), "{votes}");
    let count = votes["count"].as_u64().unwrap_or(0);
    assert!((2..=3).contains(&count), "a majority of 3: {votes}");
    assert!(
        run.final_text()
            .starts_with(&format!("**{answer}** ({count} of 3 voters)")),
        "{}",
        run.final_text()
    );
}

async fn map_reduce_summarizes_the_three_articles(api: LlmApi) {
    let server = real_server(api).await;
    let run = run(&server, "Summarize: Article1 | Article2 | Article3").await;
    let result = finished(&run);
    assert_eq!(result["strategy"], "map_reduce");
    assert_eq!(result["documents"], 3);
    assert_eq!(result["failed"].as_array().map(Vec::len), Some(0));
    assert!(!run.final_text().trim().is_empty());
}

#[tokio::test]
async fn openai_sectioning_writes_the_three_sections_in_order() {
    sectioning_writes_the_three_sections_in_order(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_sectioning_writes_the_three_sections_in_order() {
    sectioning_writes_the_three_sections_in_order(LlmApi::Ollama).await;
}

#[tokio::test]
async fn openai_voting_answers_among_the_options_with_a_count() {
    voting_answers_among_the_options_with_a_count(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_voting_answers_among_the_options_with_a_count() {
    voting_answers_among_the_options_with_a_count(LlmApi::Ollama).await;
}

#[tokio::test]
async fn openai_map_reduce_summarizes_the_three_articles() {
    map_reduce_summarizes_the_three_articles(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_map_reduce_summarizes_the_three_articles() {
    map_reduce_summarizes_the_three_articles(LlmApi::Ollama).await;
}
