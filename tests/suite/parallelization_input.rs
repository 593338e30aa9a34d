//! What the agent refuses before the stream starts (HTTP 400) and which room configs it refuses.

use crate::support::mock_llm::MockLlm;
use crate::support::parallelization::{finished, prompt, server};
use roomhost::agents::parallelization::create;
use roomhost::agents::AgentDeps;
use roomhost::config::LlmConfig;
use roomhost::llm::build_client;
use serde_json::json;

#[tokio::test]
async fn bad_choices_are_refused_before_the_stream() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let cases = [
        (
            json!({"prompt": "Hello", "forwardedProps": {"strategy": "bogus"}}),
            "unknown strategy 'bogus'",
        ),
        (prompt("/brainstorm ideas"), "unknown command /brainstorm"),
        (prompt("Summarize"), "nothing to summarize"),
        (
            json!({"prompt": "Hi", "forwardedProps": {"documents": [1]}}),
            "documents[0] must be a string",
        ),
    ];
    for (body, message) in cases {
        let run = server.run("par", body).await;
        assert_eq!(run.status, 400, "{message}");
        assert!(run.events.is_empty());
        assert!(
            run.error_body.to_string().contains(message),
            "{message}: {}",
            run.error_body
        );
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn an_explicit_strategy_overrides_the_pattern() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let body = json!({"prompt": "Energy: Wind, Sun", "forwardedProps": {"strategy": "voting"}});
    let result = finished(&server.run("par", body).await);
    assert_eq!(result["strategy"], "voting");
    assert_eq!(result["strategy_source"], "explicit");
    assert_eq!(result["activity"]["strategy"], "voting");
    assert_eq!(mock.request_count(), 3);
}

#[test]
fn room_configs_are_checked() {
    let deps = AgentDeps {
        llm: build_client(&LlmConfig::default().settings()).expect("client"),
        model_override: Some("override:1b".into()),
    };
    assert!(create(&json!({}), &deps).is_ok());
    let refused = [
        (
            json!({"num_voter": 3}),
            "num_voter",
            "unknown field `num_voter`",
        ),
        (json!({"num_voters": 16}), "num_voters", "out of range"),
        (
            json!({"num_voters": 3, "quorum": 4}),
            "quorum",
            "between 1 and num_voters",
        ),
        (json!({"tie_break": "coin"}), "tie_break", "unknown variant"),
        (json!({"think": "max"}), "think", "unknown variant"),
        (
            json!({"max_parallel_tasks": 0}),
            "max_parallel_tasks",
            "out of range",
        ),
        (json!({"num_ctx": 100}), "num_ctx", "out of range"),
        (
            json!({"min_sections": 5, "max_sections": 4}),
            "max_sections",
            "min_sections",
        ),
    ];
    for (extra, field, message) in refused {
        let Err(e) = create(&extra, &deps) else {
            panic!("{extra} was accepted");
        };
        assert_eq!(e.field, field, "{extra}");
        assert!(e.message.contains(message), "{extra}: {}", e.message);
    }
}
