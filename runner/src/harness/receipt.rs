//! The JSON receipt: enough to reproduce and audit a run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use bitnet_conformance::backend::BackendInfo;
use bitnet_conformance::case::{Case, Sha256};
use bitnet_conformance::trial::{Availability, Environment};
use bitnet_engine::kernels::Isa;
use bitnet_ffi_cpp::{reference_info, ReferenceInfo};
use serde::Serialize;

use super::execute::RunContext;
use super::record::Record;

/// A backend as the run saw it.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BackendState {
    /// Ready, with its version and build facts.
    Available {
        /// Version and build facts.
        info: BackendInfo,
    },
    /// Not usable.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// The host.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// CPU architecture.
    pub arch: &'static str,
    /// Operating system.
    pub os: &'static str,
    /// Logical CPUs.
    pub cpus: usize,
    /// Engine ISAs this CPU supports.
    pub isas: Vec<&'static str>,
    /// The engine's best ISA.
    pub best_isa: &'static str,
}

/// A model or data file a case read, with its digest.
#[derive(Debug, Serialize)]
pub struct FileDigest {
    /// The resolved path.
    pub path: PathBuf,
    /// Its sha256, when it could be read.
    pub sha256: Option<String>,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole receipt.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// Engine (workspace) version.
    pub engine_version: &'static str,
    /// The C++ reference's source, version, flags and ISA.
    pub reference: ReferenceInfo,
    /// Every backend, available or not.
    pub backends: BTreeMap<String, BackendState>,
    /// The host.
    pub machine: Machine,
    /// The fixtures root.
    pub fixtures: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// The tolerance table; every measurement carries its bound and the bound's source.
    pub tolerances: PathBuf,
    /// Models and data files read by the cases, with digests.
    pub files: Vec<FileDigest>,
    /// Every trial with its status, measurements and time.
    pub trials: Vec<Record>,
    /// Wall time of the whole run.
    pub total_seconds: f64,
}

impl Receipt {
    /// Assembles the receipt of a run.
    pub fn new(
        context: &RunContext,
        environment: &Environment,
        tolerances: &Path,
        cases: &[&Case],
        trials: Vec<Record>,
        total_seconds: f64,
    ) -> Receipt {
        let backends = environment
            .backends
            .iter()
            .map(|(id, availability)| {
                let state = match (availability, context.backends.get(id)) {
                    (Availability::Available(_), Some(backend)) => BackendState::Available {
                        info: backend.info(),
                    },
                    (Availability::Unavailable(reason), _) => BackendState::Unavailable {
                        reason: reason.clone(),
                    },
                    (Availability::Available(_), None) => BackendState::Unavailable {
                        reason: "not constructed".to_string(),
                    },
                };
                (id.to_string(), state)
            })
            .collect();
        let supported = Isa::supported();
        let paths: BTreeSet<PathBuf> = cases
            .iter()
            .flat_map(|case| {
                case.model()
                    .into_iter()
                    .chain(case.reference_model())
                    .map(|file| context.path_of(case, file))
            })
            .collect();
        Receipt {
            engine_version: env!("CARGO_PKG_VERSION"),
            reference: reference_info(),
            backends,
            machine: Machine {
                arch: std::env::consts::ARCH,
                os: std::env::consts::OS,
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                isas: supported.iter().map(|isa| isa.name()).collect(),
                best_isa: Isa::best().name(),
            },
            fixtures: context.fixtures.clone(),
            data: context.data.clone(),
            tolerances: tolerances.to_path_buf(),
            files: paths.into_iter().map(digest).collect(),
            trials,
            total_seconds,
        }
    }
}

fn digest(path: PathBuf) -> FileDigest {
    match File::open(&path).and_then(|file| Sha256::of_reader(BufReader::new(file))) {
        Ok(digest) => FileDigest {
            path,
            sha256: Some(digest.as_hex().to_string()),
            error: None,
        },
        Err(e) => FileDigest {
            path,
            sha256: None,
            error: Some(e.to_string()),
        },
    }
}
