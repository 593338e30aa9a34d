use std::process::ExitCode;

use clap::Parser;
use roomhost::agents::Registry;
use roomhost::config::{Cli, Settings};
use roomhost::server;
use roomhost::telemetry;
use roomhost::StartupError;

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
    let result = server::run(settings, &Registry::builtin()).await;
    traces.shutdown().await;
    result.map_or_else(failed, |()| ExitCode::SUCCESS)
}

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("roomhost: {e}");
    ExitCode::FAILURE
}
