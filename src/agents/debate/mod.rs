//! Debate: PRO then CON each round (each sees every earlier argument), then two judges at once,
//! each reading both sides of the round and scoring one; after `num_rounds` the totals decide,
//! and equal totals are a tie. A judge that fails is reported and its round left unscored (both
//! sides, so that neither gains from it); a debater that fails ends the run.

pub mod prompts;
mod score;

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
use prompts::Side;
use score::{parse_score, score_in_prose, Score, Winner};

pub const FACTORY_NAMES: &[&str] = &[
    "crazy_glue.factories.debate_factory.create_debate_agent",
    "debate",
];

pub const ACTIVITY_TYPE: &str = "debate";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebateConfig {
    #[serde(skip)]
    pub model: ModelSettings,
    pub num_rounds: u32,
    /// Upper bound on each argument's and each judgement's tokens, thinking included.
    pub max_tokens: u32,
    /// Sampling temperature of the judges: low, so that a score reads the arguments, not chance.
    pub judge_temperature: f32,
}

impl Default for DebateConfig {
    fn default() -> Self {
        Self {
            model: ModelSettings::default(),
            num_rounds: 3,
            max_tokens: 1024,
            judge_temperature: 0.2,
        }
    }
}

impl RoomSettings for DebateConfig {
    fn model(&self) -> &ModelSettings {
        &self.model
    }

    fn model_mut(&mut self) -> &mut ModelSettings {
        &mut self.model
    }
}

impl DebateConfig {
    pub fn from_value(
        extra: &Value,
        model_override: Option<&String>,
    ) -> Result<Self, FactoryError> {
        let config: Self = read_config(extra, model_override)?;
        let err = |field: &str, message: String| {
            Err(FactoryError {
                field: field.into(),
                message,
            })
        };
        if !(1..=10).contains(&config.num_rounds) {
            return err(
                "num_rounds",
                format!("{} is out of range 1..=10", config.num_rounds),
            );
        }
        if config.max_tokens == 0 {
            return err("max_tokens", "must be at least 1".into());
        }
        if !(0.0..=2.0).contains(&config.judge_temperature) {
            return err(
                "judge_temperature",
                format!("{} is out of range 0.0..=2.0", config.judge_temperature),
            );
        }
        Ok(config)
    }
}

pub fn create(extra: &Value, deps: &AgentDeps) -> Result<Arc<dyn Agent>, FactoryError> {
    let config = DebateConfig::from_value(extra, deps.model_override.as_ref())?;
    Ok(Arc::new(DebateAgent {
        config: Arc::new(config),
        deps: deps.clone(),
    }))
}

struct DebateAgent {
    config: Arc<DebateConfig>,
    deps: AgentDeps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Starting,
    ProSpeaking,
    ConSpeaking,
    Judging,
    Complete,
    Failed,
}

/// One scored round as the activity shows it; a side's score is absent when its round went
/// unscored.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct RoundScore {
    round: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pro_score: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    con_score: Option<u8>,
}

/// The original's fields (`status`, `round`, `total_rounds`, `pro_score`, `con_score`, `winner`)
/// and each round's scores.
#[derive(Debug, Clone, Serialize)]
struct Activity {
    status: Status,
    topic: String,
    round: u32,
    total_rounds: u32,
    pro_score: u32,
    con_score: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    winner: Option<Winner>,
    rounds: Vec<RoundScore>,
}

type Run = kit::Run<DebateConfig, Activity>;

impl Agent for DebateAgent {
    fn start(&self, input: RunAgentInput, events: EventSink) -> Result<Accepted, AgentError> {
        let topic = input
            .last_user_text()
            .ok_or_else(|| AgentError::BadInput("the run has no user message with text".into()))?
            .trim()
            .to_owned();
        if topic.is_empty() {
            return Err(AgentError::BadInput(
                "nothing to debate: write a motion".into(),
            ));
        }
        let config = self.config.clone();
        let budget = Budget::new(config.model.num_ctx, Some(config.max_tokens));
        let history = History::read(&input.messages, budget.prompt_tokens() / 4);
        let ctx = kit::Ctx::new(self.deps.llm.clone(), events, config.clone(), &history);
        // The last round's judge carries the most: the motion and both last arguments at their
        // longest; checked here with the motion alone, the arguments being bounded by max_tokens.
        let widest = "x".repeat(prompts::ARGUMENT_WORDS * 8);
        ctx.budget(config.max_tokens)
            .check(
                &prompts::judge(Side::Pro, &topic, &widest, &widest),
                0,
                "the motion",
            )
            .map_err(AgentError::BadInput)?;
        let board = Board::new(
            ACTIVITY_TYPE,
            Activity {
                status: Status::Starting,
                topic: topic.clone(),
                round: 0,
                total_rounds: config.num_rounds,
                pro_score: 0,
                con_score: 0,
                winner: None,
                rounds: Vec::new(),
            },
        );
        let run = Run::new(ctx, board);
        Ok(Accepted {
            run: Box::pin(debate(run, topic)),
            // The two judges of a round; the debaters speak one at a time.
            max_calls: 2,
            strategy: "debate",
        })
    }
}

