//! Voting: independent voters answer the same question with `{answer, reasoning}`; the tally
//! picks the consensus, a judge or the earliest voter breaks a tie, and too few valid votes fail
//! the run.

use serde::Serialize;
use serde_json::{json, Value};

use super::config::{ParallelizationConfig, Role, TieBreak};
use super::progress::RunStatus;
use super::prompts;
use super::strategy::{text_after_command, Fanout, Info};
use super::vote::{leaders, question_answers, tally, Answers, Count, Counted};
use super::Outcome;
use super::Run;
use super::{Ctx, TaskSpec};
use crate::agents::kit::board::AnswerSource;
use crate::agents::kit::failures::Failures;
use crate::agents::kit::messages::TextMessage;
use crate::agents::kit::reply::{json_object, text_field};
use crate::agents::kit::runner::{Quiet, Structured, TaskFailure, TaskResult};
use crate::agents::{AgentError, ErrorCode};

/// One voter's valid answer.
#[derive(Debug, Clone, PartialEq)]
struct Ballot {
    counted: Counted,
    reasoning: String,
    source: Option<AnswerSource>,
}

impl Ballot {
    /// What a voter's `SUBAGENT_FINISHED.result` carries, and what `from_value` reads back.
    fn value(&self) -> Value {
        json!({"answer": self.counted.answer, "reasoning": self.reasoning})
    }

    fn from_value(value: Option<&Value>, answers: &Answers) -> Option<Self> {
        let object = value?.as_object()?;
        Some(Ballot {
            counted: answers.count_as(&text_field(object, "answer")?)?,
            reasoning: text_field(object, "reasoning").unwrap_or_default(),
            source: None,
        })
    }
}

/// A ballot from the JSON reply, or from prose that names exactly one allowed answer.
fn reading(answers: &Answers) -> Structured {
    let (json, prose) = (answers.clone(), answers.clone());
    Structured {
        parse: Box::new(move |text| parse_ballot(text, &json).map(|b| b.value())),
        free_text: Some(Box::new(move |text| {
            let ballot = Ballot {
                counted: prose.named_in(text)?,
                reasoning: text.trim().to_owned(),
                source: None,
            };
            Some(ballot.value())
        })),
    }
}

/// A ballot from a task's result.
fn read_ballot(result: &TaskResult, answers: &Answers) -> Result<Ballot, TaskFailure> {
    let out = result.as_ref().map_err(Clone::clone)?;
    let mut ballot = Ballot::from_value(out.value.as_ref(), answers)
        .ok_or_else(|| TaskFailure::refused("the answer could not be read".into(), out.usage))?;
    ballot.source = out.source;
    Ok(ballot)
}

fn parse_ballot(text: &str, answers: &Answers) -> Result<Ballot, String> {
    let object = json_object(text).ok_or("the answer is not the JSON object asked for")?;
    let answer = text_field(&object, "answer").ok_or("the JSON answer has no `answer` field")?;
    let counted = answers
        .count_as(&answer)
        .ok_or_else(|| match answers.allowed() {
            Some(allowed) => format!("'{answer}' is not one of: {}", allowed.join(", ")),
            None => "the answer is empty".to_owned(),
        })?;
    Ok(Ballot {
        counted,
        reasoning: text_field(&object, "reasoning").unwrap_or_default(),
        source: Some(AnswerSource::Json),
    })
}

/// The perspective of voter `i`, if the room gives any.
fn perspective(config: &ParallelizationConfig, i: usize) -> Option<&str> {
    let perspectives = &config.voter_perspectives;
    (!perspectives.is_empty()).then(|| perspectives[i % perspectives.len()].as_str())
}

/// Independent voters answer one question; the tally (and a tie-break) gives the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    pub question: String,
    pub answers: Answers,
}

impl Fanout for Vote {
    const INFO: Info = Info {
        name: "voting",
        command: "voting",
        aliases: &["vote"],
        label: "Voting",
        description: "Several voters answer the same question independently; the majority answer wins, with a tie-break.",
    };

