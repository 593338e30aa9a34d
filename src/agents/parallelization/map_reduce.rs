//! Map-reduce: every document (or part of a long one) is summarised at once, the summaries are
//! collapsed in parallel groups while they do not fit one call, and one reduce call writes the
//! answer, streamed. Long input never fails the run: past `max_collapse_depth` it is truncated,
//! and the answer says so.

use serde_json::json;

use super::config::{ParallelizationConfig, Role};
use super::detect::{split_documents, split_instruction};
use super::progress::RunStatus;
use super::prompts;
use super::strategy::{Fanout, Info};
use super::Outcome;
use super::Run;
use super::{Ctx, TaskSpec};
use crate::agents::kit::budget::{
    estimate_tokens, pack, split_to_fit, truncate, Budget, MIN_CHUNK_TOKENS,
};
use crate::agents::kit::failures::Failures;
use crate::agents::kit::messages::TextMessage;
use crate::agents::kit::runner::{Quiet, TaskResult};
use crate::agents::{AgentError, ErrorCode};

/// Map calls of one run at most; the rest of a gigantic input is left out (and the answer says so).
const MAX_MAP_TASKS: usize = 512;
/// A summary shortened to fit is never cut below this many tokens; fewer summaries are kept instead.
const MIN_SUMMARY_TOKENS: usize = 32;

/// A place in the input: document `doc`, part `part` of `parts` (all 1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    doc: usize,
    part: usize,
    parts: usize,
}

/// The stretch of input a summary covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: Part,
    last: Part,
}

impl Span {
    fn label(&self) -> String {
        let (a, b) = (self.first, self.last);
        if a.doc != b.doc {
            format!("Documents {}–{}", a.doc, b.doc)
        } else if a.parts == 1 {
            format!("Document {}", a.doc)
        } else if a.part == b.part {
            format!("Document {}, part {} of {}", a.doc, a.part, a.parts)
        } else {
            format!(
                "Document {}, parts {}–{} of {}",
                a.doc, a.part, b.part, a.parts
            )
        }
    }

    /// The stretch from the first to the last of `summaries`.
    fn covering(summaries: &[Summary]) -> Option<Span> {
        Some(Span {
            first: summaries.first()?.span.first,
            last: summaries.last()?.span.last,
        })
    }
}

#[derive(Debug, Clone)]
struct Summary {
    span: Span,
    text: String,
}

impl Summary {
    /// Tokens of the label, its colon and newline, and the blank line after the text.
    fn label_tokens(&self) -> usize {
        estimate_tokens(&self.span.label()) + 2
    }

    /// Tokens it takes in a prompt (see `prompts::summaries_block`).
    fn tokens(&self) -> usize {
        self.label_tokens() + estimate_tokens(&self.text)
    }
}

fn labelled(summaries: &[Summary]) -> Vec<(String, String)> {
    summaries
        .iter()
        .map(|s| (s.span.label(), s.text.clone()))
        .collect()
}

/// What is left out of the answer and why.
#[derive(Default)]
struct Losses {
    failed: Failures,
    truncated: Vec<String>,
}

/// The budget of every map, collapse and reduce prompt: the context less the largest of their
/// answers.
fn budget(config: &ParallelizationConfig) -> Budget {
    let caps = &config.max_tokens;
    config.budget(caps.map.max(caps.collapse).max(caps.reduce))
}

/// The label of the longest a map call's label can be, for sizing its prompt.
const WIDEST_LABEL: &str = "Document 0000, part 00000 of 00000";

/// Each document (or part) summarised in parallel, then the summaries combined.
#[derive(Debug, Clone, PartialEq)]
pub struct Summarize {
    pub instruction: String,
    pub documents: Vec<String>,
}

const INSTRUCTION_DEFAULT: &str = "Summarize the documents.";

impl Fanout for Summarize {
    const INFO: Info = Info {
        name: "map_reduce",
        command: "mapreduce",
        aliases: &[],
        label: "Map-reduce",
        description: "Summarizes each document, or each part of a long one, in parallel, then combines the summaries into one answer.",
    };

    fn read(text: &str, attached: Vec<String>) -> Result<Self, String> {
        let text = text.trim();
        let (instruction, body) = if !attached.is_empty() {
            (text, "")
        } else {
            split_instruction(text)
        };
        let mut documents = attached;
        if documents.is_empty() {
            documents = split_documents(body);
        }
        if documents.is_empty() && !body.trim().is_empty() {
            documents.push(body.trim().to_owned());
        }
        if documents.is_empty() {
            return Err("nothing to summarize: put the documents after 'Summarize:' separated by '|' or by lines of '---', or attach them as forwardedProps.documents".into());
        }
        let instruction = instruction.trim().trim_end_matches([':', '：']).trim();
        Ok(Summarize {
            instruction: if instruction.is_empty() {
                INSTRUCTION_DEFAULT.to_owned()
            } else {
                instruction.to_owned()
            },
            documents,
        })
    }

