//! The sharks' structured answers: an analysis (excitement and reasons) and a decision, each read
//! from JSON or, failing that, from prose.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::agents::kit::reply::{json_object, text_field};

/// A shark is interested, and says so to the others, from this excitement up.
pub const INTERESTED: u8 = 6;

pub static ANALYSIS_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "excitement": {"type": "integer", "minimum": 1, "maximum": 10},
            "reasons": {"type": "string"},
        },
        "required": ["excitement", "reasons"],
    })
});

pub static DECISION_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "invest": {"type": "boolean"},
            "amount": {"type": "number"},
            "equity": {"type": "number"},
            "conditions": {"type": "string"},
        },
        "required": ["invest"],
    })
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub excitement: u8,
    pub reasons: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub invest: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<String>,
}

fn excitement(n: f64) -> Option<u8> {
    (1.0..=10.0).contains(&n).then(|| n.round() as u8)
}

pub fn parse_analysis(text: &str) -> Result<Analysis, String> {
    let object = json_object(text).ok_or("it is not a JSON object")?;
    let excitement = text_field(&object, "excitement")
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(excitement)
        .ok_or("`excitement` is not a number from 1 to 10")?;
    Ok(Analysis {
        excitement,
        reasons: text_field(&object, "reasons").unwrap_or_default(),
    })
}

/// Excitement in prose: the first number from 1 to 10 after "excitement", or before "/10".
pub fn analysis_in_prose(text: &str) -> Option<Analysis> {
    let lower = text.to_lowercase();
    let first_number = |s: &str| {
        s.split(|c: char| !c.is_ascii_digit())
            .find(|n| !n.is_empty())
            .and_then(|n| n.parse::<f64>().ok())
    };
    let after = lower
        .find("excitement")
        .and_then(|at| first_number(&lower[at..]));
    let before = lower.find("/10").and_then(|at| {
        let head = lower[..at].trim_end();
        let start = head
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |i| i + 1);
        head[start..].parse::<f64>().ok()
    });
    Some(Analysis {
        excitement: after.or(before).and_then(excitement)?,
        reasons: text.trim().to_owned(),
    })
}

fn number(object: &Map<String, Value>, key: &str) -> Option<f64> {
    text_field(object, key)?
        .trim_matches(|c: char| c == '$' || c == '%')
        .replace(',', "")
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
}

pub fn parse_decision(text: &str) -> Result<Decision, String> {
    let object = json_object(text).ok_or("it is not a JSON object")?;
    let invest = match object.get("invest") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        _ => return Err("`invest` is not true or false".into()),
    };
    Ok(Decision {
        invest,
        amount: number(&object, "amount").filter(|_| invest),
        equity: number(&object, "equity").filter(|_| invest),
        conditions: text_field(&object, "conditions").filter(|c| invest && !c.is_empty()),
    })
}

/// A decision in prose: "I'm out" and "not invest" say no; "I'm in" and "I will invest" say yes.
pub fn decision_in_prose(text: &str) -> Option<Decision> {
    let lower = text.to_lowercase().replace('’', "'");
    let says = |phrases: &[&str]| phrases.iter().any(|p| lower.contains(p));
    let invest = if says(&[
        "i'm out",
        "i am out",
        "not invest",
        "won't invest",
        "pass on",
    ]) {
        false
    } else if says(&[
        "i'm in",
        "i am in",
        "i will invest",
        "i'll invest",
        "make an offer",
    ]) {
        true
    } else {
        return None;
    };
    Some(Decision {
        invest,
        amount: None,
        equity: None,
        conditions: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyses_are_read_from_json_or_prose() {
        let a = parse_analysis(r#"{"excitement": 8, "reasons": "big market"}"#).expect("json");
        assert_eq!((a.excitement, a.reasons.as_str()), (8, "big market"));
        assert!(parse_analysis(r#"{"excitement": 0}"#).is_err());
        assert_eq!(
            analysis_in_prose("My excitement: 7.").map(|a| a.excitement),
            Some(7)
        );
        assert_eq!(
            analysis_in_prose("I'd say 4/10").map(|a| a.excitement),
            Some(4)
        );
        assert_eq!(analysis_in_prose("nice idea"), None);
    }

    #[test]
    fn decisions_are_read_from_json_or_prose() {
        let d = parse_decision(r#"{"invest": true, "amount": "$100,000", "equity": 20}"#)
            .expect("json");
        assert_eq!(
            (d.invest, d.amount, d.equity),
            (true, Some(100000.0), Some(20.0))
        );
        let no = parse_decision(r#"{"invest": false, "amount": 5}"#).expect("json");
        assert_eq!((no.invest, no.amount), (false, None));
        assert!(parse_decision(r#"{"invest": "maybe"}"#).is_err());
        assert_eq!(
            decision_in_prose("For those reasons, I'm out.").map(|d| d.invest),
            Some(false)
        );
        assert_eq!(
            decision_in_prose("I’m in at 10%.").map(|d| d.invest),
            Some(true)
        );
        assert_eq!(decision_in_prose("hmm"), None);
    }
}
