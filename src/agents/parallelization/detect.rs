//! Which strategy a message asks for, and what it hands that strategy: explicit choice
//! (`forwardedProps.strategy`, a leading slash command) over attached documents over a follow-up
//! on the thread's previous answer over patterns in the prompt over the room's default.

use serde::Serialize;
use serde_json::Value;

use super::strategy::{Job, Strategy};
use super::vote::{WH_WORDS, YES_NO_OPENERS};
use crate::agents::kit::words::split_word;

/// How the strategy was chosen; part of the activity content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Explicit,
    Pattern,
    /// A follow-up on the thread's previous answer.
    Conversation,
    Default,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub strategy: Strategy,
    pub source: Source,
    pub job: Job,
}

/// Items longer than this are prose, not a list of section titles.
const MAX_SECTION_CHARS: usize = 60;
const MAX_SECTION_WORDS: usize = 6;
const MAX_TOPIC_CHARS: usize = 160;

/// Decides the strategy for `text` (the last user message); `follows_answer` when the thread has
/// an earlier answer it may refer to. Errors are the caller's mistakes and are answered with HTTP
/// 400.
pub fn choose(
    text: &str,
    forwarded: &Value,
    default: Strategy,
    follows_answer: bool,
) -> Result<Choice, String> {
    let (command, text) = split_command(text)?;
    let props = Forwarded::read(forwarded)?;
    let explicit = props.strategy.or(command);
    let has_documents = !props.documents.is_empty();
    let (strategy, source) = match explicit {
        Some(s) => (s, Source::Explicit),
        None if has_documents => (Strategy::MapReduce, Source::Pattern),
        None if follows_answer && is_follow_up(text) => (Strategy::FollowUp, Source::Conversation),
        None => match detect(text) {
            Some(s) => (s, Source::Pattern),
            None => (default, Source::Default),
        },
    };
    let job = strategy.read(text, props.documents)?;
    Ok(Choice {
        strategy,
        source,
        job,
    })
}

/// The strategy a prompt's shape suggests, if any.
pub fn detect(text: &str) -> Option<Strategy> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if summarize_rest(text).is_some() || split_documents(text).len() >= 2 {
        Some(Strategy::MapReduce)
    } else if topic_list(text).is_some() {
        Some(Strategy::Sectioning)
    } else if is_question(text) {
        Some(Strategy::Voting)
    } else {
        None
    }
}

/// Words that point back at something said before ("which of *these*", "is *this* right?").
const REFERENTS: &[&str] = &[
    "this", "these", "those", "them", "above", "previous", "earlier", "again", "former", "latter",
];
/// Weaker pointers, counted only outside questions: "Is it safe?", "Is it true that…?", "Who won
/// the last Cup?", "Is X the same as Y?" are questions of their own ("Why is that?" is not: see
/// [`is_follow_up`]).
const WEAK_REFERENTS: &[&str] = &[
    "it", "its", "they", "their", "one", "ones", "that", "last", "same",
];
/// Openers of a request to change or carry on the previous answer.
const FOLLOW_UP_OPENERS: &[&str] = &[
    "make",
    "expand",
    "extend",
    "lengthen",
    "shorten",
    "rewrite",
    "rephrase",
    "reword",
    "translate",
    "continue",
    "elaborate",
    "simplify",
    "condense",
    "add",
    "remove",
    "drop",
    "change",
    "fix",
    "now",
    "also",
    "then",
    "and",
    "but",
    "more",
    "less",
    "shorter",
    "longer",
    "again",
];
/// A follow-up is short; a long message is a request of its own.
const MAX_FOLLOW_UP_WORDS: usize = 30;

/// A message that continues the thread's previous answer rather than asking something new: short,
/// without documents or a topic list of its own, and opening with an edit or carry-on word
/// ("Make the Wind section longer", "Now summarise that") or pointing back at what was said
/// ("Which of these is cheapest?"). Only asked when the thread has an answer to refer to.
pub fn is_follow_up(text: &str) -> bool {
    let text = text.trim();
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    if words.is_empty()
        || words.len() > MAX_FOLLOW_UP_WORDS
        || split_documents(text).len() >= 2
        || topic_list(text).is_some()
    {
        return false;
    }
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    let question = is_question(text);
    FOLLOW_UP_OPENERS.contains(&words[0].as_str())
        || has(REFERENTS)
        || (!question && has(WEAK_REFERENTS))
        // A question about what was just said ends on it: "Why is that?".
        || (question && words.last().is_some_and(|w| w == "that"))
}

