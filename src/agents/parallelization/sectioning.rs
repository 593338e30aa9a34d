//! Sectioning: one writer per section, all at once; the document is streamed progressively as
//! the run's answer (the first section live, each later one as soon as those before it are done).

use serde_json::{json, Value};

use super::config::{ParallelizationConfig, Role};
use super::detect::{title_of, topic_list};
use super::progress::{RunStatus, SectionsSource};
use super::prompts;
use super::strategy::{text_after_command, Fanout, Info};
use super::Outcome;
use super::Run;
use super::{Ctx, TaskSpec};
use crate::agents::kit::failures::Failures;
use crate::agents::kit::messages::TextMessage;
use crate::agents::kit::reply::json_object;
use crate::agents::kit::runner::{Observer, Structured, TaskResult};
use crate::agents::kit::words::normalize;
use crate::agents::{AgentError, ErrorCode};
use crate::agui::Event;

/// One writer per section; no sections means the model plans them first.
#[derive(Debug, Clone, PartialEq)]
pub struct Sections {
    pub topic: String,
    pub title: Option<String>,
    pub sections: Vec<String>,
}

impl Fanout for Sections {
    const INFO: Info = Info {
        name: "sectioning",
        command: "sectioning",
        aliases: &["section", "sections"],
        label: "Sectioning",
        description: "Writes the sections of a topic in parallel and joins them into one answer; \"Topic: A, B, C\" lists them, else the model plans them.",
    };

    fn read(text: &str, _documents: Vec<String>) -> Result<Self, String> {
        let text = text_after_command(text, "topic")?;
        Ok(match topic_list(text) {
            Some((topic, sections)) => Sections {
                title: title_of(topic, false),
                topic: topic.to_owned(),
                sections,
            },
            None => {
                let topic = text.trim();
                // A whole request ("Tell me a story") is no title; its subject after "Write about" is.
                Sections {
                    title: title_of(topic, true),
                    topic: topic.to_owned(),
                    sections: Vec::new(),
                }
            }
        })
    }

    fn admit(&self, config: &ParallelizationConfig) -> Result<usize, String> {
        admit(config, &self.topic, &self.sections)
    }

    async fn run(&self, run: &mut Run) -> Result<Outcome, AgentError> {
        write(
            run,
            &self.topic,
            self.title.as_deref(),
            self.sections.clone(),
        )
        .await
    }

    fn sections_source(&self) -> Option<SectionsSource> {
        Some(if self.sections.is_empty() {
            SectionsSource::Planned
        } else {
            SectionsSource::Listed
        })
    }
}

/// Checks a sectioning request before its stream: at most `max_sections` listed, and a topic
/// whose prompts fit the model's context. Returns the most calls the run has at once.
fn admit(
    config: &ParallelizationConfig,
    topic: &str,
    sections: &[String],
) -> Result<usize, String> {
    let max = config.max_sections as usize;
    if sections.len() > max {
        return Err(format!(
            "{} sections listed; this room writes at most {max} (max_sections): list fewer, or split the request",
            sections.len()
        ));
    }
    let budget = |role| config.role_budget(role);
    if sections.is_empty() {
        budget(Role::Planner).check(
            &prompts::planner(topic, config.min_sections, config.max_sections),
            0,
            "the topic",
        )?;
        // The plan is the model's: check the largest view of it a writer can get.
        let widest = vec!["x".repeat(prompts::VIEW_TITLE_CHARS + 1); max];
        budget(Role::Section).check(&prompts::section(topic, &widest, 0), 0, "the topic")?;
        return Ok(max);
    }
    let budget = budget(Role::Section);
    for i in 0..sections.len() {
        budget.check(&prompts::section(topic, sections, i), 0, "the topic")?;
    }
    Ok(sections.len())
}

