//! Server settings: defaults, YAML file, environment overrides, flags, and their errors.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::harness::TempDir;
use clap::{CommandFactory, Parser};
use roomhost::config::{Cli, Settings};
use roomhost::llm::LlmApi;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("roomhost").chain(args.iter().copied()))
        .expect("known flags")
}

fn load(cli: &Cli, env: &[(&str, &str)]) -> Result<Settings, String> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::load_with(cli, |k| env.get(k).cloned()).map_err(|e| e.to_string())
}

#[test]
fn defaults_are_sensible() {
    let s = load(&Cli::default(), &[]).unwrap();
    assert_eq!(s.addr.to_string(), "127.0.0.1:8000");
    assert_eq!(s.rooms_dir.to_str(), Some("rooms"));
    assert_eq!(s.llm.base_urls, ["http://localhost:11434"]);
    assert_eq!(s.llm.api, LlmApi::Ollama);
    assert_eq!(s.llm.max_concurrency.get(), 4);
    assert_eq!(s.llm.first_byte_timeout, Duration::from_secs(180));
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = TempDir::new();
    let file = dir.write(
        "roomhost.yaml",
        "addr: 0.0.0.0:9000\nllm:\n  max_concurrency: 2\n  api: openai\n",
    );
    let path = file.to_str().expect("UTF-8 temp path");
    let s = load(&cli(&["--config", path]), &[]).unwrap();
    assert_eq!(
        (s.addr.port(), s.llm.max_concurrency.get(), s.llm.api),
        (9000, 2, LlmApi::Openai)
    );

    let s = load(
        &cli(&["--config", path]),
        &[
            ("ROOMHOST_MAX_CONCURRENCY", "8"),
            ("OLLAMA_HOST", "0.0.0.0"),
        ],
    )
    .unwrap();
    assert_eq!(s.llm.max_concurrency.get(), 8);
    assert_eq!(s.llm.base_urls, ["http://127.0.0.1:11434"]);

    let flags = cli(&[
        "--config",
        path,
        "--max-concurrency",
        "3",
        "--idle-timeout",
        "2m",
    ]);
    let s = load(&flags, &[("ROOMHOST_MAX_CONCURRENCY", "8")]).unwrap();
    assert_eq!(s.llm.max_concurrency.get(), 3);
    assert_eq!(s.llm.idle_timeout, Duration::from_secs(120));
    assert_eq!(s.llm.api, LlmApi::Openai, "kept from the file");
}

#[test]
fn several_base_urls_and_base_url_beats_ollama_host() {
    let s = load(
        &Cli::default(),
        &[
            ("OLLAMA_BASE_URL", "http://gpu1:11434, gpu2:11434"),
            ("OLLAMA_HOST", "other"),
        ],
    )
    .unwrap();
    assert_eq!(s.llm.base_urls, ["http://gpu1:11434", "http://gpu2:11434"]);
}

#[test]
fn bad_values_name_their_source() {
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Env, &[&str]); 7] = [
        (
            &[("ROOMHOST_MAX_CONCURRENCY", "lots")],
            &["ROOMHOST_MAX_CONCURRENCY", "'lots'"],
        ),
        (
            &[("ROOMHOST_MAX_CONCURRENCY", "0")],
            &["max_concurrency", "out of range"],
        ),
        (
            &[("ROOMHOST_LLM_API", "grpc")],
            &["ROOMHOST_LLM_API", "'grpc'", "ollama"],
        ),
        (
            &[("OLLAMA_BASE_URL", "ftp://x")],
            &["OLLAMA_BASE_URL", "unsupported scheme"],
        ),
        (
            &[("ROOMHOST_IDLE_TIMEOUT_SECS", "-1")],
            &[
                "ROOMHOST_IDLE_TIMEOUT_SECS",
                "llm.idle_timeout",
                "'-1'",
                "not a duration",
            ],
        ),
        (
            &[("ROOMHOST_IDLE_TIMEOUT_SECS", "0")],
            &["ROOMHOST_IDLE_TIMEOUT_SECS", "positive"],
        ),
        (
            &[("ROOMHOST_BODY_LIMIT", "10")],
            &["ROOMHOST_BODY_LIMIT", "body_limit_bytes", "minimum 1024"],
        ),
    ];
    for (env, parts) in cases {
        let msg = load(&Cli::default(), env).unwrap_err();
        for part in parts {
            assert!(msg.contains(part), "{msg:?} lacks {part:?}");
        }
    }
}