struct Forwarded {
    strategy: Option<Strategy>,
    documents: Vec<String>,
}

impl Forwarded {
    fn read(props: &Value) -> Result<Self, String> {
        let strategy = match props.get("strategy") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() || s.trim() == "auto" => None,
            Some(Value::String(s)) => Some(Strategy::parse(s).ok_or_else(|| {
                format!(
                    "unknown strategy '{s}' in forwardedProps.strategy; use {}",
                    Strategy::list(|i| i.name.to_owned())
                )
            })?),
            Some(other) => {
                return Err(format!(
                    "forwardedProps.strategy must be a string, not {other}"
                ))
            }
        };
        let documents = match props.get("documents") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, d)| match d {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(format!("forwardedProps.documents[{i}] must be a string")),
                })
                .filter(|d| d.as_ref().map_or(true, |s| !s.trim().is_empty()))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("forwardedProps.documents must be a list of strings".into()),
        };
        Ok(Self {
            strategy,
            documents,
        })
    }
}

/// A leading `/sectioning`, `/voting` or `/mapreduce` and the text after it.
fn split_command(text: &str) -> Result<(Option<Strategy>, &str), String> {
    let trimmed = text.trim_start();
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Ok((None, text));
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    let (word, after) = rest.split_at(end);
    // `/usr/bin ...` or `/ 2` is text, not a command.
    if word.is_empty() || !(after.is_empty() || after.starts_with(char::is_whitespace)) {
        return Ok((None, text));
    }
    match Strategy::parse(word) {
        Some(s) => Ok((Some(s), after.trim_start())),
        None => Err(format!(
            "unknown command /{word}; use {}",
            Strategy::list(|i| format!("/{}", i.command))
        )),
    }
}

/// The task and the documents of a map-reduce prompt: "Summarize the reports: A | B" ->
/// ("Summarize the reports", "A | B"). A lead-in without "Summarize" counts only when it is a
/// few words and the rest is a list of documents ("Compare these: [A] [B]").
pub(super) fn split_instruction(text: &str) -> (&str, &str) {
    let first_line = text.lines().next().unwrap_or("");
    // A colon after a sentence has ended belongs to the document, not to the task.
    let colon =
        topic_colon(first_line).filter(|&i| i <= 100 && !text[..i].contains(['.', '!', '?']));
    if let Some(rest) = summarize_rest(text) {
        return match colon {
            Some(i) => (&text[..i], text[i..].trim_start_matches([':', '：'])),
            None => (&text[..text.len() - rest.len()], rest),
        };
    }
    if let Some(i) = colon {
        let (lead, body) = (&text[..i], text[i..].trim_start_matches([':', '：']));
        let words = lead.split_whitespace().count();
        if (2..=12).contains(&words) && split_documents(body).len() >= 2 {
            return (lead, body);
        }
    }
    ("", text)
}

/// The text after a leading "Summarize"/"Summarise" (and an optional colon), if the prompt opens
/// with one.
fn summarize_rest(text: &str) -> Option<&str> {
    let verb = ["summarize", "summarise"]
        .into_iter()
        .find(|v| starts_with_ignore_case(text, v))?;
    let rest = &text[verb.len()..];
    // "Summarizer", "Summarized" are other words.
    if rest.starts_with(|c: char| c.is_alphanumeric()) {
        return None;
    }
    Some(rest.trim_start_matches(':').trim_start())
}

