//! Rooms: loading, listing and every start-up validation error, each with its message.

use crate::support::harness::{test_settings, TempDir, TestServer};
use roomhost::agents::Registry;
use roomhost::state::StartupError;
use roomhost::App;

const SHIPPED: &str = include_str!("../../rooms/parallelization/room_config.yaml");

fn room(id: &str, extra: &str) -> String {
    format!(
        "id: \"{id}\"\nname: \"Room {id}\"\nagent:\n  kind: factory\n  factory_name: parallelization\n  with_agent_config: true\n  extra_config:\n    model_name: m\n{extra}"
    )
}

/// Builds the app over a rooms dir holding `files` and returns the start-up error message.
fn startup_error(files: &[(&str, &str)]) -> String {
    let dir = TempDir::new();
    for (name, text) in files {
        dir.write(name, text);
    }
    let settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    match App::build(settings, &Registry::builtin()) {
        Ok(_) => panic!("rooms {files:?} were accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

#[test]
fn shipped_room_loads_unchanged() {
    let dir = TempDir::new();
    dir.write("parallelization/room_config.yaml", SHIPPED);
    let app = App::build(
        test_settings("http://127.0.0.1:9", dir.path.clone()),
        &Registry::builtin(),
    )
    .expect("shipped room loads");
    let room = app.room("parallelization").expect("room present");
    assert_eq!(room.config.name, "Parallelization");
    assert_eq!(room.config.suggestions.len(), 3);
    assert_eq!(
        room.factory_name,
        "crazy_glue.factories.parallelization_factory.create_parallelization_agent"
    );
}

#[test]
fn the_repository_rooms_dir_loads() {
    let settings = test_settings("http://127.0.0.1:9", "rooms".into());
    let app = App::build(settings, &Registry::builtin()).expect("./rooms loads");
    assert!(app.room("parallelization").is_some());
}

#[test]
fn soliplex_room_files_load_with_their_extra_keys() {
    let yaml = format!(
        "{}welcome_message: \"Hi there\"\nenable_attachments: true\n_order: 2\ntools:\n  - tool_name: soliplex.tools.search\n",
        room("sol", "")
    );
    let dir = TempDir::new();
    dir.write("sol.yaml", &yaml);
    dir.write(
        "first/room_config.yaml",
        &format!("{}_order: 1\n", room("first", "")),
    );
    let app = App::build(
        test_settings("http://127.0.0.1:9", dir.path.clone()),
        &Registry::builtin(),
    )
    .expect("soliplex keys are ignored");
    let ids: Vec<&str> = app.rooms().iter().map(|r| r.config.id.as_str()).collect();
    assert_eq!(ids, ["first", "sol"], "rooms sort by _order");
    assert_eq!(
        app.room("sol").unwrap().config.welcome_message.as_deref(),
        Some("Hi there")
    );
}

/// soliplex's clients read `welcome_message`, `description` and `suggestions` of every room;
/// soliplex shows the description when a room has no welcome message. Every field of soliplex's
/// room model is there (tests/clients/soliplex_client.py validates with the model itself).
#[tokio::test]
async fn every_listed_room_has_a_welcome_message_description_and_suggestions() {
    let dir = TempDir::new();
    dir.write("plain.yaml", &room("plain", "description: Plain\n"));
    dir.write("bare.yaml", &room("bare", ""));
    dir.write("greets.yaml", &room("greets", "welcome_message: Hi\n"));
    let settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    let server = TestServer::start_with(settings, Registry::builtin(), dir).await;
    let (_, list) = server.get("/rooms").await;
    let (_, by_id) = server.get("/api/v1/rooms").await;
    let (_, one) = server.get("/api/v1/rooms/plain").await;
    let listed = list.as_array().cloned().unwrap_or_default();
    let keyed = by_id
        .as_object()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    for rooms in [listed, keyed, vec![one]] {
        assert!(!rooms.is_empty());
        for r in rooms {
            let expected = match r["id"].as_str() {
                Some("greets") => "Hi",
                Some("plain") => "Plain",
                _ => "",
            };
            assert_eq!(r["welcome_message"], expected, "{r}");
            assert!(r["description"].is_string(), "{r}");
            assert!(r["suggestions"].is_array(), "{r}");
            // soliplex's `models.Room` needs these too, and an agent with an id.
            assert!(r["agent"]["id"].is_string(), "{r}");
            for key in ["tools", "mcp_client_toolsets", "skills", "quizzes"] {
                assert!(r[key].is_object(), "{key}: {r}");
            }
            assert!(r["agui_feature_names"].is_array(), "{r}");
            for key in ["allow_mcp", "has_thread_uploads", "has_room_uploads"] {
                assert!(r[key].is_boolean(), "{key}: {r}");
            }
        }
    }
}

/// An unknown room is a 404 in each API's shape: soliplex's `{"detail"}` on its route.
#[tokio::test]
async fn an_unknown_room_is_a_404_in_each_apis_error_shape() {
    let dir = TempDir::new();
    dir.write("plain.yaml", &room("plain", ""));
    let settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    let server = TestServer::start_with(settings, Registry::builtin(), dir).await;
    let (status, err) = server.get("/api/v1/rooms/nope").await;
    assert_eq!(status, 404);
    assert!(
        err["detail"].as_str().is_some_and(|d| d.contains("nope")),
        "{err}"
    );
    let (status, err) = server.get("/rooms/nope").await;
    assert_eq!(status, 404);
    assert!(err["error"]["code"].is_string(), "{err}");
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let msg = startup_error(&[("bad.yaml", "id: x\nagent: [unclosed\n")]);
    assert_mentions(&msg, &["bad.yaml", "invalid YAML", "line"]);
}

#[test]
fn missing_id_is_refused() {
    let yaml = room("x", "").replace("id: \"x\"\n", "");
    let msg = startup_error(&[("noid.yaml", &yaml)]);
    assert_mentions(&msg, &["noid.yaml", "`id`", "missing"]);
}

#[test]
fn missing_agent_is_refused() {
    let msg = startup_error(&[("noagent.yaml", "id: x\nname: X\n")]);
    assert_mentions(&msg, &["noagent.yaml", "`agent`", "missing"]);
}

#[test]
fn duplicate_ids_are_refused() {
    let msg = startup_error(&[("a.yaml", &room("same", "")), ("b.yaml", &room("same", ""))]);
    assert_mentions(&msg, &["b.yaml", "duplicate room id 'same'", "a.yaml"]);
}

#[test]
fn unknown_agent_kind_is_refused() {
    let yaml = room("x", "").replace("kind: factory", "kind: remote");
    let msg = startup_error(&[("kind.yaml", &yaml)]);
    assert_mentions(&msg, &["kind.yaml", "agent.kind", "unknown kind 'remote'"]);
}

#[test]
fn unknown_factory_lists_the_known_ones() {
    let yaml = room("x", "").replace(
        "factory_name: parallelization",
        "factory_name: nope.factory",
    );
    let msg = startup_error(&[("fac.yaml", &yaml)]);
    assert_mentions(
        &msg,
        &[
            "fac.yaml",
            "agent.factory_name",
            "unknown factory 'nope.factory'",
            "crazy_glue.factories.parallelization_factory.create_parallelization_agent",
            "parallelization",
        ],
    );
}

#[test]
fn extra_config_values_out_of_range_or_of_wrong_type() {
    let cases = [
        (
            "    num_voters: 0\n",
            "agent.extra_config.num_voters",
            "out of range",
        ),
        (
            "    num_voters: 16\n",
            "agent.extra_config.num_voters",
            "out of range",
        ),
        (
            "    num_voters: three\n",
            "agent.extra_config.num_voters",
            "invalid type",
        ),
        (
            "    default_strategy: guessing\n",
            "agent.extra_config.default_strategy",
            "unknown strategy 'guessing'",
        ),
        (
            "    temperature: 9\n",
            "agent.extra_config.temperature",
            "out of range",
        ),
    ];
    for (extra, field, what) in cases {
        let msg = startup_error(&[("r.yaml", &room("x", extra))]);
        assert_mentions(&msg, &["r.yaml", field, what]);
    }
}

#[test]
fn unknown_extra_config_keys_are_an_error() {
    let msg = startup_error(&[("typo.yaml", &room("x", "    num_votrs: 5\n"))]);
    assert_mentions(&msg, &["typo.yaml", "num_votrs", "unknown field"]);
}

#[test]
fn empty_or_missing_rooms_dir_is_refused() {
    let empty = TempDir::new();
    let settings = test_settings("http://127.0.0.1:9", empty.path.clone());
    let msg = App::build(settings, &Registry::builtin())
        .err()
        .map(|e| e.to_string())
        .unwrap();
    assert_mentions(&msg, &["holds no rooms"]);

    let settings = test_settings("http://127.0.0.1:9", empty.path.join("nope"));
    let err = App::build(settings, &Registry::builtin()).err().unwrap();
    assert!(matches!(err, StartupError::Rooms(_)));
    assert_mentions(&err.to_string(), &["nope", "ROOMHOST_ROOMS_DIR"]);
}

#[tokio::test]
async fn rooms_are_listed_and_fetched() {
    let server = TestServer::start("http://127.0.0.1:9", &room("alpha", "")).await;
    let (status, list) = server.get("/rooms").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], "alpha");
    assert_eq!(list[0]["name"], "Room alpha");
    assert_eq!(list[0]["agent"]["factory_name"], "parallelization");
    // The page builds its strategy picker from this list; it is the agent's, not a copy.
    let strategies = list[0]["agent"]["strategies"].as_array().expect("a list");
    let names: Vec<&str> = strategies
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["sectioning", "voting", "map_reduce", "follow_up"]);
    for s in strategies {
        let label = s["label"].as_str().unwrap_or("");
        let description = s["description"].as_str().unwrap_or("");
        assert!(!label.is_empty() && !description.is_empty(), "{s}");
    }

    let (status, one) = server.get("/rooms/alpha").await;
    assert_eq!((status, &one["id"]), (200, &serde_json::json!("alpha")));

    let (status, by_id) = server.get("/api/v1/rooms").await;
    assert_eq!(status, 200);
    assert_eq!(by_id["alpha"]["id"], "alpha");
    let (status, _) = server.get("/api/v1/rooms/alpha").await;
    assert_eq!(status, 200);

    let (status, err) = server.get("/rooms/nope").await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "room_not_found");
    assert!(err["error"]["message"].as_str().unwrap().contains("nope"));
}
