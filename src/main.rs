use std::process::ExitCode;

use clap::Parser;
use roomhost::agents::Registry;
use roomhost::config::{Cli, Settings};
use roomhost::server::{serve, shutdown_signal};
use roomhost::{App, StartupError};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomhost: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), StartupError> {
    let settings = Settings::load(&cli)?;
    let addr = settings.addr;
    let app = App::build(settings, &Registry::builtin())?;
    let bind_err = |e: std::io::Error| StartupError::Bind {
        addr: addr.to_string(),
        detail: e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let rooms: Vec<&str> = app.rooms().iter().map(|r| r.config.id.as_str()).collect();
    tracing::info!(%addr, ?rooms, llm = ?app.settings.llm.base_urls, "roomhost listening");
    serve(listener, app, shutdown_signal())
        .await
        .map_err(bind_err)
}