async fn write(
    run: &mut Run,
    topic: &str,
    title: Option<&str>,
    mut sections: Vec<String>,
) -> Result<Outcome, AgentError> {
    if sections.is_empty() {
        sections = plan(run, topic).await?;
    }
    let tasks = sections
        .iter()
        .enumerate()
        .map(|(i, section)| {
            let sections = &sections;
            TaskSpec {
                label: format!("Section: {section}"),
                request: Box::new(move |ctx: &Ctx| {
                    ctx.request(
                        Role::Section,
                        prompts::section(topic, sections, i),
                        ctx.config.model.temperature,
                        ctx.config.model.seed + i as i64,
                        None,
                    )
                }),
                structured: None,
            }
        })
        .collect();
    run.progress.set_status(RunStatus::Running);
    run.step_started("fan_out").await;
    let mut document = Document::new(title, &sections);
    let results = run.fan_out(tasks, &mut document).await;
    run.step_finished("fan_out").await;

    run.progress.set_status(RunStatus::Aggregating);
    run.send_progress().await;
    run.step_started("aggregate").await;
    let mut failures = Failures::default();
    for (section, result) in sections.iter().zip(&results) {
        if let Err(failure) = result {
            failures.add(section.as_str(), failure);
        }
    }
    let written = document.finish();
    let text = written.as_ref().map(|(text, _)| text.clone());
    if let Some((_, close)) = written {
        run.ctx.send(close).await;
    }
    for reason in failures.reasons() {
        let noun = if reason.is_shared() {
            "Sections"
        } else {
            "Section"
        };
        run.progress.note(format!("{noun} {reason}"));
    }
    run.step_finished("aggregate").await;
    let text = text.ok_or_else(|| AgentError::Failed {
        code: failures.code(ErrorCode::AllTasksFailed),
        message: format!(
            "no section could be written ({} of {} failed): {failures}",
            failures.count(),
            sections.len()
        ),
    })?;
    let report: Vec<Value> = sections
        .iter()
        .zip(&results)
        .map(|(title, r)| match r {
            Ok(_) => json!({"title": title, "status": "complete"}),
            Err(f) => json!({"title": title, "status": "failed", "error": f.message}),
        })
        .collect();
    Ok(Outcome {
        text,
        details: json!({"sections": report}),
    })
}

/// Asks the model for the section titles of `topic`.
async fn plan(run: &mut Run, topic: &str) -> Result<Vec<String>, AgentError> {
    let config = run.ctx.config.clone();
    let (min, max) = (config.min_sections, config.max_sections);
    let schema = json!({
        "type": "object",
        "properties": {
            "sections": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": min,
                "maxItems": max,
            }
        },
        "required": ["sections"],
    });
    let request = run.ctx.request(
        Role::Planner,
        prompts::planner(topic, min, max),
        config.model.temperature,
        config.model.seed,
        Some(schema),
    )?;
    run.step_started("plan").await;
    let reading = Structured {
        parse: Box::new(move |text| {
            parse_plan(text, max as usize)
                .map(|titles| json!(titles))
                .ok_or_else(|| {
                    "it is not a JSON object with a `sections` list of titles".to_owned()
                })
        }),
        free_text: None,
    };
    let answer = run.ask(request, &reading).await;
    run.step_finished("plan").await;
    let titles = match answer {
        Ok(out) => out.value.and_then(|v| serde_json::from_value(v).ok()),
        Err(failure) if failure.from_llm => {
            return Err(AgentError::Failed {
                code: failure.code,
                message: failure.message,
            })
        }
        Err(_) => None,
    };
    titles.ok_or_else(|| AgentError::Failed {
        code: ErrorCode::BadPlan,
        message:
            "the model's section plan is not a JSON list of section titles, even when asked again"
                .into(),
    })
}

