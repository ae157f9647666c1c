//! `bitnet inspect`: a human or JSON report of a GGUF file and its validation.

use std::fmt::Write as _;
use std::path::Path;

use bitnet_engine::gguf::{GgufError, GgufFile, Layout, ModelHparams, TensorInfo, TokenizerMeta};
use serde::Serialize;

/// Everything `inspect` reports about one file.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub file: String,
    pub valid: bool,
    /// Set when the file could not be parsed at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hparams: Option<Section<ModelHparams>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<Section<Option<TokenizerMeta>>>,
    pub metadata: Vec<(String, String)>,
    pub tensors: Vec<TensorInfo>,
    /// Every validation problem, one line each.
    pub issues: Vec<String>,
}

/// Container facts.
#[derive(Debug, Serialize)]
pub struct Header {
    pub file_len: u64,
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub type_table: String,
    pub type_table_reason: String,
}

/// A part of the report that may be absent for a reason (e.g. a vocab-only file).
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section<T> {
    Present(T),
    Unavailable(String),
}

impl<T> From<Result<T, GgufError>> for Section<T> {
    fn from(r: Result<T, GgufError>) -> Self {
        match r {
            Ok(v) => Section::Present(v),
            Err(e) => Section::Unavailable(e.to_string()),
        }
    }
}

impl InspectReport {
    /// Opens and inspects `path`; never fails — problems go into the report.
    pub fn of(path: &Path) -> Self {
        let file = path.display().to_string();
        match GgufFile::open_with_report(path) {
            Err(e) => Self {
                file,
                valid: false,
                error: Some(e.to_string()),
                header: None,
                hparams: None,
                tokenizer: None,
                metadata: Vec::new(),
                tensors: Vec::new(),
                issues: Vec::new(),
            },
            Ok((f, issues)) => Self::from_layout(file, f.layout(), issues),
        }
    }

    fn from_layout(file: String, l: &Layout, issues: Vec<GgufError>) -> Self {
        Self {
            file,
            valid: issues.is_empty(),
            error: None,
            header: Some(Header {
                file_len: l.file_len,
                version: l.version,
                alignment: l.alignment,
                data_offset: l.data_offset,
                type_table: l.type_table.table.to_string(),
                type_table_reason: l.type_table.reason.clone(),
            }),
            hparams: Some(ModelHparams::from_metadata(&l.metadata).into()),
            tokenizer: Some(TokenizerMeta::from_metadata(&l.metadata).into()),
            metadata: l
                .metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.summary()))
                .collect(),
            tensors: l.tensors.clone(),
            issues: issues.iter().map(ToString::to_string).collect(),
        }
    }

    /// The human-readable rendering.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "file: {}", self.file);
        if let Some(e) = &self.error {
            let _ = writeln!(w, "INVALID: {e}");
            return out;
        }
        if let Some(h) = &self.header {
            let _ = writeln!(
                w,
                "GGUF v{}, {} bytes, alignment {}, data at {}\ntype table: {} ({})",
                h.version,
                h.file_len,
                h.alignment,
                h.data_offset,
                h.type_table,
                h.type_table_reason
            );
        }
        match &self.hparams {
            Some(Section::Present(h)) => {
                let _ = writeln!(
                    w,
                    "\narchitecture: {}\n  layers {}  width {}  ffn {}  heads {} / kv {}  rope dims {}\n  ctx {}  rms eps {:e}  rope base {}  vocab {}  file type {}",
                    h.arch,
                    h.block_count,
                    h.embedding_length,
                    h.feed_forward_length,
                    h.head_count,
                    h.head_count_kv,
                    h.rope_dimension_count,
                    h.context_length,
                    h.rms_epsilon,
                    h.rope_freq_base,
                    h.vocab_size.map_or("-".into(), |v| v.to_string()),
                    h.file_type.map_or("-".into(), |v| v.to_string()),
                );
            }
            Some(Section::Unavailable(why)) => {
                let _ = writeln!(w, "\narchitecture hyper-parameters unavailable: {why}");
            }
            None => {}
        }
        match &self.tokenizer {
            Some(Section::Present(Some(t))) => {
                let id = |v: Option<u32>| v.map_or("-".into(), |v| v.to_string());
                let _ = writeln!(
                    w,
                    "\ntokenizer: {} (pre: {})  tokens {}  merges {}  bos {}  eos {}  eot {}  pad {}  unk {}  add_bos {}  chat template {}",
                    t.model,
                    t.pre.as_deref().unwrap_or("default"),
                    t.n_tokens,
                    t.n_merges,
                    id(t.bos),
                    id(t.eos),
                    id(t.eot),
                    id(t.pad),
                    id(t.unk),
                    t.add_bos.map_or("-".into(), |b| b.to_string()),
                    if t.has_chat_template { "yes" } else { "no" },
                );
            }
            Some(Section::Present(None)) => {
                let _ = writeln!(w, "\ntokenizer: none");
            }
            Some(Section::Unavailable(why)) => {
                let _ = writeln!(w, "\ntokenizer unreadable: {why}");
            }
            None => {}
        }
        let _ = writeln!(w, "\nmetadata ({} keys):", self.metadata.len());
        for (k, v) in &self.metadata {
            let _ = writeln!(w, "  {k} = {v}");
        }
        let _ = writeln!(w, "\ntensors ({}):", self.tensors.len());
        if !self.tensors.is_empty() {
            let name_w = self
                .tensors
                .iter()
                .map(|t| t.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let _ = writeln!(
                w,
                "  {:<name_w$}  {:<6}  {:<24}  {:>12}  {:>12}",
                "name", "type", "shape", "offset", "bytes"
            );
            for t in &self.tensors {
                let shape = format!("{:?}", t.dims);
                let _ = writeln!(
                    w,
                    "  {:<name_w$}  {:<6}  {:<24}  {:>12}  {:>12}",
                    t.name,
                    t.ty.name(),
                    shape,
                    t.file_offset,
                    t.n_bytes
                );
            }
            let total: u64 = self.tensors.iter().map(|t| t.n_bytes).sum();
            let _ = writeln!(w, "  total tensor bytes: {total}");
        }
        if self.issues.is_empty() {
            let _ = writeln!(w, "\nvalidation: OK");
        } else {
            let _ = writeln!(w, "\nvalidation: INVALID ({} problems)", self.issues.len());
            for i in &self.issues {
                let _ = writeln!(w, "  - {i}");
            }
        }
        out
    }
}
