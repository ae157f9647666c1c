//! Builds the GGUF of a [`SynthSpec`], in memory or streamed to a file.

use std::path::Path;

use half::f16;
use rayon::prelude::*;

use super::lut_rules::{tl1_tiling_rule, tl2_tiling_rule};
use super::spec::{SynthSpec, VocabSource, WeightFormat};
use super::vocab::byte_level_vocab;
use super::{SplitMix64, SynthError};
use crate::formats::{ternarize, I2s, Shape, TernaryFormat, Tl1, Tl2, Tq1_0, Tq2_0};
use crate::gguf::{Array, GgmlType, GgufFile, GgufStreamWriter, GgufWriter, Value, ValueType};

/// Standard deviation of the tied embedding times `sqrt(n_embd)`: with unit-RMS hidden states the
/// logits then spread with a standard deviation of about this value.
const EMBD_SPREAD: f64 = 2.0;

/// Rows of the embedding generated at a time when streaming.
const EMBD_ROWS_PER_SLICE: usize = 1024;

/// Writes the model of `spec` to `path`. Tensors are generated one at a time and the embedding
/// in slices of rows, so a model of several GB needs only a few hundred MB of memory; the bytes
/// equal those of [`build_model`].
pub fn write_model(spec: &SynthSpec, path: impl AsRef<Path>) -> Result<(), SynthError> {
    write_model_with_progress(spec, path, |_, _| {})
}

/// [`write_model`], calling `progress(bytes_written, total_bytes)` of tensor data as it goes.
pub fn write_model_with_progress(
    spec: &SynthSpec,
    path: impl AsRef<Path>,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), SynthError> {
    let plan = ModelPlan::new(spec)?;
    let mut w = GgufStreamWriter::new();
    for (key, value) in plan.metadata {
        w.set(&key, value)?;
    }
    for t in &plan.tensors {
        w.declare_tensor(&t.name, t.ty, &t.dims)?;
    }
    let total = plan.tensors.iter().try_fold(0u64, |sum, t| {
        Ok::<_, SynthError>(sum + t.ty.tensor_bytes(&t.dims).map_err(|e| t.spec_error(e))?)
    })?;
    let mut sink = w.create(path)?;
    let maker = TensorMaker { spec };
    let mut written = 0u64;
    // Tensors draw from independent streams, so a group of them is generated in parallel and
    // written in file order; the embedding streams in slices from one generator.
    for group in plan.tensors.chunks(rayon::current_num_threads().max(1)) {
        let made: Vec<Option<Vec<u8>>> = group
            .par_iter()
            .map(|t| match t.kind {
                TensorKind::Embedding => Ok(None),
                _ => {
                    let mut data = Vec::new();
                    maker.emit(t, &mut |bytes| {
                        data.extend_from_slice(bytes);
                        Ok(())
                    })?;
                    Ok(Some(data))
                }
            })
            .collect::<Result<_, SynthError>>()?;
        for (t, data) in group.iter().zip(made) {
            sink.begin_tensor(&t.name)?;
            let mut write = |bytes: &[u8]| {
                sink.write(bytes)?;
                written += bytes.len() as u64;
                progress(written, total);
                Ok(())
            };
            match data {
                Some(data) => write(&data)?,
                None => maker.emit(t, &mut write)?,
            }
        }
    }
    sink.finish()?;
    Ok(())
}

/// Builds the model of `spec` in memory.
pub fn build_model(spec: &SynthSpec) -> Result<GgufWriter, SynthError> {
    let plan = ModelPlan::new(spec)?;
    let mut w = GgufWriter::new();
    for (key, value) in plan.metadata {
        w.set(&key, value)?;
    }
    let maker = TensorMaker { spec };
    for t in &plan.tensors {
        let mut data = Vec::new();
        maker.emit(t, &mut |bytes| {
            data.extend_from_slice(bytes);
            Ok(())
        })?;
        w.add_tensor(&t.name, t.ty, &t.dims, data)?;
    }
    Ok(w)
}

/// The metadata and the tensors of a model, in file order.
struct ModelPlan {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorPlan>,
}

/// One tensor to generate.
struct TensorPlan {
    name: String,
    kind: TensorKind,
    ty: GgmlType,
    dims: Vec<u64>,
}

