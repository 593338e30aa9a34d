//! Every prompt the agent sends, kept together so they read as text. `{name}` marks where a value
//! goes; the functions below fill them in.

use crate::agents::kit::words::fill;

pub const PLANNER_SYSTEM: &str = "\
You plan the sections of a short document. Reply with JSON only, in the form
{\"sections\": [\"First title\", \"Second title\"]}.
Give between {min} and {max} section titles in reading order. Each title is two to five words,
with no numbering and no Markdown. The sections must not overlap.";

pub const PLANNER_USER: &str = "Topic: {topic}";

pub const SECTION_SYSTEM: &str = "\
You are one of several writers. Each writes one section of the same document at the same time.
Write only your own section, in Markdown: two or three short paragraphs, or a short list where
that reads better. Do not write a heading or title for your section: the heading is added for
you. Do not cover what the other sections cover, and do not write an introduction or conclusion
for the whole document.";

pub const SECTION_USER: &str = "\
Your section: {section}
Topic: {topic}
Sections of the document, in order: {sections}";

pub const VOTER_SYSTEM: &str = "\
You answer a question on your own; other people answer it independently and the answers are
compared. Think it through, then reply with JSON only, in the form
{\"answer\": \"...\", \"reasoning\": \"...\"}.
`answer` is the short answer alone (a few words at most); `reasoning` gives the main reasons in
two or three sentences.";

pub const VOTER_ALLOWED: &str = "Your answer must be exactly one of: {allowed}.";

pub const VOTER_PERSPECTIVE: &str = "Answer from this point of view: {perspective}.";

pub const JUDGE_SYSTEM: &str = "\
Several people answered the same question and their votes are tied. Weigh the answers and their
reasoning, then pick the best-supported answer. Reply with JSON only, in the form
{\"answer\": \"...\", \"reasoning\": \"...\"}, where `answer` is exactly one of the tied answers.";

pub const JUDGE_USER: &str = "\
Question: {question}

Tied answers and the reasoning given for them:
{candidates}";

pub const MAP_SYSTEM: &str = "\
You summarize one document, or one part of a longer document, so that the summaries of all parts
can be combined afterwards. Keep the facts, names and figures that matter for the task; leave
out everything else. Write at most {words} words of plain prose.";

pub const MAP_USER: &str = "\
Task: {instruction}

{label}:
{text}";

pub const COLLAPSE_SYSTEM: &str = "\
You combine summaries of consecutive parts of a collection of documents into one shorter
summary, keeping the facts that matter for the task and the order of the material. Write at most
{words} words of plain prose.";

pub const REDUCE_SYSTEM: &str = "\
You write the final answer from summaries of several documents, given in their original order.
Follow the task, use only what the summaries say, and mention which document a point comes from
where that helps. Answer in Markdown.";

pub const SUMMARIES_USER: &str = "\
Task: {instruction}

{summaries}";

pub const FOLLOW_UP_SYSTEM: &str = "\
You continue a conversation. Answer the user's latest message using the conversation so far.
When it asks to change an earlier answer, give the whole changed answer, not only the change.
Answer in Markdown.";

/// Words a map or collapse summary may have: short enough that many fit one reduce call.
pub const SUMMARY_WORDS: usize = 150;

pub fn planner(topic: &str, min: u32, max: u32) -> (String, String) {
    (
        fill(
            PLANNER_SYSTEM,
            &[("min", &min.to_string()), ("max", &max.to_string())],
        ),
        fill(PLANNER_USER, &[("topic", topic)]),
    )
}

/// Titles a section writer sees: its own and its neighbours', so that a long plan is not repeated
/// in every writer's prompt.
pub const SECTION_VIEW: usize = 9;
/// Characters of a title as the writers see it.
pub const VIEW_TITLE_CHARS: usize = 80;

/// The prompt of the writer of `sections[index]`.
pub fn section(topic: &str, sections: &[String], index: usize) -> (String, String) {
    let short = |title: &str| -> String {
        match title.char_indices().nth(VIEW_TITLE_CHARS) {
            Some((cut, _)) => format!("{}…", &title[..cut]),
            None => title.to_owned(),
        }
    };
    let start = index
        .saturating_sub(SECTION_VIEW / 2)
        .min(sections.len().saturating_sub(SECTION_VIEW));
    let end = (start + SECTION_VIEW).min(sections.len());
    let mut view = Vec::with_capacity(SECTION_VIEW + 2);
    if start > 0 {
        view.push(format!("({start} before)"));
    }
    view.extend(sections[start..end].iter().map(|t| short(t)));
    if end < sections.len() {
        view.push(format!("({} after)", sections.len() - end));
    }
    let own = sections.get(index).map_or(String::new(), |t| short(t));
    (
        SECTION_SYSTEM.to_owned(),
        fill(
            SECTION_USER,
            &[
                ("topic", topic),
                ("sections", &view.join("; ")),
                ("section", &own),
            ],
        ),
    )
}

pub fn voter(
    question: &str,
    allowed: Option<&[String]>,
    perspective: Option<&str>,
) -> (String, String) {
    let mut system = VOTER_SYSTEM.to_owned();
    if let Some(allowed) = allowed {
        system.push('\n');
        system.push_str(&fill(VOTER_ALLOWED, &[("allowed", &allowed.join(", "))]));
    }
    if let Some(perspective) = perspective {
        system.push('\n');
        system.push_str(&fill(VOTER_PERSPECTIVE, &[("perspective", perspective)]));
    }
    (system, question.to_owned())
}

/// Asks again for a reply that was not the JSON asked for.
/// `candidates`: each tied answer with the reasoning its voters gave.
pub fn judge(question: &str, candidates: &[(String, Vec<String>)]) -> (String, String) {
    let candidates = candidates
        .iter()
        .map(|(answer, reasons)| {
            let reasons: String = reasons.iter().map(|r| format!("\n  - {r}")).collect();
            format!("- {answer}{reasons}")
        })
        .collect::<Vec<_>>()
        .join("\n");
    (
        JUDGE_SYSTEM.to_owned(),
        fill(
            JUDGE_USER,
            &[("question", question), ("candidates", &candidates)],
        ),
    )
}

pub fn map(instruction: &str, label: &str, text: &str) -> (String, String) {
    (
        fill(MAP_SYSTEM, &[("words", &SUMMARY_WORDS.to_string())]),
        fill(
            MAP_USER,
            &[
                ("instruction", instruction),
                ("label", label),
                ("text", text),
            ],
        ),
    )
}

/// `summaries`: (label, text) in input order.
pub fn collapse(instruction: &str, summaries: &[(String, String)]) -> (String, String) {
    (
        fill(COLLAPSE_SYSTEM, &[("words", &SUMMARY_WORDS.to_string())]),
        summaries_user(instruction, summaries),
    )
}

pub fn reduce(instruction: &str, summaries: &[(String, String)]) -> (String, String) {
    (
        REDUCE_SYSTEM.to_owned(),
        summaries_user(instruction, summaries),
    )
}

/// A follow-up: the message as it is, under the conversation the call carries.
pub fn follow_up(message: &str) -> (String, String) {
    (FOLLOW_UP_SYSTEM.to_owned(), message.to_owned())
}

fn summaries_user(instruction: &str, summaries: &[(String, String)]) -> String {
    fill(
        SUMMARIES_USER,
        &[
            ("instruction", instruction),
            ("summaries", &summaries_block(summaries)),
        ],
    )
}

/// How summaries appear in a prompt; map-reduce measures them with the same text.
pub fn summaries_block(summaries: &[(String, String)]) -> String {
    summaries
        .iter()
        .map(|(label, text)| format!("{label}:\n{text}"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_all_filled() {
        let sections = vec!["Wind".to_owned(), "Sun".to_owned()];
        let summaries = vec![("Document 1".to_owned(), "text".to_owned())];
        let filled = [
            planner("Energy", 3, 6),
            section("Energy", &sections, 0),
            voter("Tea or coffee?", Some(&sections), Some("a chemist")),
            judge("Q?", &[("Tea".into(), vec!["warm".into()])]),
            map("Summarize", "Document 1", "text"),
            collapse("Summarize", &summaries),
            reduce("Summarize", &summaries),
        ];
        for (system, user) in filled {
            for text in [system, user] {
                let unfilled = [
                    "{min}",
                    "{max}",
                    "{topic}",
                    "{section",
                    "{allowed}",
                    "{words}",
                ];
                assert!(
                    unfilled.iter().all(|p| !text.contains(p)),
                    "unfilled placeholder in {text}"
                );
            }
        }
    }

    #[test]
    fn inserted_text_is_never_filled_again() {
        let v = "{topic}{sections}{section}{text}{instruction}{summaries}{label}{question}\
                 {candidates}{allowed}{perspective}{words}{min}{max}";
        let list = vec![v.to_owned(), "B".to_owned()];
        let summaries = vec![(v.to_owned(), v.to_owned())];
        let filled = [
            planner(v, 3, 6),
            section(v, &list, 1),
            voter(v, Some(&list), Some(v)),
            judge(v, &[(v.into(), vec![v.into()])]),
            map(v, v, v),
            collapse(v, &summaries),
            reduce(v, &summaries),
        ];
        for (system, user) in filled {
            let text = format!("{system}\n{user}");
            assert!(text.contains(v), "{text}");
        }
        assert_eq!(fill("{a} {b} {", &[("a", "{b}"), ("b", "x")]), "{b} x {");
    }
}
