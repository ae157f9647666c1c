//! The Rust BitNet b1.58 engine: GGUF container, ternary formats, kernels and model graphs.
//!
//! This crate is the system under test of the conformance harness; it knows nothing about tests.

pub mod cuda;
pub mod formats;
pub mod generation;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod synth;
pub mod tokenizer;
