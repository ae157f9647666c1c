//! The architecture of each case's model, read from its GGUF header before trials are expanded,
//! so a backend that cannot run that architecture is named in the ignore reason.

use std::collections::BTreeMap;
use std::path::Path;

use bitnet_conformance::case::{Case, FileRoot};
use bitnet_engine::gguf::GgufFile;

/// `general.architecture` by case id, for the cases that run their model and whose file opens;
/// a file that does not open is left out, and the trial reports the problem when it runs.
pub fn model_architectures(
    cases: &[Case],
    fixtures: &Path,
    data: &Path,
) -> BTreeMap<String, String> {
    cases
        .iter()
        .filter(|case| case.runs_model())
        .filter_map(|case| {
            let file = case.model()?;
            let root = match file.root_or(case.default_root()) {
                FileRoot::Fixtures => fixtures,
                FileRoot::Data => data,
            };
            let gguf = GgufFile::open(file.resolve(root)).ok()?;
            let arch = gguf.metadata().get_str("general.architecture").ok()?;
            Some((case.id.clone(), arch.to_string()))
        })
        .collect()
}
