//! `bitnet bench`: llama-bench-style throughput of the engine beside the linked bitnet.cpp
//! reference on the same GGUF file, each side in its own worker process (so that peak memory is
//! per side), alternating sides every repetition on this shared, noisy kind of machine, with
//! the decode's memory bandwidth set against a read-bandwidth probe of the same run.

mod bandwidth;
mod driver;
mod machine;
mod report;
mod stats;
mod steps;
mod synthetic;
mod worker;
mod workload;

pub use bandwidth::{
    achieved_bandwidth, fraction_of, DecodeTraffic, MethodRate, MethodsProbe, ProbeBuffer,
    ProbeLength, ReadBandwidth, ReadMethod,
};
pub use driver::{run, BenchArgs, BenchError};
pub use machine::{peak_rss_bytes, vm_hwm_bytes, CpuInfo};
pub use report::{Bandwidth, BenchReport, MachineSummary, ModelSummary, SideResult, TestResult};
pub use stats::Spread;
pub use steps::{per_token, StepClock, StepTime};
pub use synthetic::{cache_dir, ensure_model, file_name, BenchShape, SyntheticModel};
pub use worker::{run_worker, Side, WorkerArgs};
pub use workload::{prompt_tokens, BenchTest, Reply, Request, DECODE_PROMPT, REPLY_PREFIX};