    fn admit(&self, config: &ParallelizationConfig) -> Result<usize, String> {
        admit(config, &self.instruction, &self.documents)
    }

    async fn run(&self, run: &mut Run) -> Result<Outcome, AgentError> {
        summarize(run, &self.instruction, &self.documents).await
    }
}

/// Checks a map-reduce request before its stream: at most `max_documents`, and an instruction
/// that leaves room for some material in the map and the reduce prompts (the documents
/// themselves are split or collapsed to fit). Returns the most calls the run has at once.
fn admit(
    config: &ParallelizationConfig,
    instruction: &str,
    documents: &[String],
) -> Result<usize, String> {
    let max = config.max_documents as usize;
    if documents.len() > max {
        return Err(format!(
            "{} documents given; this room reads at most {max} in one request (max_documents): send fewer, or join short ones",
            documents.len()
        ));
    }
    let budget = budget(config);
    let map = prompts::map(instruction, WIDEST_LABEL, "");
    budget.check(&map, MIN_CHUNK_TOKENS, "the instruction")?;
    let reduce = prompts::reduce(instruction, &[]);
    let two_summaries = 2 * (MIN_SUMMARY_TOKENS + estimate_tokens(WIDEST_LABEL) + 2);
    budget.check(&reduce, two_summaries, "the instruction")?;
    Ok(parts(instruction, documents, &budget).len())
}

/// The documents split into parts that each fit one map call (`run` reads `MAX_MAP_TASKS` of them).
fn parts<'a>(instruction: &str, documents: &'a [String], budget: &Budget) -> Vec<(Span, &'a str)> {
    let room = budget.room_beside(&prompts::map(instruction, WIDEST_LABEL, ""));
    let mut parts = Vec::new();
    for (d, document) in documents.iter().enumerate() {
        let chunks = split_to_fit(document, room);
        let count = chunks.len();
        for (p, chunk) in chunks.into_iter().enumerate() {
            let at = Part {
                doc: d + 1,
                part: p + 1,
                parts: count,
            };
            parts.push((
                Span {
                    first: at,
                    last: at,
                },
                chunk.trim(),
            ));
        }
    }
    parts
}

/// split -> map -> collapse until it fits -> reduce -> notes -> report.
async fn summarize(
    run: &mut Run,
    instruction: &str,
    documents: &[String],
) -> Result<Outcome, AgentError> {
    let budget = budget(&run.ctx.config);
    let mut losses = Losses::default();
    let parts = split(instruction, documents, &budget, &mut losses);
    let summaries = map(run, instruction, &parts, &mut losses).await?;
    run.progress.set_status(RunStatus::Aggregating);
    run.send_progress().await;
    let (summaries, levels) =
        collapse_until_fits(run, instruction, summaries, &budget, &mut losses).await?;
    run.step_started("aggregate").await;
    let mut message = TextMessage::new(None);
    reduce(run, instruction, &summaries, &mut message).await;
    notes(run, &losses, &mut message).await;
    let text = message.text().to_owned();
    run.ctx.send(message.close()).await;
    run.step_finished("aggregate").await;
    Ok(Outcome {
        text,
        details: report(documents.len(), parts.len(), levels, &losses),
    })
}

/// The input as parts that each fit one map call, at most `MAX_MAP_TASKS` of them.
fn split<'a>(
    instruction: &str,
    documents: &'a [String],
    budget: &Budget,
    losses: &mut Losses,
) -> Vec<(Span, &'a str)> {
    let mut parts = parts(instruction, documents, budget);
    if parts.len() > MAX_MAP_TASKS {
        losses.truncated.push(format!(
            "the input is too long: only the first {MAX_MAP_TASKS} of its {} parts were read",
            parts.len()
        ));
        parts.truncate(MAX_MAP_TASKS);
    }
    parts
}

/// Every part summarised at once; the run fails only when none could be.
async fn map(
    run: &mut Run,
    instruction: &str,
    parts: &[(Span, &str)],
    losses: &mut Losses,
) -> Result<Vec<Summary>, AgentError> {
    let tasks = parts
        .iter()
        .map(|&(span, text)| TaskSpec {
            label: span.label(),
            request: Box::new(move |ctx: &Ctx| {
                ctx.request(
                    Role::Map,
                    prompts::map(instruction, &span.label(), text),
                    ctx.config.model.temperature,
                    ctx.config.model.seed,
                    None,
                )
            }),
            structured: None,
        })
        .collect();
    run.progress.set_status(RunStatus::Running);
    run.step_started("fan_out").await;
    let results = run.fan_out(tasks, &mut Quiet).await;
    run.step_finished("fan_out").await;
    let spans: Vec<Span> = parts.iter().map(|(span, _)| *span).collect();
    let summaries = survivors(&spans, results, &mut losses.failed);
    if summaries.is_empty() {
        return Err(AgentError::Failed {
            code: losses.failed.code(ErrorCode::AllTasksFailed),
            message: format!(
                "no document could be summarized ({} of {} failed): {}",
                losses.failed.count(),
                parts.len(),
                losses.failed
            ),
        });
    }
    Ok(summaries)
}