/// How a tensor's values are drawn.
#[derive(Clone, Copy)]
enum TensorKind {
    /// The tied embedding, `[n_embd, n_vocab]`.
    Embedding,
    /// A norm weight near 1, f32.
    Norm,
    /// A ternary linear layer, `[k, rows]`.
    Linear,
}

impl TensorPlan {
    fn new(name: String, kind: TensorKind, ty: GgmlType, dims: &[usize]) -> Self {
        TensorPlan {
            name,
            kind,
            ty,
            dims: dims.iter().map(|&d| d as u64).collect(),
        }
    }

    fn spec_error(&self, e: impl std::fmt::Display) -> SynthError {
        SynthError::Spec(format!("tensor `{}` {:?}: {e}", self.name, self.dims))
    }
}

impl ModelPlan {
    fn new(spec: &SynthSpec) -> Result<Self, SynthError> {
        spec.validate().map_err(SynthError::Spec)?;
        let (mut metadata, n_vocab) = vocab_metadata(&spec.vocab)?;
        metadata.extend(hparams_metadata(spec, n_vocab)?);
        let no_tiling =
            || SynthError::Spec(format!("a {:?} weight shape has no tiling", spec.format));
        match spec.format {
            WeightFormat::TL1 => metadata.extend(
                super::tl1_tilings_of(spec)
                    .ok_or_else(no_tiling)?
                    .metadata_entries(),
            ),
            WeightFormat::TL2 => metadata.extend(
                super::tl2_tilings_of(spec)
                    .ok_or_else(no_tiling)?
                    .metadata_entries(),
            ),
            _ => {}
        }
        let embd_ty = if spec.embd_f16 {
            GgmlType::F16
        } else {
            GgmlType::F32
        };
        let linear_ty = spec.format.ggml_type();
        let mut tensors = vec![
            TensorPlan::new(
                "token_embd.weight".into(),
                TensorKind::Embedding,
                embd_ty,
                &[spec.n_embd, n_vocab],
            ),
            TensorPlan::new(
                "output_norm.weight".into(),
                TensorKind::Norm,
                GgmlType::F32,
                &[spec.n_embd],
            ),
        ];
        let n_embd_kv = spec.head_dim() * spec.n_head_kv;
        for il in 0..spec.n_layer {
            let name = |t: &str| format!("blk.{il}.{t}.weight");
            let norm =
                |t: &str, n: usize| TensorPlan::new(name(t), TensorKind::Norm, GgmlType::F32, &[n]);
            let linear = |t: &str, k: usize, rows: usize| {
                TensorPlan::new(name(t), TensorKind::Linear, linear_ty, &[k, rows])
            };
            tensors.extend([
                norm("attn_norm", spec.n_embd),
                linear("attn_q", spec.n_embd, spec.n_embd),
                linear("attn_k", spec.n_embd, n_embd_kv),
                linear("attn_v", spec.n_embd, n_embd_kv),
                linear("attn_output", spec.n_embd, spec.n_embd),
                norm("ffn_norm", spec.n_embd),
                linear("ffn_gate", spec.n_embd, spec.n_ff),
                linear("ffn_up", spec.n_embd, spec.n_ff),
                linear("ffn_down", spec.n_ff, spec.n_embd),
            ]);
            if spec.arch.has_sub_norms() {
                tensors.extend([
                    norm("attn_sub_norm", spec.n_embd),
                    norm("ffn_sub_norm", spec.n_ff),
                ]);
            }
        }
        Ok(ModelPlan { metadata, tensors })
    }
}

