//! The `bitnet` command line and the `conformance` harness: commands and backend adapters.
#![forbid(unsafe_code)]

pub mod inspect;
