//! The eval's shipped question set (`examples/eval/questions.yaml`): enough items, every one
//! asked so that voting allows its own right answer, and every kind of question present.

use roomhost::agents::parallelization::vote::{question_answers, Answers};
use serde::Deserialize;

#[derive(Deserialize)]
struct Question {
    q: String,
    a: String,
}

#[test]
fn every_question_allows_its_own_answer() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/eval/questions.yaml");
    let text = std::fs::read_to_string(path).expect("the question set ships");
    let questions: Vec<Question> = serde_yaml::from_str(&text).expect("a YAML list of {q, a}");
    assert!(questions.len() >= 60, "{} questions", questions.len());
    let (mut yes_no, mut options, mut free) = (0, 0, 0);
    for q in &questions {
        let answers = question_answers(&q.q);
        match &answers {
            Answers::YesNo => yes_no += 1,
            Answers::Options(_) => options += 1,
            Answers::Free => free += 1,
        }
        assert!(
            answers.count_as(&q.a).is_some(),
            "'{}' ({answers:?}) does not allow '{}'",
            q.q,
            q.a
        );
    }
    assert!(
        yes_no >= 10 && options >= 20 && free >= 10,
        "{yes_no} {options} {free}"
    );
}
