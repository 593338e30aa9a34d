//! Runs whose client left cost their owner, not everyone: each owner (under `auth: none`, each
//! client address) may have `max_detached_per_user` runs going on detached; a run whose client
//! leaves past that is cancelled at once, and other owners' detached runs are not touched.

use std::time::Duration;

use roomhost::auth::{AuthMode, User};
use roomhost::server::detached::owner_key;
use serde_json::json;

use crate::support::harness::{eventually, test_settings, SseReader, TempDir, TestServer};
use crate::support::test_agent;
use crate::support::tokens::api_key_entry;

const ROOM: &str = "detached-budget";

/// A run of the scripted room for the user of `key`, read up to its `RUN_STARTED`.
async fn open(server: &TestServer, key: &str) -> SseReader {
    let resp = TestServer::client()
        .post(format!("{}/rooms/{ROOM}/run", server.url))
        .bearer_auth(key)
        .json(&json!({"prompt": "go on for long"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = SseReader::new(resp);
    reader.read_until("RUN_STARTED").await;
    reader
}

#[tokio::test]
async fn host_detached_an_owners_run_past_the_budget_is_cancelled_when_its_client_leaves() {
    // Runs that go on until cancelled: 100 000 words, 10 ms apart.
    let dir = TempDir::with_rooms(&[&test_agent::room(ROOM, 100_000, 10, false)]);
    let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    settings.detached_grace = Duration::from_secs(600);
    settings.max_detached_per_user = 2;
    settings.auth = AuthMode::Keys;
    settings.api_keys = vec![
        api_key_entry("alice", "alice-key"),
        api_key_entry("bob", "bob-key"),
    ];
    let server = TestServer::start_with(settings, test_agent::registry(), dir).await;
    let detached = &server.app.detached;
    let (alice, bob) = ("user alice", "user bob");

    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(open(&server, "alice-key").await);
    }
    let bobs = open(&server, "bob-key").await;

    // Alice's first two clients leave: their runs go on detached.
    for expected in 1..=2 {
        drop(alices.remove(0));
        eventually("alice's run detached", || {
            detached.runs_of(alice) == expected
        })
        .await;
    }
    assert_eq!(test_agent::cancelled(ROOM), 0);
    // Her third client leaves: past her budget, that run is cancelled at once.
    drop(alices.remove(0));
    eventually("alice's third run cancelled", || {
        test_agent::cancelled(ROOM) == 1
    })
    .await;
    assert_eq!(detached.runs_of(alice), 2, "her two detached runs go on");
    // Bob's budget is his own.
    drop(bobs);
    eventually("bob's run detached", || detached.runs_of(bob) == 1).await;
    assert_eq!(test_agent::cancelled(ROOM), 1);
}

#[test]
fn host_detached_without_sign_in_the_budget_is_per_client_address() {
    let anonymous = User::anonymous();
    let a = owner_key(&anonymous, [10, 0, 0, 1].into());
    let b = owner_key(&anonymous, [10, 0, 0, 2].into());
    assert_ne!(a, b);
    assert_eq!(a, owner_key(&anonymous, [10, 0, 0, 1].into()));
}
