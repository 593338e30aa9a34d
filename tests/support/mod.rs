#![allow(dead_code)]

pub mod harness;