/// Two or more documents separated by lines of `---`, by `|`, or given as `[...]` items; fewer
/// than two means the text is not a document list.
pub fn split_documents(text: &str) -> Vec<String> {
    let clean = |parts: Vec<&str>| -> Vec<String> {
        parts
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let by_rule = clean(split_on_rule_lines(text));
    if by_rule.len() >= 2 {
        return by_rule;
    }
    let bracketed = bracket_items(text);
    if bracketed.len() >= 2 {
        return bracketed;
    }
    let by_bar = clean(text.split('|').collect());
    if by_bar.len() >= 2 {
        by_bar
    } else {
        Vec::new()
    }
}

fn split_on_rule_lines(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.len() >= 3 && t.chars().all(|c| c == '-') {
            parts.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    parts.push(&text[start..]);
    parts
}

/// `[first text] [second text]`: the whole prompt (after any lead-in ending in a colon) is made of
/// bracketed items.
fn bracket_items(text: &str) -> Vec<String> {
    let body = match text.find('[') {
        Some(i) => &text[i..],
        None => return Vec::new(),
    };
    let mut items = Vec::new();
    let mut rest = body.trim();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return Vec::new();
        };
        let item = inner[..end].trim();
        if !item.is_empty() {
            items.push(item.to_owned());
        }
        rest = inner[end + 1..].trim_start_matches([',', ';', '|']).trim();
    }
    if rest.is_empty() {
        items
    } else {
        Vec::new()
    }
}

/// "Topic: A, B, C": a topic, a colon, two or more short items separated by commas, semicolons,
/// "and" or lines.
pub fn topic_list(text: &str) -> Option<(&str, Vec<String>)> {
    let text = text.trim();
    let colon = topic_colon(text)?;
    let topic = text[..colon].trim();
    let list = text[colon..].trim_start_matches([':', '：']).trim();
    if topic.is_empty()
        || topic.contains('\n')
        || topic.chars().count() > MAX_TOPIC_CHARS
        || list.ends_with('?')
    {
        return None;
    }
    let items = list_items(list);
    let short = |s: &String| {
        s.chars().count() <= MAX_SECTION_CHARS && s.split_whitespace().count() <= MAX_SECTION_WORDS
    };
    (items.len() >= 2 && items.iter().all(short)).then_some((topic, items))
}

/// The first colon that ends a topic: followed by whitespace or the end, and not part of a URL
/// scheme or a time such as 10:30.
fn topic_colon(text: &str) -> Option<usize> {
    text.char_indices().find_map(|(i, c)| {
        let after = &text[i + c.len_utf8()..];
        match c {
            // Full-width colons are not followed by a space.
            '：' => Some(i),
            ':' if after.is_empty() || after.starts_with(char::is_whitespace) => Some(i),
            _ => None,
        }
    })
}

fn list_items(list: &str) -> Vec<String> {
    let mut items = Vec::new();
    for part in list.split([',', ';', '\n', '、', '，', '；']) {
        for piece in split_word(part, "and") {
            let item = piece
                .trim()
                .trim_start_matches(['-', '*', '•'])
                .trim()
                .trim_end_matches(['.', '!'])
                .trim();
            if !item.is_empty() {
                items.push(item.to_owned());
            }
        }
    }
    items
}

/// A question: ends with a question mark (any script's) or opens with a question word.
pub fn is_question(text: &str) -> bool {
    let text = text.trim();
    if text.ends_with(['?', '？', '؟']) {
        return true;
    }
    let first = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_lowercase();
    YES_NO_OPENERS.contains(&first.as_str()) || WH_WORDS.contains(&first.as_str())
}

/// A short title from a topic: the subject without a leading "Write about"-style instruction;
/// with `needs_lead`, only when there was such an instruction.
pub(super) fn title_of(topic: &str, needs_lead: bool) -> Option<String> {
    const LEADS: &[&str] = &[
        "write an essay about",
        "write an essay on",
        "write an article about",
        "write an article on",
        "write about",
        "write on",
        "tell me about",
        "give an overview of",
        "explain",
        "describe",
        "discuss",
        "cover",
        "write",
    ];
    let topic = topic.trim().trim_end_matches([':', '.']).trim();
    let lead = LEADS.iter().find(|lead| {
        starts_with_ignore_case(topic, lead) && topic[lead.len()..].starts_with(char::is_whitespace)
    });
    let subject = match lead {
        Some(lead) => topic[lead.len()..].trim(),
        None if needs_lead => return None,
        None => topic,
    };
    if subject.is_empty() || subject.contains('\n') || subject.chars().count() > 100 {
        return None;
    }
    let mut chars = subject.chars();
    let first = chars.next()?;
    Some(first.to_uppercase().chain(chars).collect())
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}
