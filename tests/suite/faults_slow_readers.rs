//! Clients that open a run's stream and never read it: the agent never waits for them, so their
//! LLM calls end on their own and free their slots; once they have left events unread for the
//! stall time, or more than the buffer limit, they are let go and their runs cancelled.

use std::time::Duration;

use crate::support::harness::{eventually, patient_llm, slots, TestServer};
use crate::support::mock_llm::{auto_reply, MockLlm, MockReply};
use crate::support::parallelization::{assert_idle, finished, server_with, ROOM};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Far more than the socket buffers between the server and a client that never reads can hold.
fn flood() -> MockReply {
    MockReply::new().chunks(
        (0..2000)
            .map(|i| format!("{i:04} {}", "x".repeat(4000)))
            .collect(),
    )
}

/// Opens a run on a raw socket with a small receive buffer and never reads from it.
async fn never_read(server: &TestServer, topic: &str) -> TcpStream {
    let body = json!({
        "prompt": format!("Write about {topic}: Alpha, Beta"),
        "forwardedProps": {"strategy": "sectioning"},
    })
    .to_string();
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let addr = server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let mut tcp = socket.connect(addr).await.expect("connect");
    let head = format!(
        "POST /rooms/{ROOM}/run HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("send head");
    tcp.write_all(body.as_bytes()).await.expect("send body");
    tcp
}

fn stalled(prompt: &str) -> bool {
    prompt.contains("stalled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_readers_that_never_read_do_not_hold_the_backend() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        if req.last_user().is_some_and(stalled) {
            flood()
        } else {
            auto_reply(req, 4)
        }
    });
    let server = server_with(&mock, "", |s| {
        s.llm.max_concurrency = slots(4);
        s.client_stall = Duration::from_secs(1);
        s.client_buffer_bytes = 64 << 20;
        // No LLM timeout frees a slot, however long a busy machine takes.
        patient_llm(s);
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(never_read(&server, &format!("stalled {i}")).await);
    }
    eventually("four flooding calls have started", || {
        mock.request_count() >= 4
    })
    .await;

    // With the backend's four slots taken by calls that could only end by being read, this run
    // would wait for ever; it gets a slot as soon as a flooding call has streamed its answer.
    let run = server
        .run(
            ROOM,
            json!({"prompt": "Write about solar power: Cost, Risk", "forwardedProps": {"strategy": "sectioning"}}),
        )
        .await;
    finished(&run);

    // Their answers sit unread; after the stall time the runs are let go.
    assert_idle(&server, &mock).await;
    let (_, stats) = server.get("/stats").await;
    assert_eq!(stats["runs_in_flight"], 0, "{stats}");
    assert_eq!(stats["llm"]["in_flight"], 0, "{stats}");
    drop(clients);
}

/// A never-reading client whose calls would stream and then hang for ever: only being let go
/// (by `stall` or `buffer_bytes`) ends its run, and the backend sees both calls closed.
async fn let_go(stall: Duration, buffer_bytes: usize) {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| flood().hang());
    let server = server_with(&mock, "", |s| {
        s.client_stall = stall;
        s.client_buffer_bytes = buffer_bytes;
        // However long a busy machine takes, no LLM timeout ends the hanging calls instead.
        patient_llm(s);
    })
    .await;
    let client = never_read(&server, "stalled").await;
    eventually("both calls have started", || mock.request_count() == 2).await;
    assert_idle(&server, &mock).await;
    assert_eq!(mock.disconnects(), 2, "the backend saw both calls closed");
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stalls_mid_run_has_its_run_cancelled() {
    let_go(Duration::from_secs(1), 64 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_past_the_buffer_limit_has_its_run_cancelled() {
    // The stall time is longer than the test waits: only the buffer limit can end this run.
    let_go(Duration::from_secs(600), 64 << 10).await;
}
