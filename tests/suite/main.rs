//! The test suite as one binary: one module per feature, sharing the mock LLM and harness in
//! `support` (one link instead of one per file keeps test builds fast).

mod support;

mod agui_profiles;
mod config_settings;
mod eval_questions;
mod faults_backend;
mod faults_clients;
mod faults_slow_readers;
mod fuzz_input;
mod host_admission;
mod host_connections;
mod host_http_errors;
mod host_ids;
mod host_rooms;
mod host_runs;
mod llm_limits;
mod llm_mock;
mod llm_retries;
mod llm_timeouts;
mod llm_wire;
mod load_runs;
mod ops_auth;
mod ops_metrics;
mod ops_owners;
mod ops_user_limit;
mod page;
mod parallelization_answers;
mod parallelization_bounds;
mod parallelization_cancel;
mod parallelization_concurrency;
mod parallelization_conversation;
mod parallelization_detect;
mod parallelization_input;
mod parallelization_map_reduce;
mod parallelization_sectioning;
mod parallelization_streaming;
mod parallelization_voting;
mod process_lifecycle;
mod real_model;
mod real_model_agent;
mod shutdown_load;
mod soliplex_api;
mod store;
mod store_faults;
mod store_runs;
