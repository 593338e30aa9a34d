//! One HTTP attempt of a chat call, shared by both wire formats: send, check the status, read the
//! body through the line splitter and the format's decoder, with a named timeout on every wait.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Future, StreamExt};
use serde_json::Value;
use tokio::time::Instant;

use super::lines::LineBuffer;
use super::wire::{error_message, Decoder};
use super::{ChatChunk, LlmError, LlmSettings};

/// Timeout names, as they appear in errors.
pub(crate) const CONNECT: &str = "connect";
pub(crate) const FIRST_BYTE: &str = "first-byte";
pub(crate) const IDLE: &str = "idle";
pub(crate) const TOTAL: &str = "total";
pub(crate) const HEALTH: &str = "health";

/// An error body is only read for its message.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Health checks hit a listing endpoint that answers at once when the backend is up.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

fn timeout(which: &'static str, after: Duration) -> LlmError {
    let hint = match which {
        CONNECT => "the backend did not accept the connection; check the URL, or raise the connect timeout",
        FIRST_BYTE => "the backend did not start answering; a cold model load can take minutes: raise the first-byte timeout or warm the model first",
        IDLE => "the backend stopped sending mid-answer; it may be overloaded: raise the idle timeout or lower the LLM concurrency",
        HEALTH => "the backend accepted the connection but did not answer its model listing",
        _ => "the call took longer than allowed; raise the request timeout or ask for a shorter answer (max_tokens)",
    };
    LlmError::Timeout { which, after, hint }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    idle: Duration,
    total: Duration,
}

impl Timeouts {
    pub(crate) fn from_settings(s: &LlmSettings) -> Self {
        Self {
            connect: s.connect_timeout,
            first_byte: s.first_byte_timeout,
            idle: s.idle_timeout,
            total: s.request_timeout,
        }
    }

    /// The end of the total budget for a call starting now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.total
    }
}

/// What one call talks to, for requests and error messages.
pub(crate) struct Target<'a> {
    /// The endpoint's name in errors (`backend 1`): its URL stays in the log.
    pub(crate) label: &'a str,
    pub(crate) url: String,
    pub(crate) model: &'a str,
    pub(crate) provider: &'static str,
}

pub(crate) struct Http {
    client: reqwest::Client,
    api_key: Option<String>,
    timeouts: Timeouts,
}

impl Http {
    pub(crate) fn new(settings: &LlmSettings) -> Result<Self, reqwest::Error> {
        let timeouts = Timeouts::from_settings(settings);
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .build()?;
        Ok(Self {
            client,
            api_key: settings.api_key.clone(),
            timeouts,
        })
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Sends one attempt and reads until its first chunk, so that everything a retry may follow
    /// happens here, before the caller has seen anything.
    pub(crate) async fn open(
        &self,
        target: &Target<'_>,
        body: Bytes,
        decoder: Box<dyn Decoder>,
        deadline: Instant,
    ) -> Result<BodyReader, LlmError> {
        let first_byte_until = Instant::now() + self.timeouts.first_byte;
        let mut request = self
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let wait = Wait {
            until: first_byte_until,
            which: FIRST_BYTE,
            after: self.timeouts.first_byte,
        };
        let response = wait
            .run(self.timeouts, deadline, request.send())
            .await?
            .map_err(|e| self.transport(&e, target.label))?;
        if !response.status().is_success() {
            let wait = self.idle_wait();
            return Err(status_error(target, response, wait, self.timeouts, deadline).await);
        }
        let mut reader = BodyReader {
            label: target.label.to_owned(),
            body: response.bytes_stream().boxed(),
            lines: LineBuffer::default(),
            decoder,
            pending: VecDeque::new(),
            first_byte_until,
            got_chunk: false,
            finished: false,
            failed: None,
            timeouts: self.timeouts,
            deadline,
        };
        reader.fill().await?;
        Ok(reader)
    }

    /// A GET that must answer 2xx (health checks).
    pub(crate) async fn get_ok(&self, url: &str, label: &str) -> Result<(), LlmError> {
        let mut request = self.client.get(url).timeout(HEALTH_TIMEOUT);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() && !e.is_connect() {
                timeout(HEALTH, HEALTH_TIMEOUT)
            } else {
                self.transport(&e, label)
            }
        })?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status().as_u16();
        Err(LlmError::Status {
            status,
            message: format!("the {label} answered {status} to a health check"),
        })
    }

    fn idle_wait(&self) -> Wait {
        Wait {
            until: Instant::now() + self.timeouts.idle,
            which: IDLE,
            after: self.timeouts.idle,
        }
    }

    fn transport(&self, e: &reqwest::Error, label: &str) -> LlmError {
        if e.is_connect() && e.is_timeout() {
            timeout(CONNECT, self.timeouts.connect)
        } else if e.is_connect() {
            LlmError::Connect {
                endpoint: label.to_owned(),
                detail: detail(e),
            }
        } else {
            LlmError::Disconnected {
                endpoint: label.to_owned(),
                detail: detail(e),
            }
        }
    }
}

/// One wait of a call, bounded by its own limit and by the call's total deadline.
struct Wait {
    until: Instant,
    which: &'static str,
    after: Duration,
}

