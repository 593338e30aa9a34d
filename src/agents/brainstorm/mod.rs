//! Brainstorm Arena: every persona offers ideas at once; ideas that read the same are merged;
//! then the voters (the first `num_voters` personas) rank at once the ideas of the others, never
//! their own; a Borda count orders them. A persona or voter that fails is reported and left out;
//! the run fails only when every persona or every voter does.

pub mod prompts;
mod tally;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::kit::board::Board;
use super::kit::budget::Budget;
use super::kit::history::History;
use super::kit::messages::TextMessage;
use super::kit::model::{read_config, ModelSettings, RoomSettings};
use super::kit::runner::{self as kit, Quiet, Structured, TaskSpec};
use super::{
    Accepted, Agent, AgentDeps, AgentError, ErrorCode, EventSink, FactoryError, RunOutput,
};
use crate::agui::RunAgentInput;
use prompts::{IDEAS_PER_PERSONA, PERSONAS};
use tally::Idea;

pub const FACTORY_NAMES: &[&str] = &[
    "crazy_glue.factories.brainstorm_factory.create_brainstorm_agent",
    "brainstorm",
];

pub const ACTIVITY_TYPE: &str = "brainstorm";

/// Ideas the answer lists with their scores.
const TOP: usize = 3;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrainstormConfig {
    #[serde(skip)]
    pub model: ModelSettings,
    pub num_voters: u32,
    /// Upper bound on each persona's and each voter's tokens, thinking included.
    pub max_tokens: u32,
}

impl Default for BrainstormConfig {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            num_voters: 4,
            max_tokens: 1024,
        }
    }
}

impl RoomSettings for BrainstormConfig {
    fn model(&self) -> &ModelSettings {
        &self.model
    }

    fn model_mut(&mut self) -> &mut ModelSettings {
        &mut self.model
    }
}