/// The tokenizer keys, and the vocabulary size.
fn vocab_metadata(source: &VocabSource) -> Result<(Vec<(String, Value)>, usize), SynthError> {
    let (v, n_vocab) = match source {
        VocabSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let keys: Vec<(String, Value)> = file
                .metadata()
                .iter()
                .filter(|(key, _)| key.starts_with("tokenizer."))
                .map(|(key, value)| (key.to_string(), value.clone()))
                .collect();
            let n = file
                .metadata()
                .get_string_array("tokenizer.ggml.tokens")?
                .len();
            return Ok((keys, n));
        }
        VocabSource::ByteLevel => {
            let v = byte_level_vocab();
            let n = v.tokens.len();
            (v, n)
        }
        VocabSource::ByteLevelPadded(n) => (byte_level_vocab(), *n),
    };
    let mut tokens = v.tokens;
    let mut token_types = v.token_types;
    if n_vocab < tokens.len() {
        return Err(SynthError::Spec(format!(
            "a padded byte-level vocabulary needs at least {} tokens, not {n_vocab}",
            tokens.len()
        )));
    }
    for i in tokens.len()..n_vocab {
        tokens.push(format!("<unused{i}>"));
        token_types.push(UNUSED_TOKEN_TYPE);
    }
    let strings = |items: Vec<String>| {
        Value::Array(Array {
            elem: ValueType::String,
            items: items.into_iter().map(Value::String).collect(),
        })
    };
    let keys = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array {
                elem: ValueType::I32,
                items: token_types.into_iter().map(Value::I32).collect(),
            }),
        ),
        ("tokenizer.ggml.merges", strings(v.merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(v.bos)),
        ("tokenizer.ggml.eos_token_id", Value::U32(v.eos)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ];
    let keys = keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    Ok((keys, n_vocab))
}

/// `llama_token_type` of the placeholder tokens that pad a vocabulary.
const UNUSED_TOKEN_TYPE: i32 = 5;

/// `general.*` and the architecture's hyperparameters.
fn hparams_metadata(spec: &SynthSpec, n_vocab: usize) -> Result<Vec<(String, Value)>, SynthError> {
    let arch = spec.arch.name();
    let u32_of = |v: usize| {
        u32::try_from(v).map_err(|_| SynthError::Spec(format!("{v} does not fit in u32")))
    };
    let mut keys = vec![
        (
            "general.architecture".to_string(),
            Value::String(arch.into()),
        ),
        (
            "general.name".to_string(),
            Value::String(format!("synthetic {arch} {:?}", spec.format)),
        ),
        (
            "general.file_type".to_string(),
            Value::U32(spec.format.file_type()),
        ),
        ("general.quantization_version".to_string(), Value::U32(2)),
    ];
    let sizes = [
        ("vocab_size", n_vocab),
        ("context_length", spec.n_ctx),
        ("embedding_length", spec.n_embd),
        ("block_count", spec.n_layer),
        ("feed_forward_length", spec.n_ff),
        ("rope.dimension_count", spec.head_dim()),
        ("attention.head_count", spec.n_head),
        ("attention.head_count_kv", spec.n_head_kv),
    ];
    for (key, value) in sizes {
        keys.push((format!("{arch}.{key}"), Value::U32(u32_of(value)?)));
    }
    keys.push((
        format!("{arch}.attention.layer_norm_rms_epsilon"),
        Value::F32(spec.eps),
    ));
    keys.push((format!("{arch}.rope.freq_base"), Value::F32(spec.rope_base)));
    Ok(keys)
}

/// Generates the tensors of one spec; each tensor draws from its own stream, seeded by the model
/// seed and the tensor name, so tensors do not depend on each other.
struct TensorMaker<'a> {
    spec: &'a SynthSpec,
}

