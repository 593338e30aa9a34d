//! The benchmark: `cargo run --release --example bench`. Starts the mock LLM in this process and
//! roomhost in a child process (this executable with `--serve`), both on loopback, and prints
//! what the server adds to the LLM's time, how it scales and how fast it streams. It asserts
//! nothing about time; it stops on a run that does not complete properly.

mod client;
mod overhead;
mod persisted;
mod replicas;
mod scale;
mod script;
mod server;
mod stats;
mod store;
mod system;
mod throughput;

#[allow(dead_code)]
#[path = "../../tests/suite/support/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../tests/suite/support/mock_llm.rs"]
mod mock_llm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

/// The server runs in this executable (`--serve`): the same allocator as the roomhost binary.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the roomhost child process: {0}")]
    Server(String),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a run did not complete properly: {0}")]
    Run(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Overhead,
    /// The overhead rows with metrics and sign-in off and on.
    Ops,
    Scale,
    Idle,
    Throughput,
    Store,
    /// Several replicas on one store: cross-replica follow lag, a killed replica's runs taken up.
    Replicas,
}

#[derive(Parser)]
#[command(about = "roomhost benchmark: overhead vs the LLM's critical path, scale, streaming")]
struct Args {
    /// Sections to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["overhead", "scale", "idle", "throughput", "store"])]
    only: Vec<Section>,
    /// Runs per overhead row.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Time of one mock call in the overhead rows (L), milliseconds.
    #[arg(long, default_value_t = 200)]
    call_ms: u64,
    /// Concurrent runs in the scale section (each call lasting 1 s).
    #[arg(long, default_value_t = 1000)]
    scale_runs: usize,
    /// Persisted runs held open at once in the scale section (store off, then SQLite).
    #[arg(long, default_value_t = 10_000)]
    persisted_runs: usize,
    /// Idle-but-open streams.
    #[arg(long, default_value_t = 5000)]
    idle_streams: usize,
    /// Tokens per run in the throughput section.
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// Runs at once in the store section's burst (each call lasting L).
    #[arg(long, default_value_t = 1000)]
    store_burst: usize,
    /// A PostgreSQL server for the store section (a database is created on it).
    #[arg(long, env = "ROOMHOST_TEST_DATABASE_URL")]
    postgres: Option<String>,
    /// Internal: serve roomhost with this settings file (the benchmark's child process).
    #[arg(long = "serve", hide = true)]
    serve: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(config) = &args.serve {
        return server::serve_child(config);
    }
    match roomhost::server::raise_nofile_limit() {
        Ok((before, after)) if before < after => {
            println!("RLIMIT_NOFILE raised from {before} to {after} (here and in the server)")
        }
        Ok((_, after)) => println!("RLIMIT_NOFILE {after} (already at the hard limit)"),
        Err(e) => println!("RLIMIT_NOFILE could not be raised: {e}"),
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{} build, {cpus} CPUs, load average {}; mock LLM (Ollama wire) in this process, roomhost in a child process",
        if cfg!(debug_assertions) {
            "DEBUG"
        } else {
            "release"
        },
        system::load_average()
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    match runtime.block_on(run(&args)) {
        Ok(()) => {
            println!(
                "\nbenchmark done in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), BenchError> {
    for section in &args.only {
        let started = Instant::now();
        match section {
            Section::Overhead => {
                println!(
                    "\n## Overhead vs the critical path; time to first event and first answer text"
                );
                overhead::run(args.runs, Duration::from_millis(args.call_ms)).await?;
            }
            Section::Ops => {
                println!(
                    "\n## Overhead with metrics, sign-in and traces off and on (SQLite store on)"
                );
                overhead::ops(args.runs, Duration::from_millis(args.call_ms)).await?;
            }
            Section::Scale => {
                println!("\n## Scale: concurrent runs");
                scale::concurrent_runs(args.scale_runs, Duration::from_secs(1)).await?;
                println!("\n## Scale: persisted runs held open, store off and on");
                persisted::run(args.persisted_runs).await?;
            }
            Section::Idle => {
                println!("\n## Scale: idle-but-open streams");
                scale::idle_streams(args.idle_streams).await?;
            }
            Section::Store => {
                println!("\n## The store: off, SQLite, PostgreSQL");
                store::run(
                    args.runs,
                    Duration::from_millis(args.call_ms),
                    args.store_burst,
                    args.postgres.clone(),
                )
                .await?;
            }
            Section::Replicas => {
                println!("\n## Replicas: following from another replica, a replica killed");
                replicas::run(args.runs, args.postgres.clone()).await?;
            }
            Section::Throughput => {
                println!("\n## Streaming throughput");
                throughput::run(args.tokens).await?;
            }
        }
        println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}