    fn read(text: &str, _documents: Vec<String>) -> Result<Self, String> {
        Ok(Vote {
            question: text_after_command(text, "question")?.to_owned(),
            answers: question_answers(text),
        })
    }

    fn admit(&self, config: &ParallelizationConfig) -> Result<usize, String> {
        admit(config, &self.question, &self.answers)
    }

    async fn run(&self, run: &mut Run) -> Result<Outcome, AgentError> {
        poll(run, &self.question, &self.answers).await
    }
}

/// Checks a voting request before its stream: every voter's prompt and the judge's (before the
/// answers) must fit the model's context. Returns the most calls the run has at once: the voters
/// (the room's `num_voters`; a request cannot change it).
fn admit(
    config: &ParallelizationConfig,
    question: &str,
    answers: &Answers,
) -> Result<usize, String> {
    let budget = |role| config.role_budget(role);
    let allowed = answers.allowed();
    let voters = config.num_voters as usize;
    // Perspectives cycle, so the first `voters` of them are every prompt there is.
    for i in 0..voters.min(config.voter_perspectives.len().max(1)) {
        let prompt = prompts::voter(question, allowed.as_deref(), perspective(config, i));
        budget(Role::Voter).check(&prompt, 0, "the question")?;
    }
    budget(Role::Judge).check(&prompts::judge(question, &[]), 0, "the question")?;
    Ok(voters)
}

async fn poll(run: &mut Run, question: &str, answers: &Answers) -> Result<Outcome, AgentError> {
    let voters = run.ctx.config.num_voters as usize;
    let allowed = answers.allowed();
    let allowed = allowed.as_deref();
    let tasks = (0..voters)
        .map(|i| TaskSpec {
            label: format!("Voter {}", i + 1),
            request: Box::new(move |ctx: &Ctx| {
                let config = &ctx.config;
                ctx.request(
                    Role::Voter,
                    prompts::voter(question, allowed, perspective(config, i)),
                    config.voter_temperature,
                    config.model.seed + i as i64,
                    Some(answers.schema()),
                )
            }),
            structured: Some(reading(answers)),
        })
        .collect();
    run.progress.set_status(RunStatus::Running);
    run.step_started("fan_out").await;
    let results = run.fan_out(tasks, &mut Quiet).await;
    run.step_finished("fan_out").await;

    run.progress.set_status(RunStatus::Aggregating);
    run.send_progress().await;
    run.step_started("aggregate").await;
    let outcome = aggregate(run, question, answers, &results).await;
    run.step_finished("aggregate").await;
    outcome
}

/// quorum -> tally -> tie-break -> report.
async fn aggregate(
    run: &mut Run,
    question: &str,
    answers: &Answers,
    results: &[TaskResult],
) -> Result<Outcome, AgentError> {
    let ballots: Vec<Result<Ballot, TaskFailure>> =
        results.iter().map(|r| read_ballot(r, answers)).collect();
    let failures = quorum(run.ctx.config.quorum() as usize, &ballots)?;
    let votes: Vec<Option<Counted>> = ballots
        .iter()
        .map(|b| b.as_ref().ok().map(|b| b.counted.clone()))
        .collect();
    let counts = tally(&votes);
    let decision = tie_break(run, question, &ballots, &counts).await;
    Ok(report(run, &ballots, &counts, decision, &failures).await)
}

/// The failed ballots, or the run's error when too few are valid.
fn quorum(quorum: usize, ballots: &[Result<Ballot, TaskFailure>]) -> Result<Failures, AgentError> {
    let mut failures = Failures::default();
    for (i, ballot) in ballots.iter().enumerate() {
        if let Err(failure) = ballot {
            failures.add(format!("Voter {}", i + 1), failure);
        }
    }
    let valid = ballots.len() - failures.count();
    if valid < quorum {
        return Err(AgentError::Failed {
            code: failures.code(ErrorCode::QuorumNotMet),
            message: format!(
                "{} of {} voters failed, leaving {valid} valid vote{} where {quorum} are needed: {failures}",
                failures.count(),
                ballots.len(),
                if valid == 1 { "" } else { "s" },
            ),
        });
    }
    Ok(failures)
}