/// One round's arguments and judgements.
struct Round {
    pro: String,
    con: String,
    pro_score: Option<Score>,
    con_score: Option<Score>,
}

async fn debate(mut run: Run, topic: String) -> Result<RunOutput, AgentError> {
    run.send_snapshot().await;
    let result = rounds(&mut run, &topic).await;
    let status = if result.is_ok() {
        Status::Complete
    } else {
        Status::Failed
    };
    run.progress.update(|a| a.status = status);
    run.send_progress().await;
    let rounds = result?;
    let (pro_total, con_total) = totals(&rounds);
    let winner = Winner::of(pro_total, con_total);
    let verdict = verdict(&topic, &rounds, winner, pro_total, con_total);
    let mut message = TextMessage::new(None);
    let mut events = message.push(&verdict);
    events.extend(message.close());
    run.ctx.send(events).await;
    let mut details = Map::new();
    details.insert("topic".into(), json!(topic));
    details.insert(
        "rounds".into(),
        json!(rounds
            .iter()
            .map(|r| json!({
                "pro": r.pro, "con": r.con,
                "pro_score": r.pro_score, "con_score": r.con_score,
            }))
            .collect::<Vec<_>>()),
    );
    details.insert("pro_total".into(), json!(pro_total));
    details.insert("con_total".into(), json!(con_total));
    details.insert("winner".into(), json!(winner));
    details.insert("activity".into(), run.progress.content());
    Ok(RunOutput {
        answer: verdict,
        llm_requests: run.usage.requests(),
        usage: run.usage.entries(run.ctx.llm.provider()),
        activity_type: ACTIVITY_TYPE,
        details,
    })
}

/// Each side's total over the rounds both judges scored.
fn totals(rounds: &[Round]) -> (u32, u32) {
    rounds
        .iter()
        .filter_map(|r| Some((r.pro_score.as_ref()?.value, r.con_score.as_ref()?.value)))
        .fold((0, 0), |(p, c), (rp, rc)| {
            (p + u32::from(rp), c + u32::from(rc))
        })
}

async fn rounds(run: &mut Run, topic: &str) -> Result<Vec<Round>, AgentError> {
    let total = run.ctx.config.num_rounds;
    let mut done: Vec<Round> = Vec::new();
    for round in 1..=total {
        let earlier: Vec<(Side, &str)> = done
            .iter()
            .flat_map(|r| [(Side::Pro, r.pro.as_str()), (Side::Con, r.con.as_str())])
            .collect();
        run.progress.update(|a| {
            a.round = round;
            a.status = Status::ProSpeaking;
        });
        let pro = argue(run, round, Side::Pro, topic, &earlier).await?;
        run.progress.update(|a| a.status = Status::ConSpeaking);
        let mut earlier = earlier;
        earlier.push((Side::Pro, &pro));
        let con = argue(run, round, Side::Con, topic, &earlier).await?;
        run.progress.update(|a| a.status = Status::Judging);
        let (pro_score, con_score) = judge(run, round, topic, &pro, &con).await;
        let values = pro_score
            .as_ref()
            .map(|s| s.value)
            .zip(con_score.as_ref().map(|s| s.value));
        if values.is_none() {
            run.progress.note(format!(
                "Round {round} was left unscored: a judge could not give a score."
            ));
        }
        run.progress.update(|a| {
            a.rounds.push(RoundScore {
                round,
                pro_score: values.map(|(p, _)| p),
                con_score: values.map(|(_, c)| c),
            });
            if let Some((p, c)) = values {
                a.pro_score += u32::from(p);
                a.con_score += u32::from(c);
            }
        });
        run.send_progress().await;
        done.push(Round {
            pro,
            con,
            pro_score,
            con_score,
        });
    }
    let (pro_total, con_total) = totals(&done);
    if done
        .iter()
        .all(|r| r.pro_score.is_none() || r.con_score.is_none())
    {
        return Err(AgentError::Failed {
            code: ErrorCode::AllTasksFailed,
            message: "no round of the debate could be scored: every round had a judge fail".into(),
        });
    }
    run.progress
        .update(|a| a.winner = Some(Winner::of(pro_total, con_total)));
    Ok(done)
}

