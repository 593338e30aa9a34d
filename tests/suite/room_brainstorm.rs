//! The brainstorm arena: every persona pitches at once, near-duplicates are merged, then the
//! voters rank at once only the others' ideas; the Borda count and its tie rule, failed personas
//! and voters, the legacy profile and the shipped room file.

use std::sync::Arc;

use serde_json::json;

use crate::support::harness::{eventually, test_settings, verify_agui, TempDir, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply, MockRequest};
use crate::support::parallelization::{finished, prompt, statuses, system_of};
use roomhost::agents::brainstorm::prompts::{GENERATOR_MARK, PERSONAS, VOTER_MARK};
use roomhost::agents::Registry;

const CHALLENGE: &str = "Ways to get more people cycling";

async fn server(mock: &MockLlm, voters: u32) -> TestServer {
    let room = format!(
        "id: brainstorm\nname: Brainstorm\nagent:\n  kind: factory\n  factory_name: crazy_glue.factories.brainstorm_factory.create_brainstorm_agent\n  with_agent_config: true\n  extra_config:\n    model_name: mock\n    think: \"off\"\n    num_voters: {voters}\n"
    );
    let dir = TempDir::with_rooms(&[&room]);
    let settings = test_settings(&mock.url(), dir.path.clone());
    TestServer::start_with(settings, Registry::builtin(), dir).await
}

/// Which persona a call is for, and whether it votes.
fn call_of(req: &MockRequest) -> (&'static str, bool) {
    let system = system_of(req);
    let persona = PERSONAS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| system.starts_with(&format!("You are the {name}")))
        .unwrap_or_else(|| panic!("unknown persona: {system}"));
    if system.contains(VOTER_MARK) {
        (persona, true)
    } else if system.contains(GENERATOR_MARK) {
        (persona, false)
    } else {
        panic!("unknown call: {system}")
    }
}

/// The numbered ideas a voter was shown, in order.
fn ballot(req: &MockRequest) -> Vec<String> {
    req.last_user()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(". "))
        .filter(|(n, _)| n.parse::<usize>().is_ok())
        .map(|(_, idea)| idea.to_owned())
        .collect()
}

/// Each persona pitches its own idea plus "Car-free Sundays" (worded differently by each); each
/// voter ranks its ballot in the order `rank` gives (ideas named, best first).
fn arena(rank: &'static [&'static str]) -> impl Fn(&MockRequest) -> MockReply {
    move |req| {
        let (persona, votes) = call_of(req);
        if !votes {
            let shared = match persona {
                "Visionary" => "Car-free Sundays.",
                "Pragmatist" => "car free   sundays",
                _ => "CAR-FREE SUNDAYS!",
            };
            return MockReply::new().text(format!("1. Idea of the {persona}\n2. {shared}"));
        }
        let ballot = ballot(req);
        let mut order: Vec<usize> = Vec::new();
        for wanted in rank {
            if let Some(at) = ballot.iter().position(|i| i.contains(wanted)) {
                order.push(at + 1);
            }
        }
        MockReply::new().text(json!({"ranking": order}).to_string())
    }
}

const VISIONARY_FIRST: &[&str] = &["Visionary", "Car-free", "Pragmatist", "Skeptic", "Maverick"];

