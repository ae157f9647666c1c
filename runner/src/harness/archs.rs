//! What each case's model files declare, read from their GGUF headers before trials are
//! expanded: the architecture and the tensor types, so a backend that cannot run the
//! architecture or multiply a type is named in the ignore reason.

use std::collections::BTreeSet;
use std::path::Path;

use bitnet_conformance::case::{Case, FileRef, FileRoot};
use bitnet_conformance::trial::Environment;
use bitnet_engine::gguf::GgufFile;

/// Fills `env`'s model architectures and tensor types, by case id, for the cases that run their
/// model; a file that does not open is left out, and the trial reports the problem when it runs.
pub fn read_model_headers(env: &mut Environment, cases: &[Case], fixtures: &Path, data: &Path) {
    for case in cases.iter().filter(|case| case.runs_model()) {
        let open = |file: &FileRef| {
            let root = match file.root_or(case.default_root()) {
                FileRoot::Fixtures => fixtures,
                FileRoot::Data => data,
            };
            GgufFile::open(file.resolve(root)).ok()
        };
        if let Some(gguf) = case.model().and_then(open) {
            if let Ok(arch) = gguf.metadata().get_str("general.architecture") {
                env.model_archs.insert(case.id.clone(), arch.to_string());
            }
            env.model_types.insert(case.id.clone(), tensor_types(&gguf));
        }
        if let Some(gguf) = case.reference_model().and_then(open) {
            env.reference_model_types
                .insert(case.id.clone(), tensor_types(&gguf));
        }
    }
}

/// The names of the tensor types a file holds.
fn tensor_types(gguf: &GgufFile) -> BTreeSet<String> {
    gguf.layout()
        .tensors
        .iter()
        .map(|info| info.ty.to_string())
        .collect()
}
