#![allow(dead_code)]

pub mod harness;
pub mod llm_calls;
pub mod mock_llm;
pub mod parallelization;
pub mod test_agent;
pub mod tokens;
