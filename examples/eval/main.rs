//! Measures how well voting answers questions with known answers, on whatever backend the server
//! would use (same settings and environment: `OLLAMA_BASE_URL`, `ROOMHOST_LLM_API`,
//! `ROOMHOST_MODEL`, ...), with the shipped parallelization room's settings.
//!
//!     cargo run --release --example eval -- [--limit N] [--voters 5] [--no-schema]
//!
//! Each question is one voting run with `--voters` voters (default 5). Voter 1 alone is "one
//! call"; the majority of voters 1-3 and of all five are the 3- and 5-voter answers (a tie goes to
//! the earliest voter, as `tie_break: first`). It prints accuracy for each, where the ballots were
//! read from (JSON, re-ask, free text, failed), accuracy when the five agree fully vs not, and
//! tokens and time per question. Questions run `--parallel` at a time (default: the backend's
//! slots); the LLM client's own limit holds as in the server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use roomhost::agents::kit::words::normalize;
use roomhost::agents::parallelization::vote::question_answers;
use roomhost::agents::{parallelization, AgentDeps, EventSink};
use roomhost::agui::RunAgentInput;
use roomhost::config::{Cli, Settings};
use roomhost::llm::build_client;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Accuracy of one call vs 3 and 5 voters on a fixed question set")]
struct Args {
    /// The question set (YAML list of {q, a}).
    #[arg(long, default_value = "examples/eval/questions.yaml")]
    questions: PathBuf,
    /// Only the first N questions (a CPU-only model is slow).
    #[arg(long)]
    limit: Option<usize>,
    /// Voters per question; the 3-voter figure needs at least 3.
    #[arg(long, default_value_t = 5)]
    voters: u32,
    /// Questions in flight at once; default the backend's slots (max_concurrency x endpoints).
    #[arg(long)]
    parallel: Option<usize>,
    /// Ask without structured output (as `ROOMHOST_STRUCTURED_OUTPUT=false`).
    #[arg(long)]
    no_schema: bool,
}

#[derive(Deserialize)]
struct Question {
    q: String,
    a: String,
}

/// One voter's ballot: the answer's key, and where it was read from ("failed" when none).
struct Ballot {
    key: Option<String>,
    source: String,
}

struct Outcome {
    ballots: Vec<Ballot>,
    tokens: u64,
    time: Duration,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let mut settings = Settings::load(&Cli::default()).map_err(|e| e.to_string())?;
    settings.llm.structured_output &= !args.no_schema;
    let text = std::fs::read_to_string(&args.questions)
        .map_err(|e| format!("{}: {e}", args.questions.display()))?;
    let mut questions: Vec<Question> =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", args.questions.display()))?;
    questions.truncate(args.limit.unwrap_or(usize::MAX));
    for q in &questions {
        if question_answers(&q.q).count_as(&q.a).is_none() {
            return Err(format!("'{}' does not allow its own answer '{}'", q.q, q.a));
        }
    }
    let mut extra = shipped_room_config(&settings)?;
    extra["num_voters"] = json!(args.voters);
    extra["quorum"] = json!(1);
    extra["tie_break"] = json!("first");
    let deps = AgentDeps {
        llm: build_client(&settings.llm.settings()).map_err(|e| e.to_string())?,
        model_override: settings.model.clone(),
    };
    let agent = parallelization::create(&extra, &deps).map_err(|e| e.to_string())?;
    let model = settings
        .model
        .clone()
        .or_else(|| extra["model_name"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let parallel = args
        .parallel
        .unwrap_or(settings.llm.max_concurrency.get() * settings.llm.base_urls.len())
        .max(1);
    eprintln!(
        "eval: {} questions, {} voters each, {model} on {:?} ({:?} API){}, {parallel} at a time",
        questions.len(),
        args.voters,
        settings.llm.base_urls,
        settings.llm.api,
        if args.no_schema { ", no schema" } else { "" },
    );
    let started = Instant::now();
    let outcomes: Vec<Outcome> = futures::stream::iter(questions.iter().enumerate())
        .map(|(i, q)| {
            let agent = agent.clone();
            async move {
                let outcome = ask(&*agent, &q.q).await;
                eprintln!("[{}] {:.1?} {}", i + 1, outcome.time, q.q);
                outcome
            }
        })
        .buffered(parallel)
        .collect()
        .await;
    print_report(
        &questions,
        &outcomes,
        args.voters as usize,
        started.elapsed(),
    );
    Ok(())
}

/// The shipped parallelization room's `extra_config`, as JSON.
fn shipped_room_config(settings: &Settings) -> Result<Value, String> {
    let rooms = roomhost::rooms::load_rooms_dir(&settings.rooms_dir).map_err(|e| e.to_string())?;
    let room = rooms
        .iter()
        .find(|r| r.config.id == "parallelization")
        .ok_or_else(|| {
            format!(
                "no parallelization room in {}",
                settings.rooms_dir.display()
            )
        })?;
    let extra = room.config.agent.extra_config.clone().unwrap_or_default();
    serde_json::to_value(extra).map_err(|e| e.to_string())
}

/// One voting run; its ballots, tokens and wall time.
async fn ask(agent: &dyn roomhost::agents::Agent, question: &str) -> Outcome {
    let input: RunAgentInput = serde_json::from_value(json!({
        "messages": [{"id": "1", "role": "user", "content": question}],
        "forwardedProps": {"strategy": "voting"},
    }))
    .unwrap_or_default();
    let started = Instant::now();
    let run = match agent.start(input, EventSink::discard()) {
        Ok(accepted) => accepted.run,
        Err(e) => {
            eprintln!("  not started: {e}");
            return Outcome {
                ballots: Vec::new(),
                tokens: 0,
                time: Duration::ZERO,
            };
        }
    };
    let result = run.await;
    let time = started.elapsed();
    match result {
        Ok(output) => {
            let tokens = output.usage.iter().map(|u| u.total_tokens).sum();
            let result = output.result();
            let ballots = result["votes"]["ballots"]
                .as_array()
                .map(|b| b.iter().map(ballot).collect())
                .unwrap_or_default();
            Outcome {
                ballots,
                tokens,
                time,
            }
        }
        Err(e) => {
            eprintln!("  failed: {e}");
            Outcome {
                ballots: Vec::new(),
                tokens: 0,
                time,
            }
        }
    }
}

fn ballot(value: &Value) -> Ballot {
    match (value["answer"].as_str(), value["source"].as_str()) {
        (Some(answer), Some(source)) => Ballot {
            key: Some(normalize(answer)),
            source: source.to_owned(),
        },
        _ => Ballot {
            key: None,
            source: "failed".into(),
        },
    }
}

/// The most frequent answer among `ballots` (ties to the earliest voter) and its share of the
/// valid ones.
fn majority(ballots: &[Ballot]) -> Option<(String, f64)> {
    let keys: Vec<&String> = ballots.iter().filter_map(|b| b.key.as_ref()).collect();
    let mut best: Option<(&String, usize)> = None;
    for key in &keys {
        let n = keys.iter().filter(|k| *k == key).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((key, n));
        }
    }
    best.map(|(k, n)| (k.clone(), n as f64 / keys.len() as f64))
}

fn percent(n: usize, of: usize) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.0}% ({n}/{of})", 100.0 * n as f64 / of as f64)
    }
}

