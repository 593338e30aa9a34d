//! The process's log lines and, when an OTLP endpoint is set, its traces: one span per run (the
//! `run` span the log lines already carry) and one child per LLM call, sent over OTLP/HTTP
//! (protobuf) by a batch processor. Only those two spans are exported, never log events (they may
//! name URLs). Without an endpoint there is no exporter and no layer, and the LLM call span's
//! callsite is disabled, so it costs nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Metadata;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::Settings;
use crate::llm::CALL_SPAN_TARGET;

/// The target of the run span (its module's, named so that the filter below cannot drift).
pub const RUN_SPAN_TARGET: &str = "roomhost::server::run";
/// One export (connect, send, answer); the batch processor drops the batch past it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the exit waits for the last spans to be sent.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("traces need a tokio runtime to send from")]
    NoRuntime,
    #[error("a log subscriber was installed before")]
    Installed,
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The exporter, when there is one: [`shutdown`](Self::shutdown) sends what is left.
pub struct Traces(Option<SdkTracerProvider>);

impl Traces {
    pub fn exporting(&self) -> bool {
        self.0.is_some()
    }

    /// Sends the spans still queued and stops the exporter (at most a few seconds, even when the
    /// collector does not answer).
    pub async fn shutdown(self) {
        let Some(provider) = self.0 else { return };
        let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FINAL_FLUSH));
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("traces: the last spans may not have been sent: {e}"),
            Err(e) => tracing::warn!("traces: the exporter did not stop cleanly: {e}"),
        }
    }
}

/// Installs the process's subscriber, log lines on stdout: coloured only on a terminal and
/// without `NO_COLOR` (<https://no-color.org>), so files and collectors get plain text.
pub fn init(settings: &Settings) -> Result<Traces, TraceError> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stdout().is_terminal() && !no_color;
    let (subscriber, traces) = subscriber(settings, std::io::stdout, ansi)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| TraceError::Installed)?;
    Ok(traces)
}

/// Log lines to `writer` (filtered by `RUST_LOG`, `info` by default; colour codes if `ansi`) and, with
/// `settings.otlp_endpoint`, traces to `{endpoint}/v1/traces`. Needs a tokio runtime, which sends
/// the exports. The caller installs the subscriber (globally, or for a test's thread).
pub fn subscriber<W>(
    settings: &Settings,
    writer: W,
    ansi: bool,
) -> Result<(impl tracing::Subscriber + Send + Sync, Traces), TraceError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // LLM call spans exist for the traces only: their fields would add nothing to log lines.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_filter(env.and(filter_fn(|m| m.target() != CALL_SPAN_TARGET)));
    let (otel, traces) = match &settings.otlp_endpoint {
        None => (None, Traces(None)),
        Some(endpoint) => {
            let provider = provider(endpoint, &settings.otel_service_name)?;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("roomhost"))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_context_activation(false)
                .with_filter(filter_fn(exported));
            (Some(layer), Traces(Some(provider)))
        }
    };
    Ok((Registry::default().with(logs).with(otel), traces))
}

/// Spans sent to the collector: runs and LLM calls; no log events.
fn exported(meta: &Metadata<'_>) -> bool {
    meta.is_span()
        && ((meta.target() == RUN_SPAN_TARGET && meta.name() == "run")
            || meta.target() == CALL_SPAN_TARGET)
}

fn provider(endpoint: &str, service: &str) -> Result<SdkTracerProvider, TraceError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| TraceError::NoRuntime)?;
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnTokio {
            client,
            runtime,
            failing: AtomicBool::new(false),
        })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

/// The exporter's HTTP client: the batch processor runs on its own thread, so each request is
/// sent on the server's runtime with the reqwest client the rest of the server uses.
#[derive(Debug)]
struct OnTokio {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Whether the last export failed: the log says so once, not every few seconds.
    failing: AtomicBool,
}

#[async_trait]
impl HttpClient for OnTokio {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        let result = sent.await.map_err(HttpError::from).and_then(|r| r);
        let failed = match &result {
            Ok(response) => !response.status().is_success(),
            Err(_) => true,
        };
        if failed != self.failing.swap(failed, Ordering::Relaxed) {
            match &result {
                Ok(r) if !failed => {
                    tracing::info!(status = %r.status(), "traces: the OTLP collector takes spans again")
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), "traces: the OTLP collector refuses spans; they are dropped")
                }
                Err(e) => tracing::warn!(
                    "traces: cannot reach the OTLP collector ({e}); spans are dropped"
                ),
            }
        }
        result
    }
}

/// The trace id of `span` when it is exported; `None` without an exporter (a cheap check).
pub(crate) fn trace_id(span: &tracing::Span) -> Option<TraceId> {
    let id = span.context().span().span_context().trace_id();
    (id != TraceId::INVALID).then_some(id)
}