impl Wait {
    async fn run<T>(
        &self,
        timeouts: Timeouts,
        deadline: Instant,
        fut: impl Future<Output = T>,
    ) -> Result<T, LlmError> {
        let limit = self.until.min(deadline);
        tokio::time::timeout_at(limit, fut).await.map_err(|_| {
            if deadline <= self.until {
                timeout(TOTAL, timeouts.total)
            } else {
                timeout(self.which, self.after)
            }
        })
    }
}

/// An HTTP error status as an `LlmError`, with the backend's own message where it sent one.
async fn status_error(
    target: &Target<'_>,
    response: reqwest::Response,
    wait: Wait,
    timeouts: Timeouts,
    deadline: Instant,
) -> LlmError {
    let status = response.status().as_u16();
    let message = match wait.run(timeouts, deadline, read_capped(response)).await {
        Ok(body) => body_message(&body),
        Err(_) => "(the error body did not arrive)".to_owned(),
    };
    if status == 404 {
        // A 404 without "model" in it is a wrong path, i.e. the wrong API kind for this server.
        if message.to_ascii_lowercase().contains("model") {
            return LlmError::ModelNotFound {
                model: target.model.to_owned(),
                endpoint: target.label.to_owned(),
            };
        }
        return LlmError::Status {
            status,
            message: format!(
                "{message} (no chat route on the {}; does it speak the '{}' API? check the backend API setting)",
                target.label, target.provider
            ),
        };
    }
    LlmError::Status { status, message }
}

async fn read_capped(response: reqwest::Response) -> Vec<u8> {
    let mut body = response.bytes_stream();
    let mut buf = Vec::new();
    while let Some(Ok(bytes)) = body.next().await {
        buf.extend_from_slice(&bytes);
        if buf.len() >= MAX_ERROR_BODY {
            buf.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    buf
}

/// `{"error": ...}` in either API's shape, else the start of the text.
fn body_message(body: &[u8]) -> String {
    if let Some(error) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
    {
        return error_message(&error);
    }
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    match text.trim() {
        "" => "(empty body)".to_owned(),
        t => t.to_owned(),
    }
}

/// A transport error for a message: its causes, without the URL reqwest puts in it.
fn detail(e: &reqwest::Error) -> String {
    let text = chain(e);
    match e.url() {
        Some(url) => text.replace(url.as_str(), "the backend"),
        None => text,
    }
}

/// The error and its causes on one line: reqwest's own message hides the useful part.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A streaming response body turned into chunks, with the first-byte limit until the first chunk
/// and the idle limit between reads after that.
pub(crate) struct BodyReader {
    label: String,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    lines: LineBuffer,
    decoder: Box<dyn Decoder>,
    pending: VecDeque<ChatChunk>,
    first_byte_until: Instant,
    /// Until the first chunk, the first-byte limit applies: an OpenAI server may send its
    /// role-only event at once and the first token only after a long prompt evaluation.
    got_chunk: bool,
    /// The final chunk was decoded, the body ended, or it failed: read no more.
    finished: bool,
    failed: Option<LlmError>,
    timeouts: Timeouts,
    deadline: Instant,
}

impl BodyReader {
    /// The next chunk; `None` after the final one. An error ends the stream, after the chunks
    /// that arrived before it.
    pub(crate) async fn next_chunk(&mut self) -> Option<Result<ChatChunk, LlmError>> {
        if let Err(e) = self.fill().await {
            return Some(Err(e));
        }
        match self.pending.pop_front() {
            Some(chunk) => Some(Ok(chunk)),
            None => self.failed.take().map(Err),
        }
    }

    /// Reads until at least one chunk is decoded or the body is done. An error that comes after
    /// chunks of the same read is kept until those are taken.
    async fn fill(&mut self) -> Result<(), LlmError> {
        while self.pending.is_empty() && !self.finished {
            if let Err(e) = self.read().await {
                self.finished = true;
                if self.pending.is_empty() {
                    return Err(e);
                }
                self.failed = Some(e);
            }
        }
        Ok(())
    }

    async fn read(&mut self) -> Result<(), LlmError> {
        let wait = if self.got_chunk {
            Wait {
                until: Instant::now() + self.timeouts.idle,
                which: IDLE,
                after: self.timeouts.idle,
            }
        } else {
            Wait {
                until: self.first_byte_until,
                which: FIRST_BYTE,
                after: self.timeouts.first_byte,
            }
        };
        let next = wait
            .run(self.timeouts, self.deadline, self.body.next())
            .await?;
        let (decoder, pending) = (&mut self.decoder, &mut self.pending);
        let mut done = false;
        let mut decode = |line: &[u8]| -> Result<(), LlmError> {
            // Whatever follows the final chunk is not part of the answer.
            if !done {
                decoder.line(line, pending)?;
                done = matches!(pending.back(), Some(ChatChunk::Done(_)));
            }
            Ok(())
        };
        match next {
            Some(Ok(bytes)) => {
                self.lines.push(&bytes, &mut decode)?;
                self.got_chunk |= !pending.is_empty();
            }
            Some(Err(e)) => {
                return Err(LlmError::Disconnected {
                    endpoint: self.label.clone(),
                    detail: detail(&e),
                })
            }
            None => {
                self.lines.finish(&mut decode)?;
                if !done {
                    decoder.end(pending)?;
                    done = matches!(pending.back(), Some(ChatChunk::Done(_)));
                }
                if !done {
                    return Err(LlmError::Truncated);
                }
            }
        }
        self.finished = done;
        Ok(())
    }
}
