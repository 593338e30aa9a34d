//! Shark Tank: a planner breaks the pitch down; four sharks analyse it at once (excitement 1–10
//! and reasons); then the four decide at once whether to invest, each told the others' leanings;
//! the pitch is funded when at least one invests. A failed analysis keeps its shark out of the
//! decisions and a failed decision counts as no deal, both reported; the run fails when the
//! planner, every analysis or every decision does.

mod answers;
pub mod prompts;

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
use answers::{Analysis, Decision, INTERESTED};
use prompts::SHARKS;

pub const FACTORY_NAMES: &[&str] = &[
    "crazy_glue.factories.shark_tank_factory.create_shark_tank_agent",
    "shark-tank",
];

pub const ACTIVITY_TYPE: &str = "shark_tank";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharkTankConfig {
    #[serde(skip)]
    pub model: ModelSettings,
    /// Upper bound on each call's tokens, thinking included.
    pub max_tokens: u32,
}

impl Default for SharkTankConfig {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            max_tokens: 1024,
        }
    }
}

impl RoomSettings for SharkTankConfig {
    fn model(&self) -> &ModelSettings {
        &self.model
    }

    fn model_mut(&mut self) -> &mut ModelSettings {
        &mut self.model
    }
}

pub fn create(extra: &Value, deps: &AgentDeps) -> Result<Arc<dyn Agent>, FactoryError> {
    let config: SharkTankConfig = read_config(extra, deps.model_override.as_ref())?;
    if config.max_tokens == 0 {
        return Err(FactoryError {
            field: "max_tokens".into(),
            message: "must be at least 1".into(),
        });
    }
    Ok(Arc::new(SharkTankAgent {
        config: Arc::new(config),
        deps: deps.clone(),
    }))
}

