//! Builds the GGUF of a [`SynthSpec`].

use std::path::Path;

use half::f16;

use super::spec::{SynthSpec, VocabSource, WeightFormat};
use super::vocab::byte_level_vocab;
use super::{SplitMix64, SynthError};
use crate::formats::{ternarize, I2s, Shape, TernaryFormat, Tq1_0, Tq2_0};
use crate::gguf::{Array, GgmlType, GgufFile, GgufWriter, Value, ValueType};

/// Standard deviation of the tied embedding times `sqrt(n_embd)`: with unit-RMS hidden states the
/// logits then spread with a standard deviation of about this value.
const EMBD_SPREAD: f64 = 2.0;

/// Writes the model of `spec` to `path`.
pub fn write_model(spec: &SynthSpec, path: impl AsRef<Path>) -> Result<(), SynthError> {
    build_model(spec)?.write_file(path)?;
    Ok(())
}

/// Builds the model of `spec` in memory.
pub fn build_model(spec: &SynthSpec) -> Result<GgufWriter, SynthError> {
    spec.validate().map_err(SynthError::Spec)?;
    let mut w = GgufWriter::new();
    let n_vocab = write_vocab(&mut w, &spec.vocab)?;
    write_hparams(&mut w, spec, n_vocab)?;
    let tensors = TensorMaker { spec };
    tensors.embedding(&mut w, n_vocab)?;
    tensors.norm(&mut w, "output_norm.weight", spec.n_embd)?;
    let n_embd_kv = spec.head_dim() * spec.n_head_kv;
    for il in 0..spec.n_layer {
        let name = |t: &str| format!("blk.{il}.{t}.weight");
        tensors.norm(&mut w, &name("attn_norm"), spec.n_embd)?;
        tensors.linear(&mut w, &name("attn_q"), spec.n_embd, spec.n_embd)?;
        tensors.linear(&mut w, &name("attn_k"), spec.n_embd, n_embd_kv)?;
        tensors.linear(&mut w, &name("attn_v"), spec.n_embd, n_embd_kv)?;
        tensors.linear(&mut w, &name("attn_output"), spec.n_embd, spec.n_embd)?;
        tensors.norm(&mut w, &name("ffn_norm"), spec.n_embd)?;
        tensors.linear(&mut w, &name("ffn_gate"), spec.n_embd, spec.n_ff)?;
        tensors.linear(&mut w, &name("ffn_up"), spec.n_embd, spec.n_ff)?;
        tensors.linear(&mut w, &name("ffn_down"), spec.n_ff, spec.n_embd)?;
        if spec.arch.has_sub_norms() {
            tensors.norm(&mut w, &name("attn_sub_norm"), spec.n_embd)?;
            tensors.norm(&mut w, &name("ffn_sub_norm"), spec.n_ff)?;
        }
    }
    Ok(w)
}

/// Writes the tokenizer keys; returns the vocabulary size.
fn write_vocab(w: &mut GgufWriter, source: &VocabSource) -> Result<usize, SynthError> {
    match source {
        VocabSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            for (key, value) in file.metadata().iter() {
                if key.starts_with("tokenizer.") {
                    w.set(key, value.clone())?;
                }
            }
            let n = file
                .metadata()
                .get_string_array("tokenizer.ggml.tokens")?
                .len();
            Ok(n)
        }
        VocabSource::ByteLevel => {
            let v = byte_level_vocab();
            let strings = |items: &[String]| {
                Value::Array(Array {
                    elem: ValueType::String,
                    items: items.iter().cloned().map(Value::String).collect(),
                })
            };
            w.set("tokenizer.ggml.model", Value::String("gpt2".into()))?;
            w.set("tokenizer.ggml.tokens", strings(&v.tokens))?;
            w.set(
                "tokenizer.ggml.token_type",
                Value::Array(Array {
                    elem: ValueType::I32,
                    items: v.token_types.iter().copied().map(Value::I32).collect(),
                }),
            )?;
            w.set("tokenizer.ggml.merges", strings(&v.merges))?;
            w.set("tokenizer.ggml.bos_token_id", Value::U32(v.bos))?;
            w.set("tokenizer.ggml.eos_token_id", Value::U32(v.eos))?;
            w.set("tokenizer.ggml.add_bos_token", Value::Bool(true))?;
            Ok(v.tokens.len())
        }
    }
}

