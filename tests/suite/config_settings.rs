//! Server settings: defaults, YAML file, environment overrides, flags, and their errors.

use std::collections::HashMap;

use crate::support::harness::TempDir;
use roomhost::config::{Cli, Settings};
use roomhost::llm::LlmApi;

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
    assert_eq!(s.llm.max_concurrency, 4);
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = TempDir::new();
    let file = dir.write(
        "roomhost.yaml",
        "addr: 0.0.0.0:9000\nllm:\n  max_concurrency: 2\n  api: openai\n",
    );
    let cli = Cli {
        config: Some(file.clone()),
        ..Cli::default()
    };
    let s = load(&cli, &[]).unwrap();
    assert_eq!(
        (s.addr.port(), s.llm.max_concurrency, s.llm.api),
        (9000, 2, LlmApi::Openai)
    );

    let s = load(
        &cli,
        &[
            ("ROOMHOST_MAX_CONCURRENCY", "8"),
            ("OLLAMA_HOST", "0.0.0.0"),
        ],
    )
    .unwrap();
    assert_eq!(s.llm.max_concurrency, 8);
    assert_eq!(s.llm.base_urls, ["http://127.0.0.1:11434"]);

    let cli = Cli {
        config: Some(file),
        max_concurrency: Some(3),
        ..Cli::default()
    };
    let s = load(&cli, &[("ROOMHOST_MAX_CONCURRENCY", "8")]).unwrap();
    assert_eq!(s.llm.max_concurrency, 3);
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
    let cases: [(Env, &[&str]); 5] = [
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
            &["idle_timeout_secs", "positive"],
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
    let msg = load(
        &Cli {
            config: Some(file),
            ..Cli::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(
        msg.contains("bad.yaml") && msg.contains("max_concurency"),
        "{msg}"
    );

    let msg = load(
        &Cli {
            config: Some(dir.path.join("none.yaml")),
            ..Cli::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(
        msg.contains("none.yaml") && msg.contains("cannot read"),
        "{msg}"
    );
}
