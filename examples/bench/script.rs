//! How the mock answers in the benchmark: every call lasts a fixed time, streamed as a fixed
//! number of evenly spaced tokens; or hangs; or floods. Also the mock timed on its own, which is
//! the critical path the server's runs are compared with.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::mock_llm::{MockLlm, MockReply, MockRequest};
use crate::BenchError;

/// Every call streams `tokens` chunks over `call` (Ollama wire: one pause before each chunk after
/// the first content chunk, and before the final line).
pub fn paced(mock: &MockLlm, call: Duration, tokens: usize) {
    let gap = call / tokens as u32;
    mock.respond_with(move |req| {
        MockReply::new()
            .chunks(split_even(&answer(req, tokens), tokens))
            .first_byte_delay(Duration::ZERO)
            .chunk_delay(gap)
    });
}

/// `count` mocks, each pacing its calls over `call` with the overhead section's tokens.
pub async fn paced_mocks(count: usize, call: Duration) -> Vec<MockLlm> {
    let mut mocks = Vec::new();
    for _ in 0..count {
        let mock = MockLlm::start().await;
        paced(&mock, call, crate::overhead::TOKENS);
        mocks.push(mock);
    }
    mocks
}

/// Every call waits before its headers for longer than any benchmark runs.
pub fn hanging(mock: &MockLlm) {
    mock.respond_with(|_| MockReply::new().hang_before_headers());
}

/// Every call streams `tokens` tokens as fast as the mock can write them.
pub fn flood(mock: &MockLlm, tokens: usize) {
    let chunks = vec!["tok ".to_owned(); tokens];
    mock.respond_with(move |_| MockReply::new().chunks(chunks.clone()));
}

/// A structured answer when a schema is asked for (a voter's or the judge's ballot: the first
/// allowed answer shifted by the seed, so voters alternate), else plain words.
fn answer(req: &MockRequest, tokens: usize) -> String {
    let words: String = (0..tokens).map(|i| format!("w{i} ")).collect();
    let Some(schema) = req.schema() else {
        return words;
    };
    let options = schema["properties"]["answer"]["enum"]
        .as_array()
        .filter(|o| !o.is_empty());
    let pick = match options {
        Some(options) => {
            let seed = req.seed.unwrap_or(0).unsigned_abs() as usize;
            options[seed % options.len()].clone()
        }
        None => json!("yes"),
    };
    json!({"answer": pick, "reasoning": words}).to_string()
}

/// `text` in exactly `n` pieces of nearly equal length (on character boundaries).
fn split_even(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.clamp(1, chars.len().max(1));
    (0..n)
        .map(|i| {
            let (a, b) = (i * chars.len() / n, (i + 1) * chars.len() / n);
            chars[a..b].iter().collect()
        })
        .collect()
}

/// One call straight to the mock, read to the end: how long it took and how many lines came.
pub async fn direct_call(
    client: &reqwest::Client,
    mock: &MockLlm,
) -> Result<(Duration, usize), BenchError> {
    let body: Value = json!({
        "model": "mock", "stream": true,
        "messages": [{"role": "user", "content": "calibrate"}],
    });
    let start = Instant::now();
    let resp = client
        .post(format!("{}/api/chat", mock.url()))
        .json(&body)
        .send()
        .await?;
    let mut stream = resp.bytes_stream();
    let mut lines = 0;
    while let Some(chunk) = stream.next().await {
        lines += chunk?.iter().filter(|b| **b == b'\n').count();
    }
    Ok((start.elapsed(), lines))
}