/// Collapse levels while the summaries do not fit the reduce call; past `max_collapse_depth`, or
/// when a level does not shrink them, they are shortened instead. Returns them and the levels run.
async fn collapse_until_fits(
    run: &mut Run,
    instruction: &str,
    mut summaries: Vec<Summary>,
    budget: &Budget,
    losses: &mut Losses,
) -> Result<(Vec<Summary>, u32), AgentError> {
    let fits =
        |summaries: &[Summary]| budget.fits(&prompts::reduce(instruction, &labelled(summaries)));
    let mut levels = 0;
    if fits(&summaries) {
        return Ok((summaries, levels));
    }
    run.step_started("collapse").await;
    while !fits(&summaries) {
        if levels == run.ctx.config.max_collapse_depth {
            losses.truncated.push(format!(
                "the summaries were still too long after {levels} collapse level{}, so they were shortened",
                if levels == 1 { "" } else { "s" }
            ));
            summaries = shorten(instruction, summaries, budget);
            break;
        }
        levels += 1;
        let before: usize = summaries.iter().map(|s| s.text.len()).sum();
        let (next, failed) = collapse(run, instruction, summaries, budget, levels).await;
        if next.is_empty() {
            run.step_finished("collapse").await;
            let count = failed.count();
            return Err(AgentError::Failed {
                code: failed.code(ErrorCode::AllTasksFailed),
                message: format!(
                    "the summaries could not be combined ({count} of {count} failed): {failed}"
                ),
            });
        }
        losses.failed.merge(failed);
        summaries = next;
        let after: usize = summaries.iter().map(|s| s.text.len()).sum();
        // A level that does not shrink the text will not be helped by another.
        if after >= before {
            losses.truncated.push(format!(
                "collapse level {levels} did not shorten the summaries, so they were shortened"
            ));
            summaries = shorten(instruction, summaries, budget);
            break;
        }
    }
    run.step_finished("collapse").await;
    Ok((summaries, levels))
}

/// The answer, streamed into `message`: the one summary as it is, else one reduce call; when that
/// fails, the summaries one by one.
async fn reduce(
    run: &mut Run,
    instruction: &str,
    summaries: &[Summary],
    message: &mut TextMessage,
) {
    let answer = if let [only] = summaries {
        let events = message.push(&only.text);
        run.ctx.send(events).await;
        Ok(())
    } else {
        let config = &run.ctx.config;
        let request = run.ctx.request(
            Role::Reduce,
            prompts::reduce(instruction, &labelled(summaries)),
            config.model.temperature,
            config.model.seed,
            None,
        );
        match request {
            Ok(request) => run.call(request, Some(&mut *message)).await.map(|_| ()),
            Err(e) => Err(e),
        }
    };
    if let Err(error) = answer {
        // The summaries are still worth having when the combining call fails.
        let listed: Vec<String> = summaries
            .iter()
            .map(|s| format!("**{}:** {}", s.span.label(), s.text))
            .collect();
        let lead = if message.text().is_empty() {
            ""
        } else {
            "\n\n"
        };
        let fallback = format!(
            "{lead}_The summaries could not be combined ({error}); here they are one by one._\n\n{}",
            listed.join("\n\n")
        );
        let events = message.push(&fallback);
        run.ctx.send(events).await;
        run.progress
            .note(format!("The reduce call failed: {error}"));
    }
}

/// What the answer leaves out, appended to it and to the activity's notes.
async fn notes(run: &mut Run, losses: &Losses, message: &mut TextMessage) {
    let mut notes = Vec::new();
    if !losses.failed.is_empty() {
        notes.push(format!("Not included: {}.", losses.failed));
    }
    for truncated in &losses.truncated {
        let mut chars = truncated.chars();
        let first = chars
            .next()
            .map(|c| c.to_uppercase().to_string())
            .unwrap_or_default();
        notes.push(format!("Note: {first}{}.", chars.as_str()));
    }
    for note in notes {
        let events = message.push(&format!("\n\n_{note}_"));
        run.ctx.send(events).await;
        run.progress.note(note);
    }
}

