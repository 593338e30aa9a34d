//! The client every room uses: one wire format over one or more endpoints, each call holding a
//! limiter slot from its first try to its last chunk, retried only before it has streamed anything.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use super::call::{BodyReader, Http, Target, CONNECT};
use super::limiter::{Limiter, Permit};
use super::meter::CallMeter;
use super::ollama::Ollama;
use super::openai::OpenAi;
use super::retry::{backoff, is_retryable, refuses_think};
use super::wire::Wire;
use super::{
    ChatChunk, ChatRequest, ChatStream, LlmApi, LlmClient, LlmError, LlmLoad, LlmSettings, Refused,
    Reservation,
};

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no LLM endpoint given")]
    NoEndpoint,
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Builds the configured client.
pub fn build_client(settings: &LlmSettings) -> Result<Arc<dyn LlmClient>, BuildError> {
    if settings.base_urls.is_empty() {
        return Err(BuildError::NoEndpoint);
    }
    let wire: Box<dyn Wire> = match settings.api {
        LlmApi::Ollama => Box::new(Ollama),
        LlmApi::Openai => Box::new(OpenAi {
            json_mode: settings.openai_json_mode,
        }),
    };
    let http = Http::new(settings).map_err(|e| BuildError::Http(e.to_string()))?;
    let endpoints: Vec<Endpoint> = settings
        .base_urls
        .iter()
        .enumerate()
        .map(|(i, u)| Endpoint {
            base: u.trim_end_matches('/').to_owned(),
            label: format!("backend {}", i + 1),
        })
        .collect();
    Ok(Arc::new(Client {
        wire,
        http,
        limiter: Arc::new(Limiter::new(
            endpoints.iter().map(|e| e.label.clone()).collect(),
            settings.max_concurrency.get(),
            settings.max_queue,
        )),
        endpoints,
        max_retries: settings.max_retries,
        retry_base_delay: settings.retry_base_delay,
        structured_output: settings.structured_output,
        no_think: Mutex::default(),
    }))
}

/// An endpoint's URL, for calls and the log, and its label, for error messages.
struct Endpoint {
    base: String,
    label: String,
}

struct Client {
    wire: Box<dyn Wire>,
    http: Http,
    endpoints: Vec<Endpoint>,
    limiter: Arc<Limiter>,
    max_retries: u32,
    retry_base_delay: Duration,
    structured_output: bool,
    /// (endpoint, model) pairs that refused a think setting: they are sent none from then on.
    no_think: Mutex<HashSet<(String, String)>>,
}

impl Client {
    fn thinks(&self, base: &str, model: &str) -> bool {
        let refused = self.no_think.lock().unwrap_or_else(|e| e.into_inner());
        !refused.contains(&(base.to_owned(), model.to_owned()))
    }

    /// Remembers that `model` on `base` takes no think setting; logs the first time only.
    fn refused_think(&self, base: &str, model: &str) {
        let mut refused = self.no_think.lock().unwrap_or_else(|e| e.into_inner());
        if refused.insert((base.to_owned(), model.to_owned())) {
            tracing::info!(%model, "the model has no thinking mode: calls to it are sent without `think` from now on");
        }
    }
}

#[async_trait]
impl LlmClient for Client {
    async fn chat_stream(&self, mut request: ChatRequest) -> Result<ChatStream, LlmError> {
        if !self.structured_output {
            request.format = None;
        }
        // Encoded before queueing so that a request that cannot be sent fails at once, and again
        // once it has a slot: a call waiting in the queue holds no body (a run's calls may wait
        // long, thousands of runs at once).
        self.wire.body(&request)?;
        let permit = self.limiter.acquire().await?;
        let mut body = Bytes::from(self.wire.body(&request)?);
        let started = Instant::now();
        let deadline = self.http.timeouts().deadline();
        let (base, label) = self
            .endpoints
            .get(permit.endpoint())
            .map_or(("", ""), |e| (e.base.as_str(), e.label.as_str()));
        let mut meter = CallMeter::new(label, self.wire.provider(), &request);
        let target = Target {
            label,
            url: self.wire.chat_url(base),
            model: &request.model,
            provider: self.wire.provider(),
        };
        if request.think.is_some() && !self.thinks(base, &request.model) {
            request.think = None;
            body = Bytes::from(self.wire.body(&request)?);
        }
        let mut attempt = 0;
        let reader = loop {
            attempt += 1;
            let opened = self
                .http
                .open(&target, body.clone(), self.wire.decoder(), deadline)
                .await;
            let unreachable = matches!(
                &opened,
                Err(LlmError::Connect { .. } | LlmError::Timeout { which: CONNECT, .. })
            );
            self.limiter
                .record_reachable(permit.endpoint(), !unreachable);
            let error = match opened {
                Ok(reader) => break reader,
                Err(e) => e,
            };
            // A model without a thinking mode refuses the setting: once more without it, at once
            // and outside the retry count, since nothing is wrong with the backend.
            if request.think.is_some() && refuses_think(&error) {
                self.refused_think(base, &request.model);
                request.think = None;
                body = Bytes::from(self.wire.body(&request)?);
                attempt -= 1;
                continue;
            }
            let pause = backoff(self.retry_base_delay, attempt);
            if attempt > self.max_retries
                || !is_retryable(&error, attempt)
                || Instant::now() + pause >= deadline
            {
                tracing::warn!(url = %target.url, attempt, "LLM call failed: {error}");
                meter.failed(&error);
                return Err(error);
            }
            meter.retry(attempt);
            tracing::warn!(url = %target.url, attempt, ?pause, "LLM call failed, retrying: {error}");
            tokio::time::sleep(pause).await;
        };
        Ok(stream(reader, permit, started, target.url, meter))
    }

    /// Every endpoint must answer.
    async fn health(&self) -> Result<(), LlmError> {
        for Endpoint { base, label } in &self.endpoints {
            let url = self.wire.health_url(base);
            if let Err(e) = self.http.get_ok(&url, label).await {
                // `/readyz` reports it and start-up warns once; a warning per probe would flood the log.
                tracing::debug!(%url, "LLM health check failed: {e}");
                return Err(e);
            }
        }
        Ok(())
    }

    fn provider(&self) -> &str {
        self.wire.provider()
    }

    fn load(&self) -> LlmLoad {
        self.limiter.load()
    }

    fn reserve(&self, calls: usize) -> Result<Reservation, Refused> {
        self.limiter.reserve(calls)
    }
}

/// The chunks of an opened call. The permit and the connection go as soon as the final chunk or
/// an error is yielded, or when the stream is dropped. `url` is for the log.
fn stream(
    reader: BodyReader,
    permit: Permit,
    started: Instant,
    url: String,
    meter: CallMeter,
) -> ChatStream {
    futures::stream::unfold(
        Some((reader, permit, url, meter)),
        move |state| async move {
            let (mut reader, permit, url, mut meter) = state?;
            match reader.next_chunk().await? {
                Ok(ChatChunk::Done(mut completion)) => {
                    // The OpenAI API reports no duration; the wall time of the call stands in.
                    if completion.usage.total_duration.is_zero() {
                        completion.usage.total_duration = started.elapsed();
                    }
                    meter.done(&completion);
                    Some((Ok(ChatChunk::Done(completion)), None))
                }
                Ok(chunk) => {
                    meter.token();
                    Some((Ok(chunk), Some((reader, permit, url, meter))))
                }
                Err(e) => {
                    tracing::warn!(%url, "LLM call failed mid-stream: {e}");
                    meter.failed(&e);
                    Some((Err(e), None))
                }
            }
        },
    )
    .boxed()
}
