//! Running one trial: deterministic inputs to both sides, the kind's check, the xfail list,
//! and the case's snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitnet_conformance::backend::{
    Backend, BackendError, GenerateRequest, LogitsRequest, PerplexityRequest, PerplexityText,
    QuantRequest, TokenizeRequest,
};
use bitnet_conformance::case::{
    held_out_tail, BackendId, Case, CaseParams, FileCheckError, FileRef, FileRoot, Input, Origin,
    TextSource,
};
use bitnet_conformance::inputs::{activations, parse_tokenizer_vectors, VectorFileError};
use bitnet_conformance::tolerance::{Bound, Metric, Tolerances};
use bitnet_conformance::trial::{
    check_alignment, check_generate, check_logits, check_perplexity, check_perplexity_expected,
    check_quantization, check_tokenize, Trial,
};
use bitnet_conformance::verdict::{Outcome, Verdict};
use bitnet_conformance::xfail::Xfails;
use bitnet_engine::gguf::{GgmlType, GgufFile};

use crate::backends::ExpectedBackend;

use super::diagnose::localize_logits;
use super::snapshot::{self, Summary};

/// Everything a trial needs, shared by all trials of a run.
pub struct RunContext {
    /// Backends ready to run, by id.
    pub backends: BTreeMap<BackendId, Arc<dyn Backend>>,
    /// The tolerance table.
    pub tolerances: Tolerances,
    /// Expected failures.
    pub xfails: Xfails,
    /// The fixtures root (`root: fixtures`).
    pub fixtures: PathBuf,
    /// The data directory (`root: data`).
    pub data: PathBuf,
}

impl RunContext {
    /// The directory of a root.
    pub fn dir_of(&self, root: FileRoot) -> &Path {
        match root {
            FileRoot::Fixtures => &self.fixtures,
            FileRoot::Data => &self.data,
        }
    }

    /// Where a file of a case lies: under its own root, else the case's default root.
    pub fn path_of(&self, case: &Case, file: &FileRef) -> PathBuf {
        file.resolve(self.dir_of(file.root_or(case.default_root())))
    }

    /// Where snapshots are kept.
    pub fn snapshots(&self) -> PathBuf {
        self.fixtures.join("snapshots")
    }
}

/// Why a trial could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    /// A backend failed or declined.
    #[error("{id}: {source}")]
    Backend {
        /// The backend.
        id: BackendId,
        /// What it said.
        source: BackendError,
    },
    /// A backend of the pair is not in this run.
    #[error("backend {0} is not available")]
    Missing(BackendId),
    /// A file the case names is missing or does not match its pinned digest.
    #[error(transparent)]
    File(#[from] FileCheckError),
    /// A tokenizer vector file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// Tokenizer vector files do not parse.
    #[error("{path}{source}")]
    Vectors {
        /// The base path of the vector files.
        path: PathBuf,
        /// What is wrong.
        source: VectorFileError,
    },
    /// The case's input cannot be built.
    #[error("input: {0}")]
    Input(String),
}

/// What a trial produced.
pub struct Executed {
    /// The judged outcome.
    pub outcome: Outcome,
    /// A snapshot mismatch, if any.
    pub snapshot: Option<String>,
}

/// Runs `trial` and judges it.
pub fn execute(context: &RunContext, trial: &Trial) -> Result<Executed, TrialError> {
    let (verdict, summary) = measure(context, trial)?;
    // Real models are not in the repository, so neither are snapshots of their outputs.
    let snapshot = match trial.case.origin {
        Origin::CaseFile => {
            let dir = context.snapshots();
            let lanes16 = summary.width_dependent() && reduces_in_16_lanes(context, trial);
            let name = summary.snapshot_name(&dir, &trial.case.id, lanes16);
            snapshot::check(&dir, &name, &summary).err()
        }
        Origin::RealModel { .. } => None,
    };
    Ok(Executed {
        outcome: context.xfails.judge(verdict),
        snapshot,
    })
}

/// Whether the trial's candidate says it sums in 16 lanes (`reduce_width` in its info).
fn reduces_in_16_lanes(context: &RunContext, trial: &Trial) -> bool {
    context
        .backends
        .get(&trial.pair.candidate)
        .is_some_and(|b| {
            b.info().details.get("reduce_width").map(String::as_str) == Some("Lanes16")
        })
}

struct Sides<'a> {
    candidate: &'a dyn Backend,
    reference: &'a dyn Backend,
}