/// Section titles from a planner reply: trimmed, unnumbered, without repeats, at most `max`.
fn parse_plan(answer: &str, max: usize) -> Option<Vec<String>> {
    let object = json_object(answer)?;
    let mut seen = Vec::new();
    let mut titles = Vec::new();
    for item in object.get("sections")?.as_array()? {
        let Some(title) = item.as_str() else { continue };
        let title = title
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ')')
            .trim_matches(|c: char| c.is_whitespace() || c == '#' || c == '*');
        let key = normalize(title);
        if !key.is_empty() && !seen.contains(&key) {
            seen.push(key);
            titles.push(title.to_owned());
        }
    }
    titles.truncate(max);
    (!titles.is_empty()).then_some(titles)
}

enum Section {
    Writing(String),
    Done(String),
    Failed { text: String, error: String },
}

/// The combined document as one text message: title, then each section under its `## ` heading in
/// input order. The section at the cursor streams live; later ones wait until it is done.
struct Document {
    message: TextMessage,
    titles: Vec<String>,
    sections: Vec<Section>,
    cursor: usize,
    /// Bytes of the cursor's section already sent.
    sent: usize,
    /// Title, headings and failure notes wait here until some section has text, so that a run
    /// where every section failed sends no document at all.
    held: String,
}

impl Document {
    fn new(title: Option<&str>, titles: &[String]) -> Self {
        let mut held = title.map(|t| format!("# {t}\n\n")).unwrap_or_default();
        if let Some(first) = titles.first() {
            held.push_str(&format!("## {first}\n\n"));
        }
        Self {
            message: TextMessage::new(None),
            titles: titles.to_vec(),
            sections: titles
                .iter()
                .map(|_| Section::Writing(String::new()))
                .collect(),
            cursor: 0,
            sent: 0,
            held,
        }
    }

    fn write(&mut self, text: &str, events: &mut Vec<Event>) {
        if text.is_empty() {
            return;
        }
        let text = format!("{}{text}", std::mem::take(&mut self.held));
        events.extend(self.message.push(&text));
    }

    /// Markup: sent with the next text, or held while there is none yet.
    fn mark(&mut self, markup: &str, events: &mut Vec<Event>) {
        if self.message.text().is_empty() {
            self.held.push_str(markup);
        } else {
            events.extend(self.message.push(markup));
        }
    }

    /// Sends what the cursor's section has, and moves on past every finished section.
    fn advance(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(section) = self.sections.get(self.cursor) {
            // Only the part not sent yet is copied: this runs for every streamed delta.
            let unsent = |text: &str| text.get(self.sent..).unwrap_or_default().to_owned();
            let (unsent, len, note, done) = match section {
                Section::Writing(text) => (unsent(text), text.len(), None, false),
                Section::Done(text) => (unsent(text), text.len(), None, true),
                Section::Failed { text, error } => {
                    let note = if text.is_empty() {
                        format!("_This section could not be written: {error}_")
                    } else {
                        format!("\n\n_This section was cut short: {error}_")
                    };
                    (unsent(text), text.len(), Some(note), true)
                }
            };
            self.write(&unsent, &mut events);
            self.sent = len;
            if !done {
                break;
            }
            if let Some(note) = note {
                self.mark(&note, &mut events);
            }
            self.cursor += 1;
            self.sent = 0;
            if let Some(next) = self.titles.get(self.cursor) {
                let heading = format!("\n\n## {next}\n\n");
                self.mark(&heading, &mut events);
            }
        }
        events
    }

    /// The whole document and the events that close it; None when no section has any text.
    fn finish(mut self) -> Option<(String, Vec<Event>)> {
        if self.message.text().is_empty() {
            return None;
        }
        let close = self.message.close();
        Some((self.message.text().to_owned(), close))
    }
}

impl Observer for Document {
    fn wants_text(&self) -> bool {
        true
    }

    fn on_text(&mut self, task: usize, delta: &str) -> Vec<Event> {
        if let Some(Section::Writing(text)) = self.sections.get_mut(task) {
            text.push_str(delta);
        }
        if task == self.cursor {
            self.advance()
        } else {
            Vec::new()
        }
    }