impl TensorMaker<'_> {
    fn rng(&self, name: &str) -> SplitMix64 {
        // FNV-1a of the name, mixed into the seed.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        SplitMix64::new(self.spec.seed ^ hash)
    }

    fn normals(&self, name: &str, n: usize, std: f64) -> Vec<f32> {
        let mut rng = self.rng(name);
        (0..n).map(|_| (rng.next_normal() * std) as f32).collect()
    }

    /// Generates the bytes of `t` and hands them to `out`, in one or more pieces.
    fn emit(
        &self,
        t: &TensorPlan,
        out: &mut dyn FnMut(&[u8]) -> Result<(), SynthError>,
    ) -> Result<(), SynthError> {
        let dim = |i: usize| t.dims[i] as usize;
        match t.kind {
            TensorKind::Embedding => self.embedding(t, dim(0), dim(1), out),
            TensorKind::Norm => out(&self.norm(&t.name, dim(0))),
            TensorKind::Linear => out(&self.linear(&t.name, dim(0), dim(1))?),
        }
    }

    /// `token_embd.weight`, `[n_embd, n_vocab]`, in slices of rows drawn from one stream.
    fn embedding(
        &self,
        t: &TensorPlan,
        n_embd: usize,
        n_vocab: usize,
        out: &mut dyn FnMut(&[u8]) -> Result<(), SynthError>,
    ) -> Result<(), SynthError> {
        let std = EMBD_SPREAD / (n_embd as f64).sqrt();
        let mut rng = self.rng(&t.name);
        for first in (0..n_vocab).step_by(EMBD_ROWS_PER_SLICE) {
            let rows = EMBD_ROWS_PER_SLICE.min(n_vocab - first);
            let values: Vec<f32> = (0..rows * n_embd)
                .map(|_| (rng.next_normal() * std) as f32)
                .collect();
            let bytes = if t.ty == GgmlType::F16 {
                f16_bytes(&values)
            } else {
                f32_bytes(&values)
            };
            out(&bytes)?;
        }
        Ok(())
    }

    /// A norm weight near 1, f32.
    fn norm(&self, name: &str, n: usize) -> Vec<u8> {
        let values: Vec<f32> = self
            .normals(name, n, 0.05)
            .into_iter()
            .map(|v| 1.0 + v)
            .collect();
        f32_bytes(&values)
    }

    /// A ternary linear layer of `rows` outputs over `k` inputs. Master weights have standard
    /// deviation `1/sqrt(k)`, so unit-RMS inputs give outputs of RMS below 1.
    fn linear(&self, name: &str, k: usize, rows: usize) -> Result<Vec<u8>, SynthError> {
        let master = self.normals(name, k * rows, 1.0 / (k as f64).sqrt());
        let ternary = ternarize(&master);
        let shape = Shape::new(k, rows);
        let format = self.spec.format;
        let packed = |f: &dyn TernaryFormat| {
            f.quantize(&ternary, shape)
                .map_err(|source| SynthError::Format {
                    tensor: name.to_string(),
                    source,
                })
        };
        let no_tiling = || {
            SynthError::Spec(format!(
                "tensor `{name}`: no {format:?} tiling fits {rows} rows × {k} columns"
            ))
        };
        let bytes = match format {
            WeightFormat::I2_S => packed(&I2s)?,
            WeightFormat::TL1 => {
                packed(&Tl1::new(tl1_tiling_rule(rows, k).ok_or_else(no_tiling)?))?
            }
            WeightFormat::TL2 => {
                packed(&Tl2::new(tl2_tiling_rule(rows, k).ok_or_else(no_tiling)?))?
            }
            WeightFormat::TQ1_0 => packed(&Tq1_0)?,
            WeightFormat::TQ2_0 => packed(&Tq2_0)?,
            WeightFormat::F32 => f32_bytes(&ternary),
            WeightFormat::F16 => f16_bytes(&ternary),
        };
        Ok(bytes)
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Arch;

    #[test]
    fn streamed_files_equal_the_in_memory_build() {
        let dir = tempfile::tempdir().unwrap();
        let mut padded = SynthSpec::tiny(Arch::BitnetB158, WeightFormat::I2_S);
        // More rows than one embedding slice, and not a multiple of it.
        padded.vocab = VocabSource::ByteLevelPadded(EMBD_ROWS_PER_SLICE * 2 + 77);
        for spec in [SynthSpec::tiny(Arch::Bitnet, WeightFormat::TQ2_0), padded] {
            let path = dir.path().join("m.gguf");
            let mut calls = Vec::new();
            write_model_with_progress(&spec, &path, |done, total| calls.push((done, total)))
                .unwrap();
            let whole = build_model(&spec).unwrap().to_bytes();
            assert_eq!(std::fs::read(&path).unwrap(), whole, "{:?}", spec.vocab);
            let &(done, total) = calls.last().unwrap();
            assert_eq!(done, total);
            assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn a_padded_vocabulary_has_the_requested_size_and_keeps_the_specials() {
        let (keys, n) = vocab_metadata(&VocabSource::ByteLevelPadded(1000)).unwrap();
        assert_eq!(n, 1000);
        let get = |name: &str| &keys.iter().find(|(k, _)| k == name).unwrap().1;
        let Value::Array(tokens) = get("tokenizer.ggml.tokens") else {
            panic!("tokens are an array");
        };
        assert_eq!(tokens.items.len(), 1000);
        let base = byte_level_vocab();
        assert_eq!(get("tokenizer.ggml.eos_token_id"), &Value::U32(base.eos));
        assert_eq!(tokens.items[999], Value::String("<unused999>".into()));
        let err = vocab_metadata(&VocabSource::ByteLevelPadded(10)).unwrap_err();
        assert!(err.to_string().contains("at least 266 tokens"), "{err}");
    }
}