fn sides<'a>(context: &'a RunContext, trial: &Trial) -> Result<Sides<'a>, TrialError> {
    let get = |id| {
        context
            .backends
            .get(&id)
            .map(|b| b.as_ref())
            .ok_or(TrialError::Missing(id))
    };
    Ok(Sides {
        candidate: get(trial.pair.candidate)?,
        reference: get(trial.pair.reference)?,
    })
}

fn on<T>(id: BackendId, result: Result<T, BackendError>) -> Result<T, TrialError> {
    result.map_err(|source| TrialError::Backend { id, source })
}

fn resolve(context: &RunContext, case: &Case, file: &FileRef) -> Result<PathBuf, TrialError> {
    let path = context.path_of(case, file);
    file.verify(&path)?;
    Ok(path)
}

/// The model the reference backend runs: the case's `reference_model`, else `model`.
fn reference_model(context: &RunContext, case: &Case, model: &Path) -> Result<PathBuf, TrialError> {
    match case.reference_model() {
        Some(file) => resolve(context, case, file),
        None => Ok(model.to_path_buf()),
    }
}

fn measure(context: &RunContext, trial: &Trial) -> Result<(Verdict, Summary), TrialError> {
    let case = &trial.case;
    let tolerances = &context.tolerances;
    let (c, r) = (trial.pair.candidate, trial.pair.reference);
    match &case.params {
        CaseParams::Alignment(params) => {
            let model = resolve(context, case, &params.model)?;
            let sides = sides(context, trial)?;
            let candidate = on(c, sides.candidate.tensor_table(&model))?;
            let reference = on(r, sides.reference.tensor_table(&model))?;
            let verdict = check_alignment(trial, tolerances, &candidate, &reference);
            Ok((verdict, Summary::table(&candidate)))
        }
        CaseParams::Quantization(params) => {
            let weights = match params.input.generate(params.shape) {
                Some(weights) => weights,
                None => tensor_weights(context, case, &params.input, params.shape.len())?,
            };
            let acts = params
                .activations
                .map(|a| activations(a.seed, a.count, params.shape.cols))
                .unwrap_or_default();
            let request = QuantRequest {
                format: params.format,
                shape: params.shape,
                tiling: params.tiling,
                weights: &weights,
                activations: &acts,
            };
            let sides = sides(context, trial)?;
            let candidate = on(c, sides.candidate.quantize(&request))?;
            let reference = on(r, sides.reference.quantize(&request))?;
            let verdict = check_quantization(trial, tolerances, &weights, &candidate, &reference);
            Ok((verdict, Summary::quantized(params, &candidate)))
        }
        CaseParams::Logits(params) => {
            let model = resolve(context, case, &params.model)?;
            let reference_model = reference_model(context, case, &model)?;
            let request = LogitsRequest {
                model: &model,
                prompts: &params.prompts,
                add_bos: params.add_bos,
            };
            let reference_request = LogitsRequest {
                model: &reference_model,
                ..request
            };
            let sides = sides(context, trial)?;
            let candidate = on(c, sides.candidate.logits(&request))?;
            let reference = on(r, sides.reference.logits(&reference_request))?;
            let mut verdict = check_logits(trial, tolerances, &candidate, &reference);
            if !verdict.passed() {
                let bound = match tolerances.resolve(case, trial.pair, Metric::Nmse).bound {
                    Bound::Max(limit) => limit,
                    _ => 0.0,
                };
                verdict.diagnosis.push(localize_logits(
                    (sides.candidate, sides.reference),
                    (&request, &reference_request),
                    (&candidate, &reference),
                    bound,
                ));
            }
            let tokens: Vec<Vec<u32>> = candidate.into_iter().map(|p| p.tokens).collect();
            Ok((verdict, Summary::tokens(&params.prompts, &tokens)))
        }
        CaseParams::Perplexity(params) => {
            let model = resolve(context, case, &params.model)?;
            let text_file;
            let text = match &params.text {
                TextSource::File(file) => {
                    let path = resolve(context, case, file)?;
                    text_file = std::fs::read_to_string(&path)
                        .map_err(|source| TrialError::Read { path, source })?;
                    PerplexityText::Text(match params.held_out {
                        Some(fraction) => held_out_tail(&text_file, fraction),
                        None => &text_file,
                    })
                }
                &TextSource::Tokens { seed, count } => PerplexityText::Random { seed, count },
            };
            let request = PerplexityRequest {
                model: &model,
                text,
                ctx: params.ctx,
                chunks: params.chunks,
            };
            if r == BackendId::Expected {
                let published = params.expected_ppl.ok_or_else(|| {
                    TrialError::Input("the `expected` reference needs `expected_ppl`".into())
                })?;
                let candidate = context.backends.get(&c).ok_or(TrialError::Missing(c))?;
                let candidate = on(c, candidate.perplexity(&request))?;
                let verdict = check_perplexity_expected(trial, tolerances, &candidate, published);
                return Ok((verdict, Summary::scored(candidate.nll.len())));
            }
            let sides = sides(context, trial)?;
            let candidate = on(c, sides.candidate.perplexity(&request))?;
            let reference = on(r, sides.reference.perplexity(&request))?;
            let verdict = check_perplexity(trial, tolerances, &candidate, &reference);
            Ok((verdict, Summary::scored(candidate.nll.len())))
        }
        CaseParams::TokenMatch(params) => {
            let model = resolve(context, case, &params.model)?;
            if let Some(generate) = &params.generate {
                let reference_model = reference_model(context, case, &model)?;
                let request = GenerateRequest {
                    model: &model,
                    prompts: &generate.prompts,
                    tokens: generate.tokens,
                    add_bos: generate.add_bos,
                };
                let reference_request = GenerateRequest {
                    model: &reference_model,
                    ..request
                };
                let sides = sides(context, trial)?;
                let candidate = on(c, sides.candidate.generate(&request))?;
                let reference = on(r, sides.reference.generate(&reference_request))?;
                let verdict =
                    check_generate(trial, tolerances, &generate.prompts, &candidate, &reference);
                return Ok((verdict, Summary::generated(&generate.prompts, &candidate)));
            }
            let Some(tokenize) = &params.tokenize else {
                return Err(TrialError::Input(
                    "neither `tokenize` nor `generate`".into(),
                ));
            };
            let (texts, expected) = match tokenize.vector_files() {
                Some((inp, out)) => {
                    let base = context.dir_of(case.default_root());
                    let (inp, out) = (base.join(inp), base.join(out));
                    let read = |path: &Path| {
                        std::fs::read_to_string(path).map_err(|source| TrialError::Read {
                            path: path.to_path_buf(),
                            source,
                        })
                    };
                    let vectors = parse_tokenizer_vectors(&read(&inp)?, &read(&out)?)
                        .map_err(|source| TrialError::Vectors { path: inp, source })?;
                    let texts = vectors.iter().map(|v| v.text.clone()).collect();
                    (texts, Some(ExpectedBackend::new(vectors)))
                }
                None => (tokenize.texts.clone().unwrap_or_default(), None),
            };
            let request = TokenizeRequest {
                model: &model,
                texts: &texts,
                add_special: tokenize.add_special,
                parse_special: tokenize.parse_special,
            };
            let candidate = context.backends.get(&c).ok_or(TrialError::Missing(c))?;
            let candidate = on(c, candidate.tokenize(&request))?;
            let reference = match (r, &expected) {
                (BackendId::Expected, Some(expected)) => expected.tokenize(&request),
                _ => context
                    .backends
                    .get(&r)
                    .ok_or(TrialError::Missing(r))?
                    .tokenize(&request),
            };
            let reference = on(r, reference)?;
            let verdict = check_tokenize(trial, tolerances, &texts, &candidate, &reference);
            Ok((verdict, Summary::tokens(&texts, &candidate)))
        }
    }
}

/// The leading `len` values of an f32 tensor read from a model file.
fn tensor_weights(
    context: &RunContext,
    case: &Case,
    input: &Input,
    len: usize,
) -> Result<Vec<f32>, TrialError> {
    let Input::Tensor { model, name } = input else {
        return Err(TrialError::Input("no weights to generate".into()));
    };
    let path = resolve(context, case, model)?;
    let file = GgufFile::open(&path).map_err(|e| TrialError::Input(e.to_string()))?;
    let info = file
        .tensor_info(name)
        .map_err(|e| TrialError::Input(e.to_string()))?;
    if info.ty != GgmlType::F32 {
        return Err(TrialError::Input(format!(
            "tensor `{name}` is {}; only F32 tensors can be quantized as input",
            info.ty
        )));
    }
    let bytes = file
        .tensor_data(info)
        .map_err(|e| TrialError::Input(e.to_string()))?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .take(len)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if values.len() < len {
        return Err(TrialError::Input(format!(
            "tensor `{name}` holds {} values, the case's shape needs {len}",
            values.len()
        )));
    }
    Ok(values)
}
