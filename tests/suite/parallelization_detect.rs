//! Strategy choice, table-driven: explicit choice over prompt patterns over the room's default,
//! and what each strategy is handed.

use roomhost::agents::parallelization::detect::{choose, Source};
use roomhost::agents::parallelization::vote::Answers;
use roomhost::agents::parallelization::{Job, Sections as SectionsJob, Strategy, Summarize, Vote};
use serde_json::{json, Value};

use Strategy::{MapReduce as M, Sectioning as S, Voting as V};

/// What a row expects besides the strategy and its source.
enum Expect {
    /// Map-reduce documents (and the instruction, when given).
    Docs(&'static [&'static str], Option<&'static str>),
    DocCount(usize),
    /// Listed sections (empty: planned) and the document's title.
    Sections(&'static [&'static str], Option<&'static str>),
    Options(&'static [&'static str]),
    YesNo,
    Free,
    /// Refused with a message containing this.
    Error(&'static str),
}

use Expect::*;

struct Row {
    prompt: &'static str,
    props: Value,
    default: Strategy,
    want: Option<(Strategy, Source)>,
    expect: Expect,
}

fn row(prompt: &'static str, want: (Strategy, Source), expect: Expect) -> Row {
    Row {
        prompt,
        props: Value::Null,
        default: S,
        want: Some(want),
        expect,
    }
}

fn with_props(prompt: &'static str, props: Value, want: (Strategy, Source), expect: Expect) -> Row {
    Row {
        props,
        ..row(prompt, want, expect)
    }
}

fn refused(prompt: &'static str, props: Value, message: &'static str) -> Row {
    Row {
        prompt,
        props,
        default: S,
        want: None,
        expect: Error(message),
    }
}

const P: Source = Source::Pattern;
const E: Source = Source::Explicit;
const D: Source = Source::Default;

fn table() -> Vec<Row> {
    vec![
        // The room's three suggestions.
        row(
            "Write about AI ethics: Privacy, Bias, Transparency",
            (S, P),
            Sections(&["Privacy", "Bias", "Transparency"], Some("AI ethics")),
        ),
        row("Is remote work better than office work?", (V, P), YesNo),
        row(
            "Summarize: Article1 | Article2 | Article3",
            (M, P),
            Docs(&["Article1", "Article2", "Article3"], Some("Summarize")),
        ),
        // Map-reduce.
        row("Summarise: one | two", (M, P), Docs(&["one", "two"], Some("Summarise"))),
        row(
            "Summarize the following text: The quick brown fox jumps.",
            (M, P),
            Docs(&["The quick brown fox jumps."], Some("Summarize the following text")),
        ),
        row(
            "Summarize: This is one single article about the sea.",
            (M, P),
            Docs(&["This is one single article about the sea."], Some("Summarize")),
        ),
        row(
            "summarize this article. The CEO said: growth is back.",
            (M, P),
            Docs(&["this article. The CEO said: growth is back."], Some("summarize")),
        ),
        row(
            "Article one text\n---\nArticle two text",
            (M, P),
            Docs(&["Article one text", "Article two text"], None),
        ),
        row("First doc\n-----\nSecond doc\n---\nThird doc", (M, P), DocCount(3)),
        row(
            "[The first report.] [The second report.]",
            (M, P),
            Docs(&["The first report.", "The second report."], None),
        ),
        row(
            "Compare these two: [Doc A text] [Doc B text]",
            (M, P),
            Docs(&["Doc A text", "Doc B text"], Some("Compare these two")),
        ),
        row("Doc one | Doc two |", (M, P), Docs(&["Doc one", "Doc two"], None)),
        row("Zusammenfassung: Text eins | Text zwei", (M, P), DocCount(2)),
        row("要約: 文書一 | 文書二", (M, P), DocCount(2)),
        with_props(
            "What do they agree on?",
            json!({"documents": ["first text", "second text"]}),
            (M, P),
            Docs(&["first text", "second text"], Some("What do they agree on?")),
        ),
        with_props(
            "Summarize: A | B",
            json!({"strategy": "map-reduce"}),
            (M, E),
            DocCount(2),
        ),
        row("/mapreduce Alpha | Beta", (M, E), Docs(&["Alpha", "Beta"], None)),
        refused("Summarize", Value::Null, "nothing to summarize"),
        refused("/mapreduce", Value::Null, "nothing to summarize"),
        // Sectioning.
        row(
            "Renewable energy: Wind, Solar and Hydro",
            (S, P),
            Sections(&["Wind", "Solar", "Hydro"], Some("Renewable energy")),
        ),
        row(
            "Climate change: causes; effects; solutions",
            (S, P),
            Sections(&["causes", "effects", "solutions"], Some("Climate change")),
        ),
        row(
            "Benefits of exercise: physical health, mental health, and longevity",
            (S, P),
            Sections(
                &["physical health", "mental health", "longevity"],
                Some("Benefits of exercise"),
            ),
        ),
        row(
            "Rust: ownership and borrowing",
            (S, P),
            Sections(&["ownership", "borrowing"], Some("Rust")),
        ),
        row(
            "Explain Kubernetes:\n- Pods\n- Services\n- Deployments",
            (S, P),
            Sections(&["Pods", "Services", "Deployments"], Some("Kubernetes")),
        ),
        row(
            "Python vs Rust: speed, safety, ecosystem",
            (S, P),
            Sections(&["speed", "safety", "ecosystem"], Some("Python vs Rust")),
        ),
        row("Topic: A, B, C", (S, P), Sections(&["A", "B", "C"], Some("Topic"))),
        row(
            "Les énergies renouvelables : solaire, éolien, hydraulique",
            (S, P),
            Sections(
                &["solaire", "éolien", "hydraulique"],
                Some("Les énergies renouvelables"),
            ),
        ),
        row(
            "可再生能源：风能、太阳能、水能",
            (S, P),
            Sections(&["风能", "太阳能", "水能"], Some("可再生能源")),
        ),
        row(
            "/sectioning Write about the ocean",
            (S, E),
            Sections(&[], Some("The ocean")),
        ),
        with_props(
            "Space: Mars, Moon",
            json!({"strategy": "sectioning"}),
            (S, E),
            Sections(&["Mars", "Moon"], Some("Space")),
        ),
        // Neither: the room's default, with planned sections.
        row("Tell me a story", (S, D), Sections(&[], None)),
        row(
            "Read https://example.com/docs,api,faq and tell me",
            (S, D),
            Sections(&[], None),
        ),
        row("Lunch at 10:30, then 11:45, then tea", (S, D), Sections(&[], None)),
        row(
            "Meeting notes: we discussed the budget in great detail and then agreed to postpone the launch until next spring, reviewed hiring",
            (S, D),
            Sections(&[], None),
        ),
        row("Note: call mom", (S, D), Sections(&[], None)),
        row("Only one part |", (S, D), Sections(&[], None)),
        row("Summarizer settings are broken", (S, D), Sections(&[], None)),
        Row {
            default: V,
            ..row("Tell me a story", (V, D), Free)
        },
        // Voting.
        row(
            "Which is better: Python or JavaScript?",
            (V, P),
            Options(&["Python", "JavaScript"]),
        ),
        row("Should I learn Rust", (V, P), YesNo),
        row("What is the capital of Australia?", (V, P), Free),
        row("Tabs or spaces?", (V, P), Options(&["Tabs", "spaces"])),
        row(
            "Quick question: which is faster, Rust or Go?",
            (V, P),
            Options(&["Rust", "Go"]),
        ),
        row("¿Es mejor el té o el café?", (V, P), Free),
        row("東京は日本の首都ですか？", (V, P), Free),
        row("هل القهوة مفيدة؟", (V, P), Free),
        row("How do I cook rice", (V, P), Free),
        row("/usr/bin is missing?", (V, P), Free),
        row("/voting Pick a number between 1 and 3", (V, E), Free),
        row("/vote Cats or dogs?", (V, E), Options(&["Cats", "dogs"])),
        with_props(
            "Summarize: a | b",
            json!({"strategy": "voting"}),
            (V, E),
            Free,
        ),
        with_props(
            "Is the sky blue?",
            json!({"strategy": ""}),
            (V, P),
            YesNo,
        ),
        // Refused before the stream.
        refused("Hello", json!({"strategy": "bogus"}), "unknown strategy 'bogus'"),
        refused("/bogus do it", Value::Null, "unknown command /bogus"),
        refused("/voting ", Value::Null, "write the question after the command"),
        refused("/sectioning", Value::Null, "write the topic after the command"),
        refused("Hello", json!({"strategy": 3}), "must be a string"),
        refused("Hello", json!({"documents": "notalist"}), "list of strings"),
        refused("Hello", json!({"documents": ["ok", 5]}), "documents[1]"),
    ]
}