fn print_report(questions: &[Question], outcomes: &[Outcome], voters: usize, total: Duration) {
    let right = |q: &Question, answer: Option<&String>| answer == Some(&normalize(&q.a));
    let correct = |n: usize| {
        questions
            .iter()
            .zip(outcomes)
            .filter(|(q, o)| {
                let first = &o.ballots[..n.min(o.ballots.len())];
                right(q, majority(first).map(|(k, _)| k).as_ref())
            })
            .count()
    };
    let n = questions.len();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| accuracy, one call | {} |", percent(correct(1), n));
    if voters >= 3 {
        println!(
            "| accuracy, 3 voters (majority) | {} |",
            percent(correct(3), n)
        );
    }
    println!(
        "| accuracy, {voters} voters (majority) | {} |",
        percent(correct(voters), n)
    );
    let ballots: Vec<&Ballot> = outcomes.iter().flat_map(|o| &o.ballots).collect();
    let asked = n * voters;
    for source in ["json", "reask", "free_text", "failed"] {
        let mut count = ballots.iter().filter(|b| b.source == source).count();
        if source == "failed" {
            // Runs that failed as a whole gave no ballots at all.
            count += asked - ballots.len();
        }
        println!("| ballots read from {source} | {} |", percent(count, asked));
    }
    let (mut agreed, mut agreed_right, mut split, mut split_right) = (0, 0, 0, 0);
    for (q, o) in questions.iter().zip(outcomes) {
        let Some((answer, agreement)) = majority(&o.ballots) else {
            continue;
        };
        if agreement >= 1.0 {
            agreed += 1;
            agreed_right += usize::from(right(q, Some(&answer)));
        } else {
            split += 1;
            split_right += usize::from(right(q, Some(&answer)));
        }
    }
    println!(
        "| accuracy when all {voters} agree | {} |",
        percent(agreed_right, agreed)
    );
    println!(
        "| accuracy when they do not | {} |",
        percent(split_right, split)
    );
    let tokens: u64 = outcomes.iter().map(|o| o.tokens).sum();
    let time: Duration = outcomes.iter().map(|o| o.time).sum();
    println!(
        "| tokens per question ({voters} voters) | {} |",
        tokens / n.max(1) as u64
    );
    println!(
        "| time per question ({voters} voters) | {:.1?} |",
        time / n.max(1) as u32
    );
    println!("| wall time, all {n} questions | {total:.1?} |");
}
