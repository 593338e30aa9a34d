#![allow(dead_code)]
pub mod llm_calls;
pub mod mock_llm;