impl BrainstormConfig {
    pub fn from_value(
        extra: &Value,
        model_override: Option<&String>,
    ) -> Result<Self, FactoryError> {
        let config: Self = read_config(extra, model_override)?;
        if !(1..=PERSONAS.len() as u32).contains(&config.num_voters) {
            return Err(FactoryError {
                field: "num_voters".into(),
                message: format!(
                    "{} is out of range 1..={} (the voters are personas)",
                    config.num_voters,
                    PERSONAS.len()
                ),
            });
        }
        if config.max_tokens == 0 {
            return Err(FactoryError {
                field: "max_tokens".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(config)
    }
}

pub fn create(extra: &Value, deps: &AgentDeps) -> Result<Arc<dyn Agent>, FactoryError> {
    let config = BrainstormConfig::from_value(extra, deps.model_override.as_ref())?;
    Ok(Arc::new(BrainstormAgent {
        config: Arc::new(config),
        deps: deps.clone(),
    }))
}

struct BrainstormAgent {
    config: Arc<BrainstormConfig>,
    deps: AgentDeps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Starting,
    Generating,
    Voting,
    Complete,
    Failed,
}

/// The original's fields (`status`, `phase`, `total_ideas`, `top_idea`, `top_score`).
#[derive(Debug, Clone, Serialize)]
struct Activity {
    status: Status,
    challenge: String,
    /// What the arena is doing, in words.
    phase: String,
    total_ideas: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_idea: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_score: Option<u32>,
}

type Run = kit::Run<BrainstormConfig, Activity>;

impl Agent for BrainstormAgent {
    fn start(&self, input: RunAgentInput, events: EventSink) -> Result<Accepted, AgentError> {
        let challenge = input
            .last_user_text()
            .ok_or_else(|| AgentError::BadInput("the run has no user message with text".into()))?
            .trim()
            .to_owned();
        if challenge.is_empty() {
            return Err(AgentError::BadInput(
                "nothing to brainstorm: write a challenge".into(),
            ));
        }
        let config = self.config.clone();
        let budget = Budget::new(config.model.num_ctx, Some(config.max_tokens));
        let history = History::read(&input.messages, budget.prompt_tokens() / 4);
        let ctx = kit::Ctx::new(self.deps.llm.clone(), events, config.clone(), &history);
        // A voter's prompt is the widest: the challenge and every other persona's ideas, each
        // bounded by max_tokens.
        let widest = vec!["x".repeat(config.max_tokens as usize); PERSONAS.len() - 1];
        let widest: Vec<&str> = widest.iter().map(String::as_str).collect();
        ctx.budget(config.max_tokens)
            .check(&prompts::voter(0, &challenge, &widest), 0, "the challenge")
            .map_err(AgentError::BadInput)?;
        let board = Board::new(
            ACTIVITY_TYPE,
            Activity {
                status: Status::Starting,
                challenge: challenge.clone(),
                phase: "starting".into(),
                total_ideas: 0,
                top_idea: None,
                top_score: None,
            },
        );
        Ok(Accepted {
            run: Box::pin(brainstorm(Run::new(ctx, board), challenge)),
            // Every persona at once; the voters are fewer.
            max_calls: PERSONAS.len(),
            strategy: "brainstorm",
        })
    }
}

async fn brainstorm(mut run: Run, challenge: String) -> Result<RunOutput, AgentError> {
    run.send_snapshot().await;
    let result = arena(&mut run, &challenge).await;
    run.progress.update(|a| {
        a.status = if result.is_ok() {
            Status::Complete
        } else {
            Status::Failed
        };
        a.phase = if result.is_ok() { "complete" } else { "failed" }.into();
    });
    run.send_progress().await;
    let (ideas, order) = result?;
    let answer = answer(&challenge, &ideas, &order);
    let mut message = TextMessage::new(None);
    let mut events = message.push(&answer);
    events.extend(message.close());
    run.ctx.send(events).await;
    let mut details = Map::new();
    details.insert("challenge".into(), json!(challenge));
    details.insert(
        "ideas".into(),
        json!(order
            .iter()
            .map(|&i| json!({
                "idea": ideas[i].text,
                "score": ideas[i].score,
                "authors": ideas[i].authors.iter().map(|&p| PERSONAS[p].0).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()),
    );
    details.insert("activity".into(), run.progress.content());
    Ok(RunOutput {
        answer,
        llm_requests: run.usage.requests(),
        usage: run.usage.entries(run.ctx.llm.provider()),
        activity_type: ACTIVITY_TYPE,
        details,
    })
}

fn all_failed(what: &str) -> AgentError {
    AgentError::Failed {
        code: ErrorCode::AllTasksFailed,
        message: format!("every {what} failed"),
    }
}

async fn arena(run: &mut Run, challenge: &str) -> Result<(Vec<Idea>, Vec<usize>), AgentError> {
    run.progress.update(|a| {
        a.status = Status::Generating;
        a.phase = "generating ideas".into();
    });
    run.send_progress().await;
    let offered = generate(run, challenge).await;
    if offered.is_empty() {
        return Err(all_failed("persona"));
    }
    let mut ideas = tally::merge(&offered);
    run.progress.update(|a| {
        a.status = Status::Voting;
        a.phase = "voting".into();
        a.total_ideas = ideas.len();
    });
    run.send_progress().await;
    vote(run, challenge, &mut ideas).await?;
    let order = tally::standings(&ideas);
    if let Some(&best) = order.first() {
        run.progress.update(|a| {
            a.top_idea = Some(ideas[best].text.clone());
            a.top_score = Some(ideas[best].score);
        });
    }
    Ok((ideas, order))
}

/// One persona's call, seeded by the persona so that each reads differently; a structured one
/// (a vote) asks for the ranking's JSON.
fn task(
    label: String,
    prompt: kit::Prompt,
    persona: usize,
    structured: Option<Structured>,
) -> TaskSpec<'static, BrainstormConfig> {
    let format = structured.is_some().then(|| tally::SCHEMA.clone());
    TaskSpec {
        label,
        request: Box::new(move |ctx: &kit::Ctx<BrainstormConfig>| {
            let model = ctx.model();
            ctx.request_capped(
                ctx.config.max_tokens,
                prompt,
                model.temperature,
                model.seed + persona as i64,
                format,
            )
        }),
        structured,
    }
}

/// Every persona's ideas, at once; a persona that fails or offers none is a note.
async fn generate(run: &mut Run, challenge: &str) -> Vec<(usize, Vec<String>)> {
    let tasks = (0..PERSONAS.len())
        .map(|persona| {
            task(
                format!("Ideas: {}", PERSONAS[persona].0),
                prompts::generator(persona, challenge),
                persona,
                None,
            )
        })
        .collect();
    run.step_started("generating").await;
    let results = run.fan_out(tasks, &mut Quiet).await;
    run.step_finished("generating").await;
    let mut offered = Vec::new();
    for (persona, result) in results.into_iter().enumerate() {
        let name = PERSONAS[persona].0;
        match result {
            Ok(out) => {
                let ideas = tally::ideas_in(&out.text, IDEAS_PER_PERSONA);
                if ideas.is_empty() {
                    run.progress.note(format!("The {name} offered no idea."));
                } else {
                    offered.push((persona, ideas));
                }
            }
            Err(failure) => run
                .progress
                .note(format!("The {name} failed: {}", failure.message)),
        }
    }
    offered
}

/// The voters at once, each ranking the ideas it did not offer; the points go to `ideas`.
async fn vote(run: &mut Run, challenge: &str, ideas: &mut [Idea]) -> Result<(), AgentError> {
    let voters = run.ctx.config.num_voters as usize;
    // Each voter's ballot: the indices of the ideas it may rank.
    let ballots: Vec<(usize, Vec<usize>)> = (0..voters)
        .map(|voter| {
            let others = (0..ideas.len())
                .filter(|&i| !ideas[i].authors.contains(&voter))
                .collect();
            (voter, others)
        })
        .filter(|(_, others): &(usize, Vec<usize>)| !others.is_empty())
        .collect();
    if ballots.is_empty() {
        run.progress
            .note("No voter had another persona's idea to rank.".into());
        return Ok(());
    }
    let tasks = ballots
        .iter()
        .map(|(voter, others)| {
            let texts: Vec<&str> = others.iter().map(|&i| ideas[i].text.as_str()).collect();
            let prompt = prompts::voter(*voter, challenge, &texts);
            let count = others.len();
            task(
                format!("Vote: {}", PERSONAS[*voter].0),
                prompt,
                *voter,
                Some(Structured {
                    parse: Box::new(move |text| {
                        tally::parse_ranking(text, count).map(|r| json!(r))
                    }),
                    free_text: Some(Box::new(move |text| {
                        tally::ranking_in_prose(text, count).map(|r| json!(r))
                    })),
                }),
            )
        })
        .collect();
    run.step_started("voting").await;
    let results = run.fan_out(tasks, &mut Quiet).await;
    run.step_finished("voting").await;
    let mut counted = 0;
    for ((voter, others), result) in ballots.iter().zip(results) {
        let ranking: Option<Vec<usize>> = match result {
            Ok(out) => out.value.and_then(|v| serde_json::from_value(v).ok()),
            Err(failure) => {
                run.progress.note(format!(
                    "The {}'s vote failed: {}",
                    PERSONAS[*voter].0, failure.message
                ));
                None
            }
        };
        let Some(ranking) = ranking else { continue };
        counted += 1;
        for (place, points) in tally::borda(&ranking, others.len()) {
            ideas[others[place]].score += points;
        }
    }
    if counted == 0 {
        return Err(all_failed("voter"));
    }
    Ok(())
}

/// The answer: the top ideas with their points, then how many were offered.
fn answer(challenge: &str, ideas: &[Idea], order: &[usize]) -> String {
    let mut text = format!("# Brainstorm: {challenge}\n\n## Top ideas\n");
    for (rank, &i) in order.iter().take(TOP).enumerate() {
        let authors: Vec<&str> = ideas[i].authors.iter().map(|&p| PERSONAS[p].0).collect();
        text.push_str(&format!(
            "\n{}. {} — {} points ({})",
            rank + 1,
            ideas[i].text,
            ideas[i].score,
            authors.join(", ")
        ));
    }
    text.push_str(&format!(
        "\n\n_{} distinct ideas were offered and ranked by Borda count._\n",
        ideas.len()
    ));
    text
}