/// How a tie was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum TieMethod {
    Judge,
    /// The earliest voter's answer.
    First,
}

/// A broken tie as `RUN_FINISHED.result.votes.tie_break` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct TieBroken {
    method: TieMethod,
    tied: Vec<String>,
    /// Why the judge was not followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// The winning answer, the reasoning shown with it, and how a tie was broken if there was one.
struct Decision {
    winner: Count,
    reasoning: Option<String>,
    tie_break: Option<TieBroken>,
}

/// The leader, or among tied leaders the judge's choice (or the earliest voter's answer).
async fn tie_break(
    run: &mut Run,
    question: &str,
    ballots: &[Result<Ballot, TaskFailure>],
    counts: &[Count],
) -> Decision {
    let reasons_for = |count: &Count| -> Vec<String> {
        ballots
            .iter()
            .flatten()
            .filter(|b| b.counted.key == count.key && !b.reasoning.is_empty())
            .map(|b| b.reasoning.clone())
            .collect()
    };
    let tied = leaders(counts);
    let earliest = match tied {
        [only] => {
            return Decision {
                winner: only.clone(),
                reasoning: reasons_for(only).into_iter().next(),
                tie_break: None,
            }
        }
        _ => tied
            .iter()
            .min_by_key(|c| c.first_voter)
            .unwrap_or(&tied[0]),
    };
    let judged = match run.ctx.config.tie_break {
        TieBreak::Judge => {
            let candidates: Vec<(String, Vec<String>)> = tied
                .iter()
                .map(|c| (c.answer.clone(), reasons_for(c)))
                .collect();
            Some(judge(run, question, &candidates).await)
        }
        TieBreak::First => None,
    };
    let broken = |method, note| TieBroken {
        method,
        tied: tied.iter().map(|c| c.answer.clone()).collect(),
        note,
    };
    let by_earliest = |note| Decision {
        winner: earliest.clone(),
        reasoning: reasons_for(earliest).into_iter().next(),
        tie_break: Some(broken(TieMethod::First, note)),
    };
    match judged {
        Some(Ok((index, reasoning))) => Decision {
            winner: tied[index].clone(),
            reasoning: Some(reasoning),
            tie_break: Some(broken(TieMethod::Judge, None)),
        },
        Some(Err(error)) => {
            let note = format!(
                "The judge could not break the tie ({error}); the earliest voter's answer wins."
            );
            run.progress.note(note.clone());
            by_earliest(Some(note))
        }
        None => by_earliest(None),
    }
}

/// The answer streamed, the failures noted, and voting's part of `RUN_FINISHED.result`.
async fn report(
    run: &mut Run,
    ballots: &[Result<Ballot, TaskFailure>],
    counts: &[Count],
    decision: Decision,
    failures: &Failures,
) -> Outcome {
    for reason in failures.reasons() {
        run.progress.note(reason.to_string());
    }
    let Decision {
        winner,
        reasoning,
        tie_break,
    } = decision;
    let text = consensus_text(
        &winner,
        ballots.len(),
        counts,
        reasoning.as_deref(),
        tie_break.as_ref().map(|t| t.method),
        failures,
    );
    let mut message = TextMessage::new(None);
    let mut events = message.push(&text);
    events.extend(message.close());
    run.ctx.send(events).await;

    let voters: Vec<Value> = ballots
        .iter()
        .enumerate()
        .map(|(i, b)| match b {
            Ok(b) => json!({
                "voter": i + 1,
                "answer": b.counted.answer,
                "reasoning": b.reasoning,
                "source": b.source,
            }),
            Err(f) => json!({"voter": i + 1, "error": f.message}),
        })
        .collect();
    let valid = ballots.len() - failures.count();
    let mut votes = json!({
        "answer": winner.answer,
        "count": winner.votes,
        "voters": ballots.len(),
        "valid": valid,
        "agreement": winner.votes as f64 / valid as f64,
        "tally": counts,
        "ballots": voters,
    });
    if let Some(tie_break) = tie_break {
        votes["tie_break"] = json!(tie_break);
    }
    Outcome {
        text,
        details: json!({"votes": votes}),
    }
}