struct SharkTankAgent {
    config: Arc<SharkTankConfig>,
    deps: AgentDeps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Starting,
    Planning,
    Analyzing,
    Deciding,
    Complete,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
struct Shark {
    name: &'static str,
    focus: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct AnalysisEntry {
    shark: &'static str,
    excitement: u8,
    interested: bool,
}

#[derive(Debug, Clone, Serialize)]
struct DealEntry {
    shark: &'static str,
    #[serde(flatten)]
    decision: Decision,
}

/// The original's nested `sharks`, `analyses` and `deals`, and the verdict.
#[derive(Debug, Clone, Serialize)]
struct Activity {
    status: Status,
    pitch: String,
    sharks: Vec<Shark>,
    analyses: Vec<AnalysisEntry>,
    deals: Vec<DealEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    funded: Option<bool>,
}

type Run = kit::Run<SharkTankConfig, Activity>;

impl Agent for SharkTankAgent {
    fn start(&self, input: RunAgentInput, events: EventSink) -> Result<Accepted, AgentError> {
        let pitch = input
            .last_user_text()
            .ok_or_else(|| AgentError::BadInput("the run has no user message with text".into()))?
            .trim()
            .to_owned();
        if pitch.is_empty() {
            return Err(AgentError::BadInput(
                "nothing to judge: write a pitch".into(),
            ));
        }
        let config = self.config.clone();
        let budget = Budget::new(config.model.num_ctx, Some(config.max_tokens));
        let history = History::read(&input.messages, budget.prompt_tokens() / 4);
        let ctx = kit::Ctx::new(self.deps.llm.clone(), events, config.clone(), &history);
        // An analysis carries the pitch and the breakdown, bounded by max_tokens.
        let widest = "x".repeat(config.max_tokens as usize * 3);
        ctx.budget(config.max_tokens)
            .check(&prompts::analyst(0, &pitch, &widest), 0, "the pitch")
            .map_err(AgentError::BadInput)?;
        let board = Board::new(
            ACTIVITY_TYPE,
            Activity {
                status: Status::Starting,
                pitch: pitch.clone(),
                sharks: SHARKS
                    .iter()
                    .map(|&(name, focus)| Shark { name, focus })
                    .collect(),
                analyses: Vec::new(),
                deals: Vec::new(),
                funded: None,
            },
        );
        Ok(Accepted {
            run: Box::pin(tank(Run::new(ctx, board), pitch)),
            // The four sharks at once; the planner speaks alone.
            max_calls: SHARKS.len(),
            strategy: "shark_tank",
        })
    }
}

async fn tank(mut run: Run, pitch: String) -> Result<RunOutput, AgentError> {
    run.send_snapshot().await;
    let result = panel(&mut run, &pitch).await;
    run.progress.update(|a| {
        a.status = if result.is_ok() {
            Status::Complete
        } else {
            Status::Failed
        }
    });
    run.send_progress().await;
    let (plan, analyses, deals) = result?;
    let funded = deals.iter().any(|(_, d)| d.invest);
    let answer = verdict(&pitch, &analyses, &deals, funded);
    let mut message = TextMessage::new(None);
    let mut events = message.push(&answer);
    events.extend(message.close());
    run.ctx.send(events).await;
    let mut details = Map::new();
    details.insert("pitch".into(), json!(pitch));
    details.insert("plan".into(), json!(plan));
    details.insert("funded".into(), json!(funded));
    details.insert("activity".into(), run.progress.content());
    Ok(RunOutput {
        answer,
        llm_requests: run.usage.requests(),
        usage: run.usage.entries(run.ctx.llm.provider()),
        activity_type: ACTIVITY_TYPE,
        details,
    })
}

type Analyses = Vec<(usize, Analysis)>;
type Deals = Vec<(usize, Decision)>;

fn all_failed(message: &str) -> AgentError {
    AgentError::Failed {
        code: ErrorCode::AllTasksFailed,
        message: message.into(),
    }
}

async fn panel(run: &mut Run, pitch: &str) -> Result<(String, Analyses, Deals), AgentError> {
    run.progress.update(|a| a.status = Status::Planning);
    run.send_progress().await;
    let planner = task("Planner".into(), prompts::planner(pitch), 0, None);
    run.step_started("planning").await;
    let plan = run.fan_out(vec![planner], &mut Quiet).await.pop();
    run.step_finished("planning").await;
    let plan = match plan {
        Some(Ok(out)) => out.text,
        Some(Err(failure)) => {
            return Err(AgentError::Failed {
                code: failure.code,
                message: format!("the planner failed: {}", failure.message),
            })
        }
        None => return Err(all_failed("the planner's task gave no result")),
    };

    run.progress.update(|a| a.status = Status::Analyzing);
    run.send_progress().await;
    let tasks = (0..SHARKS.len())
        .map(|shark| {
            let structured = Structured {
                parse: Box::new(|t| answers::parse_analysis(t).map(|a| json!(a))),
                free_text: Some(Box::new(|t| {
                    answers::analysis_in_prose(t).map(|a| json!(a))
                })),
            };
            let prompt = prompts::analyst(shark, pitch, &plan);
            task(
                format!("Analysis: {}", SHARKS[shark].0),
                prompt,
                shark,
                Some((structured, &answers::ANALYSIS_SCHEMA)),
            )
        })
        .collect();
    let analyses: Analyses = read(
        run,
        "analyzing",
        tasks,
        "analysis",
        (0..SHARKS.len()).collect(),
    )
    .await;
    if analyses.is_empty() {
        return Err(all_failed("every shark's analysis failed"));
    }
    run.progress.update(|a| {
        a.analyses = analyses
            .iter()
            .map(|(s, an)| AnalysisEntry {
                shark: SHARKS[*s].0,
                excitement: an.excitement,
                interested: an.excitement >= INTERESTED,
            })
            .collect();
        a.status = Status::Deciding;
    });
    run.send_progress().await;

    let tasks = analyses
        .iter()
        .map(|(shark, own)| {
            let others: Vec<(usize, bool)> = analyses
                .iter()
                .filter(|(other, _)| other != shark)
                .map(|(other, a)| (*other, a.excitement >= INTERESTED))
                .collect();
            let own = format!("excitement {}/10. {}", own.excitement, own.reasons);
            let structured = Structured {
                parse: Box::new(|t| answers::parse_decision(t).map(|d| json!(d))),
                free_text: Some(Box::new(|t| {
                    answers::decision_in_prose(t).map(|d| json!(d))
                })),
            };
            let prompt = prompts::decider(*shark, pitch, &own, &others);
            task(
                format!("Decision: {}", SHARKS[*shark].0),
                prompt,
                *shark,
                Some((structured, &answers::DECISION_SCHEMA)),
            )
        })
        .collect();
    let deciders = analyses.iter().map(|(s, _)| *s).collect();
    let deals: Deals = read(run, "deciding", tasks, "decision", deciders).await;
    if deals.is_empty() {
        return Err(all_failed("every shark's decision failed"));
    }
    run.progress.update(|a| {
        a.deals = deals
            .iter()
            .map(|(s, d)| DealEntry {
                shark: SHARKS[*s].0,
                decision: d.clone(),
            })
            .collect();
        a.funded = Some(deals.iter().any(|(_, d)| d.invest));
    });
    Ok((plan, analyses, deals))
}

/// Runs one step's tasks at once and reads each shark's answer; a failure is a note.
async fn read<T: serde::de::DeserializeOwned>(
    run: &mut Run,
    step: &str,
    tasks: Vec<TaskSpec<'static, SharkTankConfig>>,
    what: &str,
    sharks: Vec<usize>,
) -> Vec<(usize, T)> {
    run.step_started(step).await;
    let results = run.fan_out(tasks, &mut Quiet).await;
    run.step_finished(step).await;
    let mut read = Vec::new();
    for (shark, result) in sharks.into_iter().zip(results) {
        match result.map(|out| out.value.and_then(|v| serde_json::from_value(v).ok())) {
            Ok(Some(value)) => read.push((shark, value)),
            Ok(None) => run.progress.note(format!(
                "The {}'s {what} could not be read.",
                SHARKS[shark].0
            )),
            Err(failure) => run.progress.note(format!(
                "The {}'s {what} failed: {}",
                SHARKS[shark].0, failure.message
            )),
        }
    }
    read
}

/// One call, seeded by the shark so that each reads differently; a structured one asks for its
/// schema's JSON.
fn task(
    label: String,
    prompt: kit::Prompt,
    shark: usize,
    structured: Option<(Structured, &'static Value)>,
) -> TaskSpec<'static, SharkTankConfig> {
    let (structured, format) = structured.map(|(s, f)| (s, f.clone())).unzip();
    TaskSpec {
        label,
        request: Box::new(move |ctx: &kit::Ctx<SharkTankConfig>| {
            let model = ctx.model();
            ctx.request_capped(
                ctx.config.max_tokens,
                prompt,
                model.temperature,
                model.seed + shark as i64,
                format,
            )
        }),
        structured,
    }
}

/// The answer: each shark's excitement and deal, then the verdict.
fn verdict(pitch: &str, analyses: &Analyses, deals: &Deals, funded: bool) -> String {
    let mut text = format!("# Shark Tank: {pitch}\n\n## The sharks\n");
    for (shark, analysis) in analyses {
        let name = SHARKS[*shark].0;
        let deal = match deals.iter().find(|(s, _)| s == shark).map(|(_, d)| d) {
            Some(d) if d.invest => {
                let mut offer = "invests".to_owned();
                if let Some(amount) = d.amount {
                    offer.push_str(&format!(" ${amount:.0}"));
                }
                if let Some(equity) = d.equity {
                    offer.push_str(&format!(" for {equity}%"));
                }
                if let Some(conditions) = &d.conditions {
                    offer.push_str(&format!(" ({conditions})"));
                }
                offer
            }
            Some(_) => "is out".to_owned(),
            None => "gave no decision".to_owned(),
        };
        text.push_str(&format!(
            "\n- **{name}** ({}/10): {} — {deal}.",
            analysis.excitement,
            analysis.reasons.trim()
        ));
    }
    let investors = deals.iter().filter(|(_, d)| d.invest).count();
    text.push_str(&if funded {
        format!("\n\n## Verdict\n\nFunded: {investors} shark(s) invest.\n")
    } else {
        "\n\n## Verdict\n\nNo deal: no shark invests.\n".to_owned()
    });
    text
}