/// Writes `general.*` and the architecture's hyperparameters.
fn write_hparams(w: &mut GgufWriter, spec: &SynthSpec, n_vocab: usize) -> Result<(), SynthError> {
    let arch = spec.arch.name();
    let u32_of = |v: usize| {
        u32::try_from(v).map_err(|_| SynthError::Spec(format!("{v} does not fit in u32")))
    };
    w.set("general.architecture", Value::String(arch.into()))?;
    w.set(
        "general.name",
        Value::String(format!("synthetic {arch} {:?}", spec.format)),
    )?;
    w.set("general.file_type", Value::U32(spec.format.file_type()))?;
    w.set("general.quantization_version", Value::U32(2))?;
    let keys = [
        ("vocab_size", n_vocab),
        ("context_length", spec.n_ctx),
        ("embedding_length", spec.n_embd),
        ("block_count", spec.n_layer),
        ("feed_forward_length", spec.n_ff),
        ("rope.dimension_count", spec.head_dim()),
        ("attention.head_count", spec.n_head),
        ("attention.head_count_kv", spec.n_head_kv),
    ];
    for (key, value) in keys {
        w.set(&format!("{arch}.{key}"), Value::U32(u32_of(value)?))?;
    }
    w.set(
        &format!("{arch}.attention.layer_norm_rms_epsilon"),
        Value::F32(spec.eps),
    )?;
    w.set(
        &format!("{arch}.rope.freq_base"),
        Value::F32(spec.rope_base),
    )?;
    Ok(())
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

    /// `token_embd.weight`, `[n_embd, n_vocab]`.
    fn embedding(&self, w: &mut GgufWriter, n_vocab: usize) -> Result<(), SynthError> {
        let n_embd = self.spec.n_embd;
        let std = EMBD_SPREAD / (n_embd as f64).sqrt();
        let values = self.normals("token_embd.weight", n_embd * n_vocab, std);
        let (ty, bytes) = if self.spec.embd_f16 {
            (GgmlType::F16, f16_bytes(&values))
        } else {
            (GgmlType::F32, f32_bytes(&values))
        };
        w.add_tensor(
            "token_embd.weight",
            ty,
            &[n_embd as u64, n_vocab as u64],
            bytes,
        )?;
        Ok(())
    }

    /// A norm weight near 1, f32.
    fn norm(&self, w: &mut GgufWriter, name: &str, n: usize) -> Result<(), SynthError> {
        let values: Vec<f32> = self
            .normals(name, n, 0.05)
            .into_iter()
            .map(|v| 1.0 + v)
            .collect();
        w.add_tensor(name, GgmlType::F32, &[n as u64], f32_bytes(&values))?;
        Ok(())
    }

    /// A ternary linear layer of `rows` outputs over `k` inputs. Master weights have standard
    /// deviation `1/sqrt(k)`, so unit-RMS inputs give outputs of RMS below 1.
    fn linear(
        &self,
        w: &mut GgufWriter,
        name: &str,
        k: usize,
        rows: usize,
    ) -> Result<(), SynthError> {
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
        let bytes = match format {
            WeightFormat::I2_S => packed(&I2s)?,
            WeightFormat::TQ1_0 => packed(&Tq1_0)?,
            WeightFormat::TQ2_0 => packed(&Tq2_0)?,
            WeightFormat::F32 => f32_bytes(&ternary),
            WeightFormat::F16 => f16_bytes(&ternary),
        };
        w.add_tensor(name, format.ggml_type(), &[k as u64, rows as u64], bytes)?;
        Ok(())
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
