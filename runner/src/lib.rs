//! The `bitnet` command line and the `conformance` harness: commands and backend adapters.
#![forbid(unsafe_code)]

pub mod backends;
pub mod bench;
pub mod fixtures_gen;
pub mod generate_command;
pub mod harness;
pub mod inspect;
pub mod models;
pub mod text_commands;