#[tokio::test]
async fn personas_pitch_then_voters_rank_only_the_others_ideas_and_borda_decides() {
    let mock = MockLlm::start().await;
    mock.respond_with(arena(VISIONARY_FIRST));
    let server = server(&mock, 3).await;
    let run = server.run("brainstorm", prompt(CHALLENGE)).await;
    let result = finished(&run);

    let requests = mock.requests();
    let calls: Vec<(&str, bool)> = requests.iter().map(call_of).collect();
    assert_eq!(calls.len(), 4 + 3);
    assert!(calls[..4].iter().all(|(_, votes)| !votes), "{calls:?}");
    let mut voters: Vec<&str> = calls[4..]
        .iter()
        .map(|(p, v)| {
            assert!(v);
            *p
        })
        .collect();
    voters.sort();
    assert_eq!(
        voters,
        ["Pragmatist", "Skeptic", "Visionary"],
        "the first num_voters personas"
    );
    for (req, (persona, _)) in requests.iter().zip(&calls).skip(4) {
        let ballot = ballot(req);
        // Five distinct ideas; the shared one is every voter's own, and its own pitch too.
        assert_eq!(ballot.len(), 3, "{persona}: {ballot:?}");
        assert!(
            ballot
                .iter()
                .all(|i| !i.contains(persona) && !i.contains("Sundays")),
            "{ballot:?}"
        );
    }

    // Ballots of 3: the Visionary's idea gets 3 from the Pragmatist and the Skeptic; the
    // Pragmatist's gets 3 from the Visionary and 2 from the Skeptic; the Skeptic's 2 + 2; the
    // Maverick's 1 + 1 + 1.
    let activity = &result["activity"];
    assert_eq!(activity["total_ideas"], 5);
    assert_eq!(activity["top_idea"], "Idea of the Visionary");
    assert_eq!(activity["top_score"], 6);
    let scores: Vec<(String, u64)> = result["ideas"]
        .as_array()
        .expect("ideas")
        .iter()
        .map(|i| {
            (
                i["idea"].as_str().unwrap_or_default().to_owned(),
                i["score"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        scores,
        [
            ("Idea of the Visionary".to_owned(), 6),
            ("Idea of the Pragmatist".to_owned(), 5),
            ("Idea of the Skeptic".to_owned(), 4),
            ("Idea of the Maverick".to_owned(), 3),
            ("Car-free Sundays.".to_owned(), 0),
        ]
    );
    assert_eq!(
        result["ideas"][4]["authors"],
        json!(PERSONAS.iter().map(|p| p.0).collect::<Vec<_>>())
    );
    assert_eq!(
        statuses(&run),
        ["starting", "generating", "voting", "complete"]
    );
    assert_eq!(activity["phase"], "complete");
    assert_eq!(run.of_type("SUBAGENT_STARTED").len(), 7);
    let text = run.final_text();
    assert!(
        text.contains("1. Idea of the Visionary — 6 points (Visionary)"),
        "{text}"
    );
}

#[tokio::test]
async fn equal_scores_keep_the_order_the_ideas_were_offered_in() {
    let mock = MockLlm::start().await;
    // One voter (the Visionary) ranks nothing but the Maverick's idea, so the other two
    // unvoted ideas tie at zero behind it in the order offered.
    mock.respond_with(arena(&["Maverick"]));
    let server = server(&mock, 1).await;
    let result = finished(&server.run("brainstorm", prompt(CHALLENGE)).await);
    let order: Vec<&str> = result["ideas"]
        .as_array()
        .expect("ideas")
        .iter()
        .filter_map(|i| i["idea"].as_str())
        .collect();
    assert_eq!(
        order,
        [
            "Idea of the Maverick",
            "Idea of the Visionary",
            "Car-free Sundays.",
            "Idea of the Pragmatist",
            "Idea of the Skeptic"
        ]
    );
    assert_eq!(result["activity"]["top_score"], 3);
}

#[tokio::test]
async fn every_persona_pitches_at_once() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().text("thinking").hang());
    let server = server(&mock, 3).await;
    let reader = server.open_run("brainstorm", prompt(CHALLENGE)).await;
    // A persona that waited for another would leave fewer calls in flight.
    eventually("all four personas in flight", || mock.in_flight() == 4).await;
    assert!(
        mock.requests().iter().all(|r| !call_of(r).1),
        "no vote before the ideas"
    );
    drop(reader);
    eventually("all closed", || mock.in_flight() == 0).await;
}

#[tokio::test]
async fn a_failed_persona_and_a_failed_voter_are_reported_and_the_rest_counted() {
    let mock = MockLlm::start().await;
    let normal = Arc::new(arena(VISIONARY_FIRST));
    mock.respond_with(move |req| match call_of(req) {
        ("Maverick", false) => MockReply::new().status(400, "the maverick broke"),
        ("Skeptic", true) => MockReply::new().status(400, "the skeptic's vote broke"),
        _ => normal(req),
    });
    let server = server(&mock, 3).await;
    let run = server.run("brainstorm", prompt(CHALLENGE)).await;
    let result = finished(&run);
    let activity = &result["activity"];
    assert_eq!(activity["total_ideas"], 4);
    assert_eq!(activity["failed_tasks"], 2);
    let notes = activity["notes"].to_string();
    assert!(notes.contains("The Maverick failed"), "{notes}");
    assert!(notes.contains("The Skeptic's vote failed"), "{notes}");
    assert_eq!(run.of_type("SUBAGENT_ERROR").len(), 2);
    // Ballots of 2: Pragmatist gives the Visionary 2, the Visionary gives the Pragmatist 2.
    assert_eq!(activity["top_idea"], "Idea of the Visionary");
    assert_eq!(activity["top_score"], 2);
}

#[tokio::test]
async fn every_persona_failing_is_a_run_error() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().status(404, "model not found"));
    let server = server(&mock, 2).await;
    let run = server.run("brainstorm", prompt(CHALLENGE)).await;
    verify_agui(&run.events).expect("valid stream");
    let last = run.last();
    assert_eq!(last["type"], "RUN_ERROR", "{last}");
    assert_eq!(last["code"], "all_tasks_failed");
    assert_eq!(run.activity_state()["status"], "failed");
    assert_eq!(mock.request_count(), 4, "no vote without ideas");
}