/// One side's argument, streamed as its own subagent.
async fn argue(
    run: &mut Run,
    round: u32,
    side: Side,
    topic: &str,
    earlier: &[(Side, &str)],
) -> Result<String, AgentError> {
    let prompt = prompts::debater(side, topic, earlier);
    let task = TaskSpec {
        label: format!("Round {round}: {}", side.name()),
        request: Box::new(move |ctx: &kit::Ctx<DebateConfig>| {
            let model = ctx.model();
            ctx.request_capped(
                ctx.config.max_tokens,
                prompt,
                model.temperature,
                model.seed + i64::from(round),
                None,
            )
        }),
        structured: None,
    };
    run.step_started(&format!("round_{round}_{}", side.name().to_lowercase()))
        .await;
    let result = run.fan_out(vec![task], &mut Quiet).await.pop();
    run.step_finished(&format!("round_{round}_{}", side.name().to_lowercase()))
        .await;
    match result {
        Some(Ok(out)) => Ok(out.text),
        Some(Err(failure)) => Err(AgentError::Failed {
            code: failure.code,
            message: format!(
                "the {} argument of round {round} failed: {}",
                side.name(),
                failure.message
            ),
        }),
        None => Err(AgentError::Failed {
            code: ErrorCode::Internal,
            message: "the argument's task gave no result".into(),
        }),
    }
}

/// Both judges at once; a failed judge is a note and no score.
async fn judge(
    run: &mut Run,
    round: u32,
    topic: &str,
    pro: &str,
    con: &str,
) -> (Option<Score>, Option<Score>) {
    let tasks = [Side::Pro, Side::Con]
        .into_iter()
        .map(|side| {
            let prompt = prompts::judge(side, topic, pro, con);
            TaskSpec {
                label: format!("Round {round}: judge {}", side.name()),
                request: Box::new(move |ctx: &kit::Ctx<DebateConfig>| {
                    ctx.request_capped(
                        ctx.config.max_tokens,
                        prompt,
                        ctx.config.judge_temperature,
                        ctx.model().seed,
                        Some(score::SCHEMA.clone()),
                    )
                }),
                structured: Some(Structured {
                    parse: Box::new(|text| parse_score(text).map(|s| json!(s))),
                    free_text: Some(Box::new(|text| score_in_prose(text).map(|s| json!(s)))),
                }),
            }
        })
        .collect();
    let step = format!("round_{round}_judging");
    run.step_started(&step).await;
    let results = run.fan_out(tasks, &mut Quiet).await;
    run.step_finished(&step).await;
    let mut scores = [None, None];
    for ((side, result), slot) in [Side::Pro, Side::Con]
        .into_iter()
        .zip(results)
        .zip(&mut scores)
    {
        match result {
            Ok(out) => *slot = out.value.and_then(|v| serde_json::from_value(v).ok()),
            Err(failure) => run.progress.note(format!(
                "The judge of round {round}'s {} side failed: {}",
                side.name(),
                failure.message
            )),
        }
    }
    let [pro, con] = scores;
    (pro, con)
}

/// The answer: every round's arguments and scores, then the verdict.
fn verdict(topic: &str, rounds: &[Round], winner: Winner, pro: u32, con: u32) -> String {
    let mut text = format!("# Debate: {topic}\n");
    for (i, round) in rounds.iter().enumerate() {
        text.push_str(&format!(
            "\n## Round {}\n\n**PRO:** {}\n\n**CON:** {}\n",
            i + 1,
            round.pro.trim(),
            round.con.trim()
        ));
        match (&round.pro_score, &round.con_score) {
            (Some(p), Some(c)) => text.push_str(&format!(
                "\n_Judges: PRO {}/10 ({}); CON {}/10 ({})_\n",
                p.value,
                p.reasoning.trim(),
                c.value,
                c.reasoning.trim()
            )),
            _ => text.push_str("\n_This round was not scored: a judge failed._\n"),
        }
    }
    let outcome = match winner {
        Winner::Pro => "PRO wins",
        Winner::Con => "CON wins",
        Winner::Tie => "It is a tie",
    };
    text.push_str(&format!(
        "\n## Verdict\n\n{outcome}: PRO {pro}, CON {con}.\n"
    ));
    text
}
