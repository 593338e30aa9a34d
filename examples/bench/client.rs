//! The load generator's side of a run: post, read the SSE stream, note when things arrived.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::harness::{verify_agui, SseReader};
use crate::BenchError;

/// One run as the client saw it.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Request sent to `RUN_STARTED` read.
    pub first_event: Duration,
    /// To the first text of the run's answer (not a subagent's).
    pub first_text: Option<Duration>,
    /// To the final event.
    pub total: Duration,
    pub events: usize,
    /// The answer's text and the final event.
    pub text: String,
    pub last: Value,
}

impl Timing {
    pub fn finished(&self) -> bool {
        self.last["type"] == "RUN_FINISHED"
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap_or_default()
}

/// Starts a run; the stream is open once this returns.
pub async fn open(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<SseReader, BenchError> {
    let resp = client.post(url).json(body).send().await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(BenchError::Run(format!("HTTP {status}: {text}")));
    }
    Ok(SseReader::new(resp))
}

/// Runs to the end and checks the stream (AG-UI order, one final event).
pub async fn timed_run(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<Timing, BenchError> {
    let start = Instant::now();
    let mut reader = open(client, url, body).await?;
    let mut events = Vec::new();
    let mut first_event = None;
    let mut first_text = None;
    let mut text = String::new();
    while let Some(event) = reader.next_event().await {
        let at = start.elapsed();
        first_event.get_or_insert(at);
        if event["type"] == "TEXT_MESSAGE_CONTENT" && event.get("subagentRunId").is_none() {
            first_text.get_or_insert(at);
            text.push_str(event["delta"].as_str().unwrap_or_default());
        }
        events.push(event);
    }
    let total = start.elapsed();
    verify_agui(&events).map_err(BenchError::Run)?;
    let last = events.last().cloned().unwrap_or_default();
    Ok(Timing {
        first_event: first_event.unwrap_or(total),
        first_text,
        total,
        events: events.len(),
        text,
        last,
    })
}