#[tokio::test]
async fn a_ranking_in_prose_is_read_after_one_reask() {
    let mock = MockLlm::start().await;
    let normal = Arc::new(arena(VISIONARY_FIRST));
    mock.respond_with(move |req| match call_of(req) {
        (_, true) => MockReply::new().text("I like number 2 best, then 1."),
        _ => normal(req),
    });
    let server = server(&mock, 1).await;
    let result = finished(&server.run("brainstorm", prompt(CHALLENGE)).await);
    assert_eq!(
        mock.request_count(),
        4 + 2,
        "the voter was asked once more for JSON"
    );
    assert_eq!(result["activity"]["results"][4]["source"], "free_text");
    // The Visionary's ballot is the Pragmatist's, the Skeptic's and the Maverick's ideas.
    assert_eq!(result["activity"]["top_idea"], "Idea of the Skeptic");
    assert_eq!(result["activity"]["top_score"], 3);
}

#[test]
fn num_voters_out_of_range_is_refused() {
    use roomhost::agents::brainstorm::BrainstormConfig;
    for voters in [0, 5] {
        let err = BrainstormConfig::from_value(&json!({ "num_voters": voters }), None)
            .expect_err("the voters are one to four of the personas");
        assert_eq!(err.field, "num_voters");
    }
    let config = BrainstormConfig::from_value(&json!({"num_voters": 4}), None).expect("four");
    assert_eq!(config.num_voters, 4);
}

#[tokio::test]
async fn a_legacy_client_gets_no_subagents_and_the_same_result() {
    let mock = MockLlm::start().await;
    mock.respond_with(arena(VISIONARY_FIRST));
    let server = server(&mock, 3).await;
    let body = json!({"prompt": CHALLENGE, "forwardedProps": {"agui_profile": "legacy"}});
    let run = server.run("brainstorm", body).await;
    let result = finished(&run);
    assert!(
        run.types().iter().all(|t| !t.starts_with("SUBAGENT")),
        "{:?}",
        run.types()
    );
    assert_eq!(result["activity"]["top_score"], 6);
}

#[tokio::test]
async fn the_shipped_room_file_loads_in_the_originals_format() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/rooms/brainstorm/room_config.yaml"
    );
    let text = std::fs::read_to_string(path).expect("shipped");
    let mock = MockLlm::start().await;
    mock.respond_with(arena(VISIONARY_FIRST));
    let server = TestServer::start(&mock.url(), &text.replace("gpt-oss:20b", "mock")).await;
    let (status, room) = server.get("/rooms/brainstorm").await;
    assert_eq!(status, 200);
    assert_eq!(
        room["agent"]["factory_name"],
        "crazy_glue.factories.brainstorm_factory.create_brainstorm_agent"
    );
    assert!(room["suggestions"].as_array().is_some_and(|s| s.len() >= 5));
    let result = finished(&server.run("brainstorm", prompt(CHALLENGE)).await);
    assert_eq!(result["activity"]["top_idea"], "Idea of the Visionary");
}

#[tokio::test]
async fn the_mocks_default_replies_make_a_complete_arena() {
    // Generic replies (an echo for ideas, schema-shaped JSON for votes) still give a result:
    // what the conformance suite's mock LLM sends.
    let mock = MockLlm::start().await;
    let server = server(&mock, 3).await;
    let result = finished(&server.run("brainstorm", prompt(CHALLENGE)).await);
    assert_eq!(result["activity"]["status"], "complete");
    assert!(result["activity"]["total_ideas"].as_u64().unwrap_or(0) >= 1);
}
