use std::process::ExitCode;

use clap::Parser;
use roomhost::agents::Registry;
use roomhost::config::{Cli, Settings};
use roomhost::server::{bind, raise_nofile_limit, serve, shutdown_signal};
use roomhost::telemetry;
use roomhost::{App, StartupError};

/// The system allocator keeps a burst's memory for good; jemalloc with a background purge thread
/// gives much of it back (figures in the README's benchmark section).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options: a background thread returns freed pages to the OS after a second.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::load(&Cli::parse()) {
        Ok(settings) => settings,
        Err(e) => return failed(StartupError::from(e)),
    };
    // Log lines, and traces when the settings ask for them.
    let traces = match telemetry::init(&settings) {
        Ok(traces) => traces,
        Err(e) => return failed(e),
    };
    let result = run(settings).await;
    traces.shutdown().await;
    result.map_or_else(failed, |()| ExitCode::SUCCESS)
}

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("roomhost: {e}");
    ExitCode::FAILURE
}

async fn run(settings: Settings) -> Result<(), StartupError> {
    let addr = settings.addr;
    let app = App::open(settings, &Registry::builtin()).await?;
    let bind_err = |e: std::io::Error| StartupError::Bind {
        addr: addr.to_string(),
        detail: e.to_string(),
    };
    log_nofile_limit(app.settings.max_connections);
    if !addr.ip().is_loopback() && !app.auth.is_on() {
        tracing::warn!(%addr, "listening beyond this machine with `auth: none`: anyone who reaches the port can run rooms and read every thread; set ROOMHOST_AUTH=keys or oidc");
    }
    let listener = bind(addr).map_err(bind_err)?;
    let rooms: Vec<&str> = app.rooms().iter().map(|r| r.config.id.as_str()).collect();
    tracing::info!(%addr, ?rooms, llm = ?app.settings.llm.base_urls, "roomhost listening");
    serve(listener, app, shutdown_signal())
        .await
        .map_err(bind_err)
}

/// Every connection is a file: below the connection cap (plus room for backend calls and files),
/// accept fails before the cap is reached.
fn log_nofile_limit(max_connections: usize) {
    const LOW: u64 = 4096;
    match raise_nofile_limit() {
        Ok((before, after)) => {
            let wanted = (max_connections as u64).saturating_add(256).max(LOW);
            if after < wanted {
                tracing::warn!(
                    before,
                    after,
                    wanted,
                    "open-file limit is low for max_connections; raise the hard limit (ulimit -Hn)"
                );
            } else {
                tracing::info!(before, after, "open-file limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