    fn on_done(&mut self, task: usize, result: &TaskResult) -> Vec<Event> {
        let Some(section) = self.sections.get_mut(task) else {
            return Vec::new();
        };
        let streamed = match section {
            Section::Writing(text) => std::mem::take(text),
            _ => String::new(),
        };
        *section = match result {
            Ok(out) => Section::Done(out.text.clone()),
            Err(failure) => Section::Failed {
                text: streamed,
                error: failure.message.clone(),
            },
        };
        if task == self.cursor {
            self.advance()
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::kit::runner::{TaskFailure, TaskOutput};
    use crate::llm::Usage;

    fn text_of(events: &[Event]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                Event::TextMessageContent { delta, .. } => Some(delta.as_str()),
                _ => None,
            })
            .collect()
    }

    fn ok(text: &str) -> TaskResult {
        Ok(TaskOutput {
            text: text.into(),
            value: None,
            usage: Usage::default(),
            source: None,
            cut: None,
        })
    }

    fn failed(error: &str) -> TaskResult {
        Err(TaskFailure {
            code: ErrorCode::Internal,
            message: error.into(),
            usage: Usage::default(),
            from_llm: false,
        })
    }

    #[test]
    fn first_section_streams_live_and_later_ones_wait() {
        let titles = vec!["A".to_owned(), "B".to_owned(), "C".to_owned()];
        let mut doc = Document::new(Some("Topic"), &titles);
        // B and C finish first: nothing of them may go out before A is done.
        assert!(doc.on_text(1, "b1").is_empty());
        assert!(doc.on_done(1, &ok("b1")).is_empty());
        assert!(doc.on_text(2, "c1").is_empty());
        let first = doc.on_text(0, "a1");
        assert_eq!(text_of(&first), "# Topic\n\n## A\n\na1");
        assert_eq!(text_of(&doc.on_text(0, " a2")), " a2");
        // C is still writing: its streamed text follows B, and then it goes on live.
        let rest = doc.on_done(0, &ok("a1 a2"));
        assert_eq!(text_of(&rest), "\n\n## B\n\nb1\n\n## C\n\nc1");
        assert_eq!(text_of(&doc.on_text(2, "c2")), "c2");
        assert!(doc.on_done(2, &ok("c1c2")).is_empty());
        let (text, close) = doc.finish().expect("document");
        assert_eq!(
            text,
            "# Topic\n\n## A\n\na1 a2\n\n## B\n\nb1\n\n## C\n\nc1c2"
        );
        assert_eq!(close.len(), 1);
    }

    #[test]
    fn failed_sections_are_marked() {
        let titles = vec!["A".to_owned(), "B".to_owned(), "C".to_owned()];
        let mut doc = Document::new(None, &titles);
        assert!(doc.on_done(0, &failed("timeout")).is_empty());
        let events = doc.on_text(1, "half");
        assert_eq!(
            text_of(&events),
            "## A\n\n_This section could not be written: timeout_\n\n## B\n\nhalf"
        );
        doc.on_done(2, &ok("c"));
        doc.on_done(1, &failed("broke"));
        let (text, _) = doc.finish().expect("document");
        assert!(text.ends_with("half\n\n_This section was cut short: broke_\n\n## C\n\nc"));
    }

    #[test]
    fn no_document_when_every_section_failed() {
        let titles = vec!["A".to_owned(), "B".to_owned()];
        let mut doc = Document::new(Some("T"), &titles);
        assert!(doc.on_done(1, &failed("x")).is_empty());
        assert!(doc.on_done(0, &failed("y")).is_empty());
        assert!(doc.finish().is_none());
    }

    #[test]
    fn plans_are_cleaned() {
        let plan = parse_plan(
            r###"{"sections": ["1. Wind", "Sun", "wind", "", "## Water", "Heat"]}"###,
            3,
        );
        assert_eq!(
            plan,
            Some(vec!["Wind".into(), "Sun".into(), "Water".into()])
        );
        assert_eq!(parse_plan(r#"{"sections": []}"#, 3), None);
        assert_eq!(parse_plan("Wind, Sun", 3), None);
    }
}