/// Map-reduce's part of `RUN_FINISHED.result`.
fn report(documents: usize, parts: usize, levels: u32, losses: &Losses) -> serde_json::Value {
    json!({
        "documents": documents,
        "parts": parts,
        "collapse_levels": levels,
        "truncated": !losses.truncated.is_empty(),
        "failed": losses
            .failed
            .reasons()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    })
}

/// The successful results as summaries, in input order; failures go to `failed`.
fn survivors(spans: &[Span], results: Vec<TaskResult>, failed: &mut Failures) -> Vec<Summary> {
    spans
        .iter()
        .zip(results)
        .filter_map(|(span, result)| match result {
            Ok(out) => Some(Summary {
                span: *span,
                text: out.text.trim().to_owned(),
            }),
            Err(failure) => {
                failed.add(span.label(), &failure);
                None
            }
        })
        .collect()
}

/// One collapse level: consecutive summaries packed into groups that fit one call each, every
/// group summarised at once. Returns the new summaries and the groups that failed.
async fn collapse(
    run: &mut Run,
    instruction: &str,
    summaries: Vec<Summary>,
    budget: &Budget,
    level: u32,
) -> (Vec<Summary>, Failures) {
    let room = budget.room_beside(&prompts::collapse(instruction, &[]));
    // A summary too long for a call of its own is cut so that every group fits.
    let summaries: Vec<Summary> = summaries
        .into_iter()
        .map(|mut s| {
            if s.tokens() > room {
                s.text = truncate(&s.text, room.saturating_sub(s.label_tokens())).to_owned();
            }
            s
        })
        .collect();
    let sizes: Vec<usize> = summaries.iter().map(Summary::tokens).collect();
    let groups = pack(&sizes, room);
    let spans: Vec<Span> = groups
        .iter()
        .filter_map(|g| Span::covering(&summaries[g.clone()]))
        .collect();
    let summaries = &summaries;
    let tasks = groups
        .iter()
        .zip(&spans)
        .map(|(group, span)| TaskSpec {
            label: format!("Collapse {level}: {}", span.label()),
            request: Box::new(move |ctx: &Ctx| {
                ctx.request(
                    Role::Collapse,
                    prompts::collapse(instruction, &labelled(&summaries[group.clone()])),
                    ctx.config.model.temperature,
                    ctx.config.model.seed,
                    None,
                )
            }),
            structured: None,
        })
        .collect();
    let results = run.fan_out(tasks, &mut Quiet).await;
    let mut failed = Failures::default();
    let next = survivors(&spans, results, &mut failed);
    (next, failed)
}

/// Makes the summaries fit one reduce call: each gets an equal share of the room, and when a
/// share would be too small to say anything, the last summaries are left out.
fn shorten(instruction: &str, mut summaries: Vec<Summary>, budget: &Budget) -> Vec<Summary> {
    let room = budget.room_beside(&prompts::reduce(instruction, &[]));
    let label = summaries
        .iter()
        .map(Summary::label_tokens)
        .max()
        .unwrap_or(0);
    let keep = (room / (MIN_SUMMARY_TOKENS + label)).clamp(1, summaries.len().max(1));
    summaries.truncate(keep);
    let share = room / summaries.len().max(1);
    for s in &mut summaries {
        let allowed = share.saturating_sub(s.label_tokens()).max(1);
        s.text = truncate(&s.text, allowed).to_owned();
    }
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(doc: usize, part: usize, parts: usize) -> Part {
        Part { doc, part, parts }
    }

    #[test]
    fn spans_are_labelled() {
        let one = |p| Span { first: p, last: p };
        let summary = |p| Summary {
            span: one(p),
            text: String::new(),
        };
        assert_eq!(one(at(3, 1, 1)).label(), "Document 3");
        assert_eq!(one(at(3, 2, 5)).label(), "Document 3, part 2 of 5");
        let parts = [summary(at(3, 2, 5)), summary(at(3, 4, 5))];
        let covering = Span::covering(&parts).expect("span");
        assert_eq!(covering.label(), "Document 3, parts 2–4 of 5");
        let docs = [summary(at(1, 1, 1)), summary(at(4, 2, 2))];
        let covering = Span::covering(&docs).expect("span");
        assert_eq!(covering.label(), "Documents 1–4");
        assert_eq!(Span::covering(&[]), None);
    }

    #[test]
    fn shortened_summaries_fit_the_reduce_call() {
        let budget = Budget::new(2048, None);
        let summaries: Vec<Summary> = (1..=200)
            .map(|d| Summary {
                span: Span {
                    first: at(d, 1, 1),
                    last: at(d, 1, 1),
                },
                text: "word ".repeat(400),
            })
            .collect();
        let short = shorten("Summarize", summaries, &budget);
        assert!(!short.is_empty() && short.len() < 200);
        assert!(budget.fits(&prompts::reduce("Summarize", &labelled(&short))));
    }
}