#[test]
fn config_file_errors_name_file_and_key() {
    let dir = TempDir::new();
    let file = dir.write("bad.yaml", "llm:\n  max_concurency: 2\n");
    let msg = load(&cli(&["--config", file.to_str().unwrap()]), &[]).unwrap_err();
    assert!(
        msg.contains("bad.yaml") && msg.contains("max_concurency"),
        "{msg}"
    );

    let cases = [
        (
            "llm:\n  max_concurrency: 2000\n",
            "llm.max_concurrency",
            "out of range",
        ),
        ("llm:\n  idle_timeout: 0s\n", "llm.idle_timeout", "positive"),
        ("keep_alive_secs: -2\n", "keep_alive_secs", "not a duration"),
        (
            "llm:\n  base_urls: []\n",
            "llm.base_urls",
            "no LLM endpoint",
        ),
    ];
    for (yaml, key, reason) in cases {
        let file = dir.write("range.yaml", yaml);
        let msg = load(&cli(&["--config", file.to_str().unwrap()]), &[]).unwrap_err();
        let head = format!("{}: {key}", file.display());
        assert!(msg.starts_with(&head) && msg.contains(reason), "{msg}");
    }

    let msg = load(&Cli::default(), &[("ROOMHOST_CONFIG", "none.yaml")]).unwrap_err();
    assert!(
        msg.contains("none.yaml") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn bad_flags_name_the_flag() {
    let msg = load(&cli(&["--max-concurrency", "0"]), &[]).unwrap_err();
    assert!(
        msg.starts_with("--max-concurrency (llm.max_concurrency): "),
        "{msg}"
    );
    let msg = load(&cli(&["--llm-url", "ftp://x"]), &[]).unwrap_err();
    assert!(msg.starts_with("--llm-url (llm.base_urls): "), "{msg}");
    assert!(Cli::try_parse_from(["roomhost", "--no-such-flag", "1"]).is_err());
}

#[test]
fn durations_take_seconds_or_units_and_the_old_keys() {
    let dir = TempDir::new();
    let file = dir.write(
        "d.yaml",
        "keep_alive_secs: 0.5\nshutdown_grace: 2m\nllm:\n  connect_timeout_secs: 3\n  request_timeout: 1h 30m\n",
    );
    let s = load(&cli(&["--config", file.to_str().unwrap()]), &[]).unwrap();
    assert_eq!(s.keep_alive, Duration::from_millis(500));
    assert_eq!(s.shutdown_grace, Duration::from_secs(120));
    assert_eq!(s.llm.connect_timeout, Duration::from_secs(3));
    assert_eq!(s.llm.request_timeout, Duration::from_secs(5400));

    let env = [
        ("ROOMHOST_FIRST_BYTE_TIMEOUT_SECS", "90"),
        ("ROOMHOST_SHUTDOWN_GRACE_SECS", "0"),
        ("ROOMHOST_RETRY_BASE_DELAY", "40ms"),
    ];
    let s = load(&Cli::default(), &env).unwrap();
    assert_eq!(s.llm.first_byte_timeout, Duration::from_secs(90));
    assert_eq!(s.shutdown_grace, Duration::ZERO);
    assert_eq!(s.llm.retry_base_delay, Duration::from_millis(40));

    let msg = load(
        &Cli::default(),
        &[("ROOMHOST_IDLE_TIMEOUT_SECS", "99999999999")],
    )
    .unwrap_err();
    assert!(msg.contains("too long"), "{msg}");
}

/// Written settings read back the same (the bench hands its settings to the server as a file).
#[test]
fn settings_round_trip_through_yaml() {
    let mut s = Settings::default();
    s.llm.retry_base_delay = Duration::from_millis(10);
    s.keep_alive = Duration::from_millis(1500);
    let dir = TempDir::new();
    let file = dir.write("s.yaml", &serde_yaml::to_string(&s).unwrap());
    assert_eq!(Settings::from_file(&file).unwrap(), s);
}

#[test]
fn every_setting_is_declared_once_with_a_valid_default() {
    Cli::command().debug_assert();
    Settings::default()
        .validate()
        .expect("defaults pass their own checks");
    let declarations = Settings::declarations();
    let mut env = HashSet::new();
    for d in &declarations {
        assert!(!d.doc.is_empty(), "{} has no doc", d.key);
        for name in d.env {
            assert!(env.insert(*name), "{name} is declared twice");
        }
    }
}

/// README.md's settings table is the one the declarations give. `UPDATE_README=1` rewrites it.
#[test]
fn readme_settings_table_matches_the_declarations() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let start = readme
        .find("| setting (YAML key) |")
        .expect("README.md has the settings table");
    let len = readme[start..]
        .find("\n\n")
        .map_or(readme.len() - start, |n| n + 1);
    let expected = Settings::table();
    if readme[start..start + len] == expected {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[start + len..]);
        std::fs::write(path, updated).expect("README.md is writable");
        return;
    }
    panic!("README.md's settings table differs from the declarations in src/config.rs; run with UPDATE_README=1 or paste:\n{expected}");
}
