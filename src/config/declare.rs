//! The `settings!` declaration and what it needs: reading a setting's text (environment variable
//! or flag), durations, the checks, and the description of each setting (README table, tests).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{parse_api_key, AuthMode};
use crate::llm::{normalize_base_url, LlmApi, OpenAiJsonMode};

/// Declares one section of settings (one mapping of the YAML file). Each setting is written once:
///
/// ```text
/// /// one-line doc (rustdoc, `--help` and the README's table)
/// key: Type = default, env ["VAR", "FALLBACK_VAR"] [, flag "name"] [, check fn] [, serde(...)];
/// ```
///
/// The field name is the YAML key; the flag defaults to the key in kebab case; the first variable
/// that is set wins; `check` runs on every value taken, whatever its source; `serde(...)` goes on
/// the field as it is. The macro generates the struct with its `Default`, a clap `Args` struct of
/// the flags, the layering of environment and flags, the checks and the descriptions.
/// `sections { key: Type / Flags }` nests other sections under their own key.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $Name:ident, flags $Flags:ident, prefix $prefix:literal {
            $(
                $(#[doc = $doc:literal])+
                $field:ident: $ty:ty = $default:expr,
                env [$($env:literal),+]
                $(, flag $flag:literal)?
                $(, check $check:expr)?
                $(, serde($($serde:tt)*))?;
            )*
        }
        $(sections { $($sub:ident: $Sub:ident / $SubFlags:ident),* $(,)? })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $Name {
            $(
                $(#[doc = $doc])+
                $(#[serde($($serde)*)])?
                pub $field: $ty,
            )*
            $($(pub $sub: $Sub,)*)?
        }

        impl Default for $Name {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                    $($($sub: $Sub::default(),)*)?
                }
            }
        }

        /// The flags of these settings, kept as text until read like the environment's.
        #[derive(Debug, Default, clap::Args)]
        pub struct $Flags {
            $(
                $(#[doc = $doc])+
                #[arg(long $(= $flag)?, id = concat!($prefix, stringify!($field)))]
                pub $field: Option<String>,
            )*
            $($(
                #[command(flatten)]
                pub $sub: $SubFlags,
            )*)?
        }

        impl $Name {
            /// Every setting of this section and the sections under it, in declaration order.
            pub fn declarations() -> Vec<$crate::config::declare::Declaration> {
                use $crate::config::declare::{flag_name, Declaration, Value};
                #[allow(unused_mut)]
                let mut all = vec![$(
                    Declaration {
                        key: concat!($prefix, stringify!($field)),
                        env: &[$($env),+],
                        flag: flag_name(stringify!($field), None $(.or(Some($flag)))?),
                        default: <$ty as Value>::show(&$default),
                        doc: concat!($($doc),+).trim(),
                    },
                )*];
                $($(all.extend($Sub::declarations());)*)?
                all
            }

            /// Takes each setting's value from the environment, then from its flag, over the
            /// current one; each value taken is checked and, if bad, blamed on its source.
            fn apply(
                &mut self,
                env: &dyn Fn(&str) -> Option<String>,
                flags: &$Flags,
            ) -> Result<(), ConfigError> {
                use $crate::config::declare::{first_set, flag_name, run_checks, Check, Value};
                $(
                    let key = concat!($prefix, stringify!($field));
                    let checks: &[&Check<$ty>] = &[$(&$check)?];
                    let flag = flags.$field.clone().map(|text| {
                        (flag_name(stringify!($field), None $(.or(Some($flag)))?), text)
                    });
                    for (source, text) in first_set(env, &[$($env),+]).into_iter().chain(flag) {
                        let error = |message| ConfigError::new(format!("{source} ({key})"), message);
                        let mut value = <$ty as Value>::parse(text.trim())
                            .map_err(|e| error(format!("'{text}': {e}")))?;
                        run_checks(&mut value, checks).map_err(error)?;
                        self.$field = value;
                    }
                )*
                $($(self.$sub.apply(env, &flags.$sub)?;)*)?
                Ok(())
            }

            /// Runs every check on the current values; `source` names where a key's value came
            /// from.
            fn check(&mut self, source: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
                use $crate::config::declare::{run_checks, Check};
                $(
                    let checks: &[&Check<$ty>] = &[$(&$check)?];
                    run_checks(&mut self.$field, checks).map_err(|message| {
                        ConfigError::new(source(concat!($prefix, stringify!($field))), message)
                    })?;
                )*
                $($(self.$sub.check(source)?;)*)?
                Ok(())
            }
        }
    };
}

/// One declared setting, as the README's table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// The YAML key, with its section (`llm.max_queue`).
    pub key: &'static str,
    /// The environment variables, the first set one winning.
    pub env: &'static [&'static str],
    pub flag: String,
    pub default: String,
    pub doc: &'static str,
}

/// The Markdown table of every setting, as README.md has it.
pub fn table(declarations: &[Declaration]) -> String {
    let mut out = String::from(
        "| setting (YAML key) | environment | flag | default | meaning |\n|---|---|---|---|---|\n",
    );
    for d in declarations {
        let env: Vec<String> = d.env.iter().map(|e| format!("`{e}`")).collect();
        let env = match env.split_first() {
            Some((first, [])) => first.clone(),
            Some((first, rest)) => format!("{first} (or {})", rest.join(", ")),
            None => String::new(),
        };
        let default = match d.default.as_str() {
            "none" | "" => "none".to_owned(),
            value => format!("`{value}`"),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| `{}` | {env} | `{}` | {default} | {} |",
            d.key, d.flag, d.doc
        );
    }
    out
}

