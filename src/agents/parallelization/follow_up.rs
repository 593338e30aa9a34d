//! A follow-up on the thread's previous answer ("make the Wind section longer", "which of these
//! is cheapest?"): one call that sees the conversation, its answer streamed. Detection picks it
//! for short messages that point back at an earlier answer (`detect::is_follow_up`).

use serde_json::json;

use super::config::{ParallelizationConfig, Role};
use super::progress::RunStatus;
use super::prompts;
use super::strategy::{text_after_command, Fanout, Info};
use super::Outcome;
use super::Run;
use crate::agents::kit::messages::TextMessage;
use crate::agents::AgentError;

#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub message: String,
}

impl Fanout for FollowUp {
    const INFO: Info = Info {
        name: "follow_up",
        command: "followup",
        aliases: &["follow", "continue"],
        label: "Follow-up",
        description: "Answers a message about the conversation's previous answer (change it, summarise it, ask about it) with one call that sees the conversation.",
    };

    fn read(text: &str, _documents: Vec<String>) -> Result<Self, String> {
        Ok(FollowUp {
            message: text_after_command(text, "message")?.to_owned(),
        })
    }

    fn admit(&self, config: &ParallelizationConfig) -> Result<usize, String> {
        // Asked for by name in a thread with nothing said before, it would answer nothing.
        if config.history_tokens == 0 {
            return Err(
                "a follow-up needs an earlier answer in the thread; send the conversation's \
                 messages or a threadId this server has answered"
                    .into(),
            );
        }
        config.role_budget(Role::Reduce).check(
            &prompts::follow_up(&self.message),
            0,
            "the message",
        )?;
        Ok(1)
    }

    async fn run(&self, run: &mut Run) -> Result<Outcome, AgentError> {
        run.progress.set_status(RunStatus::Running);
        run.send_progress().await;
        run.step_started("answer").await;
        let config = run.ctx.config.clone();
        // The answer is the run's own, like the reduce call's, so it has the reducer's cap.
        let request = run.ctx.request(
            Role::Reduce,
            prompts::follow_up(&self.message),
            config.model.temperature,
            config.model.seed,
            None,
        )?;
        let mut message = TextMessage::new(None);
        let answer = run.call(request, Some(&mut message)).await;
        run.ctx.send(message.close()).await;
        run.step_finished("answer").await;
        Ok(Outcome {
            text: answer?,
            details: json!({}),
        })
    }
}
