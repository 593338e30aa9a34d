//! Try roomhost without a model: the server with its built-in mock LLM in one process.
//!
//!     cargo run --release --example demo            # then open http://127.0.0.1:8000/
//!
//! Every roomhost flag and variable works as with the binary (`--addr`, `--database-url`, ...);
//! only the LLM is replaced: the mock (tests/suite/support/mock_llm.rs) answers every strategy
//! with made-up text and votes, streamed like Ollama's /api/chat.

use std::process::ExitCode;

use clap::Parser;
use roomhost::agents::Registry;
use roomhost::config::{Cli, Settings};
use roomhost::llm::LlmApi;
use roomhost::{server, telemetry, StartupError};

#[allow(dead_code)]
#[path = "../tests/suite/support/mock_llm.rs"]
mod mock_llm;

#[tokio::main]
async fn main() -> ExitCode {
    let mut settings = match Settings::load(&Cli::parse()) {
        Ok(settings) => settings,
        Err(e) => return failed(StartupError::from(e)),
    };
    let traces = match telemetry::init(&settings) {
        Ok(traces) => traces,
        Err(e) => return failed(e),
    };
    let mock = match mock_llm::MockLlm::start_on(0).await {
        Ok(mock) => mock,
        Err(e) => return failed(format!("the mock LLM cannot listen on loopback: {e}")),
    };
    // Streamed a little slower than it can, so the page shows the parallel tasks at work.
    mock.set_timing(
        std::time::Duration::from_millis(150),
        std::time::Duration::from_millis(25),
    );
    settings.llm.api = LlmApi::Ollama;
    settings.llm.base_urls = vec![mock.url()];
    tracing::info!(
        llm = %mock.url(),
        "demo: the mock LLM answers every run; open http://{}/",
        settings.addr
    );
    let result = server::run(settings, &Registry::builtin()).await;
    traces.shutdown().await;
    result.map_or_else(failed, |()| ExitCode::SUCCESS)
}

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("roomhost demo: {e}");
    ExitCode::FAILURE
}
