//! Conformance cases, tolerance resolution, metrics and verdicts. Knows no engine and no C++.
//!
//! The flow: [`discovery`] reads `fixtures/<kind>/*.yaml` into [`case::Case`]s; [`trial`]
//! expands each case into one trial per backend pair (ignored, with a reason, when the run
//! lacks what it needs); the runner asks both sides' [`backend::Backend`]s for outputs; the
//! kind's check in [`trial`] measures them with [`metrics`] against bounds resolved by
//! [`tolerance`] and returns a [`verdict::Verdict`] listing every failure; [`xfail`] turns
//! listed failures into expected ones and listed passes into failures. [`models`] declares
//! published model files whose lanes become cases too.
#![forbid(unsafe_code)]

pub mod backend;
pub mod case;
pub mod discovery;
pub mod inputs;
pub mod localize;
pub mod metrics;
pub mod models;
pub mod tolerance;
pub mod trial;
pub mod verdict;
pub mod xfail;
mod yaml;