/// A setting's value as text: how the environment and flags give it, and the README shows it.
pub trait Value: Sized {
    fn parse(text: &str) -> Result<Self, String>;
    fn show(&self) -> String;
}

macro_rules! value_from_str {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn parse(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e| format!("{e}"))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

value_from_str!(
    SocketAddr,
    String,
    usize,
    u32,
    LlmApi,
    OpenAiJsonMode,
    AuthMode
);

impl Value for bool {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(format!(
                "'{other}' is not a yes/no value; use true or false"
            )),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for NonZeroUsize {
    fn parse(text: &str) -> Result<Self, String> {
        let n: usize = text.parse().map_err(|e| format!("{e}"))?;
        NonZeroUsize::new(n).ok_or_else(|| "0 is out of range: at least 1".to_owned())
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for PathBuf {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl Value for Option<PathBuf> {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(Some(PathBuf::from(text)))
    }
    fn show(&self) -> String {
        self.as_ref()
            .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
    }
}

impl Value for Option<String> {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(Some(text.to_owned()))
    }
    fn show(&self) -> String {
        self.clone().unwrap_or_else(|| "none".to_owned())
    }
}

/// A comma-separated list.
impl Value for Vec<String> {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
    fn show(&self) -> String {
        self.join(",")
    }
}

impl Value for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        match text.parse::<f64>() {
            Ok(secs) => from_secs(secs),
            Err(_) => humantime::parse_duration(text)
                .map_err(|e| format!("not a duration ({e}); {DURATION_FORMS}"))
                .and_then(bounded),
        }
    }
    fn show(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

const DURATION_FORMS: &str = "give seconds (30, 0.5) or a number with a unit (500ms, 30s, 2m)";

/// Far beyond any useful timeout, and small enough that adding it to an `Instant` cannot overflow.
const MAX_DURATION: Duration = Duration::from_secs(10_000_000);

fn from_secs(secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{secs} is not a duration; {DURATION_FORMS}"))
        .and_then(bounded)
}

fn bounded(d: Duration) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(format!(
            "{} is too long (at most {})",
            d.show(),
            MAX_DURATION.show()
        ));
    }
    Ok(d)
}

/// A duration in the YAML file: a number of seconds or a string with a unit (`30s`, `2m`).
pub mod duration {
    use std::time::Duration;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use super::Value;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Secs(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        match Repr::deserialize(de)? {
            Repr::Secs(secs) => super::from_secs(secs),
            Repr::Text(text) => Duration::parse(text.trim()),
        }
        .map_err(D::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&d.show())
    }
}

/// `--` and the flag: the declared name, else the key in kebab case (as clap derives it).
pub fn flag_name(field: &str, declared: Option<&str>) -> String {
    match declared {
        Some(name) => format!("--{name}"),
        None => format!("--{}", field.replace('_', "-")),
    }
}

/// The first of `names` set to something other than blanks, with its value.
pub fn first_set(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Option<(String, String)> {
    names.iter().find_map(|name| {
        env(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| ((*name).to_owned(), v))
    })
}

/// A check on a setting's value; the error says what is wrong with it.
pub type Check<T> = dyn Fn(&mut T) -> Result<(), String>;

pub fn run_checks<T>(value: &mut T, checks: &[&Check<T>]) -> Result<(), String> {
    checks.iter().try_for_each(|check| check(value))
}

// The checks a declaration may name. Each says what is wrong with the value it was given.

pub fn positive(d: &mut Duration) -> Result<(), String> {
    if d.is_zero() {
        return Err("must be more than zero (a positive duration)".into());
    }
    Ok(())
}

pub fn at_least(min: usize) -> impl Fn(&mut usize) -> Result<(), String> {
    move |n| {
        if *n < min {
            return Err(format!("{n} is less than the minimum {min}"));
        }
        Ok(())
    }
}

pub fn at_most(max: usize) -> impl Fn(&mut NonZeroUsize) -> Result<(), String> {
    move |n| {
        if n.get() > max {
            return Err(format!("{n} is out of range 1..={max}"));
        }
        Ok(())
    }
}

/// At least one endpoint; each normalised to a base URL.
pub fn endpoints(urls: &mut Vec<String>) -> Result<(), String> {
    if urls.is_empty() {
        return Err("no LLM endpoint given".into());
    }
    *urls = urls
        .iter()
        .map(|u| normalize_base_url(u))
        .collect::<Result<_, _>>()?;
    Ok(())
}

/// An `http(s)://host[:port][/path]` base URL without a trailing `/`; blank is none.
pub fn otlp_endpoint(url: &mut Option<String>) -> Result<(), String> {
    let Some(raw) = url.as_deref().map(str::trim) else {
        return Ok(());
    };
    let base = raw.trim_end_matches('/');
    let host = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"));
    *url = match host {
        _ if raw.is_empty() => None,
        Some(host) if !host.is_empty() && !host.starts_with('/') => Some(base.to_owned()),
        _ => return Err(format!("'{raw}': not an http:// or https:// URL")),
    };
    Ok(())
}

/// Each entry `user:<64 hex digits>` (the SHA-256 of the key, never the key itself).
#[allow(clippy::ptr_arg)] // a check takes its setting's own type
pub fn api_keys(entries: &mut Vec<String>) -> Result<(), String> {
    entries
        .iter()
        .try_for_each(|entry| parse_api_key(entry).map(drop))
}
