//! Expected token ids written beside a case (tokenizer vectors' `.out`) as a reference backend.

use std::collections::{BTreeMap, BTreeSet};

use bitnet_conformance::backend::{
    Backend, BackendError, BackendInfo, Capabilities, TokenizeRequest,
};
use bitnet_conformance::case::{BackendId, CaseKind, Device};
use bitnet_conformance::inputs::TokenizerVector;

/// Answers tokenization with the ids a vector file lists for each text.
pub struct ExpectedBackend {
    vectors: Vec<TokenizerVector>,
    capabilities: Capabilities,
}

impl ExpectedBackend {
    /// Expectations from parsed tokenizer vectors.
    pub fn new(vectors: Vec<TokenizerVector>) -> Self {
        ExpectedBackend {
            vectors,
            capabilities: Capabilities {
                kinds: BTreeSet::from([CaseKind::TokenMatch]),
                formats: BTreeSet::new(),
                archs: BTreeSet::new(),
                refused_types: BTreeMap::new(),
                device: Device::Cpu,
                features: BTreeSet::new(),
            },
        }
    }
}

impl Backend for ExpectedBackend {
    fn id(&self) -> BackendId {
        BackendId::Expected
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            version: "vector files".to_string(),
            details: Default::default(),
        }
    }

    fn tokenize(&self, request: &TokenizeRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
        if request.texts.len() != self.vectors.len() {
            return Err(BackendError::Failed(format!(
                "{} texts asked, the vector file lists {}",
                request.texts.len(),
                self.vectors.len()
            )));
        }
        request
            .texts
            .iter()
            .zip(&self.vectors)
            .enumerate()
            .map(|(index, (text, vector))| {
                if text == &vector.text {
                    Ok(vector.ids.clone())
                } else {
                    Err(BackendError::Failed(format!(
                        "text #{index} is not the vector file's text #{index}"
                    )))
                }
            })
            .collect()
    }
}