#[test]
fn strategy_table() {
    let rows = table();
    assert!(rows.len() >= 40, "the table has {} rows", rows.len());
    for Row {
        prompt,
        props,
        default,
        want,
        expect,
    } in rows
    {
        let got = choose(prompt, &props, default, false);
        if let Error(message) = expect {
            let err = got.expect_err(prompt);
            assert!(err.contains(message), "{prompt}: {err}");
            continue;
        }
        let choice = got.unwrap_or_else(|e| panic!("{prompt}: refused: {e}"));
        assert_eq!(
            Some((choice.strategy, choice.source)),
            want,
            "{prompt}: strategy"
        );
        match (&choice.job, expect) {
            (
                Job::MapReduce(Summarize {
                    documents,
                    instruction,
                }),
                Docs(docs, want_instruction),
            ) => {
                assert_eq!(documents, docs, "{prompt}: documents");
                if let Some(want) = want_instruction {
                    assert_eq!(instruction, want, "{prompt}: instruction");
                }
            }
            (Job::MapReduce(Summarize { documents, .. }), DocCount(n)) => {
                assert_eq!(documents.len(), n, "{prompt}: {documents:?}")
            }
            (
                Job::Sectioning(SectionsJob {
                    sections, title, ..
                }),
                Sections(want, want_title),
            ) => {
                assert_eq!(sections, want, "{prompt}: sections");
                assert_eq!(title.as_deref(), want_title, "{prompt}: title");
            }
            (Job::Voting(Vote { answers, .. }), Options(want)) => {
                assert_eq!(
                    answers,
                    &Answers::Options(want.iter().map(|s| s.to_string()).collect()),
                    "{prompt}"
                )
            }
            (Job::Voting(Vote { answers, .. }), YesNo) => {
                assert_eq!(answers, &Answers::YesNo, "{prompt}")
            }
            (Job::Voting(Vote { answers, .. }), Free) => {
                assert_eq!(answers, &Answers::Free, "{prompt}")
            }
            (job, _) => panic!("{prompt}: unexpected job {job:?}"),
        }
    }
}

#[test]
fn slash_command_text_is_what_the_strategy_sees() {
    let choice = choose("/voting   Tea or coffee?", &Value::Null, S, false).expect("valid");
    assert_eq!(
        choice.job,
        Job::Voting(Vote {
            question: "Tea or coffee?".into(),
            answers: Answers::Options(vec!["Tea".into(), "coffee".into()]),
        })
    );
}
