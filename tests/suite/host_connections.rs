//! Connection hygiene against hostile clients: headers and bodies that never finish arriving are
//! cut off, oversized heads refused, and past the connection cap new clients get a clean 503 while
//! the connections already open keep working.

use std::time::Duration;

use crate::support::harness::{test_settings, TempDir, TestServer};
use crate::support::test_agent;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A guard against a hang, not a timing assertion: every wait below ends far sooner.
const HANG: Duration = Duration::from_secs(20);

async fn server(tweak: impl FnOnce(&mut roomhost::config::Settings)) -> TestServer {
    let dir = TempDir::with_rooms(&[&test_agent::room("echo", 2, 0, false)]);
    let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    tweak(&mut settings);
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Everything the server sends until it closes the connection.
async fn read_until_closed(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(HANG, tcp.read_to_end(&mut out))
        .await
        .expect("the server closed the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status and JSON body of a raw HTTP/1.1 response.
fn parse(response: &str) -> (u16, Value) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_off() {
    let server = server(|s| s.header_timeout = Duration::from_millis(300)).await;
    let mut slow = connect(&server).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("send");
    read_until_closed(&mut slow).await;
    // An idle keep-alive connection goes the same way.
    let mut idle = connect(&server).await;
    read_until_closed(&mut idle).await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_and_closed() {
    let server = server(|s| s.body_timeout = Duration::from_millis(300)).await;
    let mut tcp = connect(&server).await;
    tcp.write_all(
        b"POST /rooms/echo/run HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"prompt\": ",
    )
    .await
    .expect("send");
    let (status, body) = parse(&read_until_closed(&mut tcp).await);
    assert_eq!(status, 408);
    assert_eq!(body["error"]["code"], "body_timeout", "{body}");
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let server = server(|s| s.max_header_bytes = 2048).await;
    let resp = TestServer::client()
        .get(format!("{}/healthz", server.url))
        .header("x-big", "a".repeat(4096))
        .send()
        .await
        .expect("an answer");
    assert_eq!(resp.status().as_u16(), 431);
}

#[tokio::test]
async fn past_the_connection_cap_new_clients_get_503_and_open_ones_keep_working() {
    let server = server(|s| s.max_connections = 2).await;
    // One pooled keep-alive connection and one idle socket fill the cap.
    let client = TestServer::client();
    let healthz = format!("{}/healthz", server.url);
    let ok = client.get(&healthz).send().await.expect("healthz");
    assert_eq!(ok.status().as_u16(), 200);
    let idle = connect(&server).await;

    let mut refused = connect(&server).await;
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send");
    let (status, body) = parse(&read_until_closed(&mut refused).await);
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    // An HTTP client that writes its request once connected reads the 503 too.
    let fresh = TestServer::client()
        .get(&healthz)
        .send()
        .await
        .expect("a 503, not a broken connection");
    assert_eq!(fresh.status().as_u16(), 503);

    let again = client.get(&healthz).send().await.expect("healthz");
    assert_eq!(
        again.status().as_u16(),
        200,
        "the open connection still works"
    );

    // A closed connection frees its place.
    drop(idle);
    drop(client);
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let fresh = TestServer::client().get(&healthz).send().await;
        if fresh.is_ok_and(|r| r.status().as_u16() == 200) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A burst of connects while nothing accepts (a busy accept loop) waits in the kernel's queue
/// rather than overflowing it: with the default backlog of 128, connects past it get no SYN-ACK and
/// hang in retries.
#[tokio::test]
async fn a_burst_of_connects_waits_in_the_listen_queue() {
    const BURST: usize = 600;
    let listener = roomhost::server::bind(([127, 0, 0, 1], 0).into()).expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let mut open = Vec::with_capacity(BURST);
    for i in 0..BURST {
        let tcp = tokio::time::timeout(HANG, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| {
                panic!("connect {i} of {BURST} got no answer: the queue overflowed")
            })
            .expect("connect");
        open.push(tcp);
    }
    let (accepted, _) = listener.accept().await.expect("accept");
    drop(accepted);
}