/// One judge call choosing among the tied answers; the index into `candidates` and why.
async fn judge(
    run: &mut Run,
    question: &str,
    candidates: &[(String, Vec<String>)],
) -> Result<(usize, String), String> {
    let config = run.ctx.config.clone();
    let options = Answers::Options(candidates.iter().map(|(a, _)| a.clone()).collect());
    let request = run
        .ctx
        .request(
            Role::Judge,
            prompts::judge(question, candidates),
            config.model.temperature,
            config.model.seed,
            Some(options.schema()),
        )
        .map_err(|e| e.to_string())?;
    run.step_started("tie_break").await;
    let answer = run.ask(request, &reading(&options)).await;
    run.step_finished("tie_break").await;
    let ballot = read_ballot(&answer, &options).map_err(|f| f.message)?;
    let index = candidates
        .iter()
        .position(|(a, _)| *a == ballot.counted.answer)
        .ok_or("the judge chose none of the tied answers")?;
    Ok((index, ballot.reasoning))
}

fn consensus_text(
    winner: &Count,
    voters: usize,
    counts: &[Count],
    reasoning: Option<&str>,
    tie_break: Option<TieMethod>,
    failures: &Failures,
) -> String {
    let mut text = format!(
        "**{}** ({} of {voters} voter{})",
        winner.answer,
        winner.votes,
        if voters == 1 { "" } else { "s" }
    );
    if let Some(reasoning) = reasoning.filter(|r| !r.is_empty()) {
        text.push_str(&format!("\n\n{reasoning}"));
    }
    let tally: Vec<String> = counts
        .iter()
        .map(|c| format!("{} {}", c.answer, c.votes))
        .collect();
    text.push_str(&format!("\n\nVotes: {}", tally.join(", ")));
    match tie_break {
        Some(TieMethod::Judge) => text.push_str("\n\nThe tie was broken by a judge."),
        Some(TieMethod::First) => {
            text.push_str("\n\nThe tie was broken in favour of the earliest voter.")
        }
        None => {}
    }
    if !failures.is_empty() {
        text.push_str(&format!("\n\nNot counted: {failures}."));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_are_parsed_and_checked() {
        let options = Answers::Options(vec!["Python".into(), "JavaScript".into()]);
        let ballot =
            parse_ballot(r#"{"answer": "python", "reasoning": "simple"}"#, &options).expect("ok");
        assert_eq!(ballot.counted.answer, "Python");
        assert_eq!(ballot.reasoning, "simple");
        let wrong = parse_ballot(r#"{"answer": "Ruby", "reasoning": ""}"#, &options);
        assert_eq!(
            wrong,
            Err("'Ruby' is not one of: Python, JavaScript".into())
        );
        assert!(parse_ballot("Python!", &options).is_err());
        assert!(parse_ballot(r#"{"reasoning": "x"}"#, &options).is_err());
    }

    #[test]
    fn consensus_states_answer_count_and_reasoning() {
        let counts = tally(&[
            Answers::Free.count_as("Yes"),
            Answers::Free.count_as("yes"),
            Answers::Free.count_as("no"),
        ]);
        let text = consensus_text(
            &counts[0],
            3,
            &counts,
            Some("Because."),
            None,
            &Failures::default(),
        );
        assert_eq!(
            text,
            "**Yes** (2 of 3 voters)\n\nBecause.\n\nVotes: Yes 2, no 1"
        );
    }
}
