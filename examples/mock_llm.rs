//! Runs the test suite's mock LLM server as a process, for Node/browser tests and the benchmark:
//! `cargo run --example mock_llm -- --port 18500`. Script it over HTTP with `/_mock/mode`,
//! `/_mock/reset` and `/_mock/stats` (see tests/suite/support/mock_llm.rs).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[allow(dead_code)]
#[path = "../tests/suite/support/mock_llm.rs"]
mod mock_llm;

#[derive(Parser)]
#[command(about = "A mock LLM server speaking Ollama /api/chat and OpenAI /v1/chat/completions")]
struct Args {
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 18500)]
    port: u16,
    /// Address to listen on; 0.0.0.0 inside a container.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Filler words per auto text reply.
    #[arg(long)]
    words: Option<usize>,
    /// Delay before each reply's headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    first_byte_ms: u64,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let addr = std::net::SocketAddr::new(args.host, args.port);
    let mock = match mock_llm::MockLlm::start_at(addr).await {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("mock_llm: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(words) = args.words {
        mock.set_words(words);
    }
    mock.set_timing(
        Duration::from_millis(args.first_byte_ms),
        Duration::from_millis(args.chunk_ms),
    );
    println!("mock LLM listening on {}", mock.url());
    // Ctrl-C, or SIGTERM when it runs as a container's main process.
    roomhost::server::shutdown_signal().await;
    ExitCode::SUCCESS
}
