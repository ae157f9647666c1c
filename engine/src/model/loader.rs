//! Loading a model: hyperparameters and per-layer tensors of a memory-mapped GGUF file.

use std::path::Path;
use std::time::{Duration, Instant};

use super::attention::HeadLayout;
use super::ops::RopeKind;
use super::{
    resolve_device, Device, DeviceChoice, DeviceStrategy, Linear, ModelError, ModelOptions,
    ModelTilings,
};
use crate::cuda::CudaModel;
use crate::formats::I2sLayout;
use crate::gguf::{GgmlType, GgufFile, Metadata, ModelHparams};
use crate::kernels::{CpuKernels, Isa};
use crate::synth::Arch;

/// The tensors of one block.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `attn_norm`.
    pub attn_norm: Vec<f32>,
    /// `attn_q`.
    pub wq: Linear,
    /// `attn_k`.
    pub wk: Linear,
    /// `attn_v`.
    pub wv: Linear,
    /// `attn_output`.
    pub wo: Linear,
    /// `attn_sub_norm` (bitnet architectures).
    pub attn_sub_norm: Option<Vec<f32>>,
    /// `ffn_norm`.
    pub ffn_norm: Vec<f32>,
    /// `ffn_gate`.
    pub ffn_gate: Linear,
    /// `ffn_up`.
    pub ffn_up: Linear,
    /// `ffn_down`.
    pub ffn_down: Linear,
    /// `ffn_sub_norm` (bitnet architectures).
    pub ffn_sub_norm: Option<Vec<f32>>,
}

impl Layer {
    /// The block's weight matrices.
    pub fn matrices(&self) -> [&Linear; 7] {
        [
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.ffn_gate,
            &self.ffn_up,
            &self.ffn_down,
        ]
    }

    /// [`Layer::matrices`], mutable.
    fn matrices_mut(&mut self) -> [&mut Linear; 7] {
        [
            &mut self.wq,
            &mut self.wk,
            &mut self.wv,
            &mut self.wo,
            &mut self.ffn_gate,
            &mut self.ffn_up,
            &mut self.ffn_down,
        ]
    }
}

/// Where the weights live: bytes of tensor data mapped from the file, and bytes copied to the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightMemory {
    /// Tensor data in the memory-mapped file (paged in by the OS as it is read, never copied).
    pub mapped: usize,
    /// Weights copied to the heap: the f32 norm vectors.
    pub copied: usize,
}

/// A loaded model: the mapped file, its hyperparameters, tensors and kernels.
pub struct Model {
    pub(crate) file: GgufFile,
    pub(crate) hparams: ModelHparams,
    pub(crate) arch: Arch,
    pub(crate) token_embd: Linear,
    pub(crate) output: Linear,
    pub(crate) output_norm: Vec<f32>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) kernels: CpuKernels,
    pub(crate) options: ModelOptions,
    pub(crate) n_vocab: usize,
    pub(crate) bos: Option<u32>,
    /// The weights on the GPU, when the model runs there.
    pub(crate) cuda: Option<CudaModel>,
    device: DeviceChoice,
    load_time: Duration,
}

impl Model {
    /// Resolves the device, opens `path` and checks every tensor the graph needs.
    pub fn load(path: impl AsRef<Path>, options: &ModelOptions) -> Result<Self, ModelError> {
        let start = Instant::now();
        let device = resolve_device(options.device, options.gpu_memory_limit)?;
        let isa = options.isa.unwrap_or_else(Isa::best);
        let kernels = CpuKernels::new(isa, options.threads)?.with_numerics(options.numerics);
        let file = GgufFile::open_in(path, options.residency)?;
        let arch_name = file.metadata().get_str("general.architecture")?;
        let arch = Arch::from_name(arch_name)
            .ok_or_else(|| ModelError::UnsupportedArch(arch_name.to_string()))?;
        let hparams = ModelHparams::from_metadata(file.metadata())?;
        let n_embd = hparams.embedding_length as usize;
        let n_ff = hparams.feed_forward_length as usize;
        let heads = head_layout(&hparams)?;
        let n_embd_kv = heads.n_head_kv * heads.head_dim;
        let embd_info = file.tensor_info("token_embd.weight")?;
        let n_vocab = embd_info.dims.get(1).copied().unwrap_or(0) as usize;
        // The options' tilings take precedence over those the file records.
        let tilings =
            ModelTilings::resolve(file.metadata(), &options.tl1_tilings, &options.tl2_tilings)?;
        let token_embd = Linear::load(&file, "token_embd.weight", n_embd, n_vocab, &tilings)?;
        if !matches!(
            token_embd.ty(),
            GgmlType::F16 | GgmlType::F32 | GgmlType::Q8_0 | GgmlType::Q6_K
        ) {
            return Err(ModelError::UnsupportedType {
                tensor: "token_embd.weight".into(),
                ty: token_embd.ty(),
            });
        }
        let output = if file.tensor_info("output.weight").is_ok() {
            Linear::load(&file, "output.weight", n_embd, n_vocab, &tilings)?
        } else {
            token_embd.clone()
        };
        let output_norm = norm(&file, "output_norm.weight", n_embd)?;
        let layers = (0..hparams.block_count as usize)
            .map(|il| {
                let name = |t: &str| format!("blk.{il}.{t}.weight");
                let linear = |t: &str, k: usize, rows: usize| {
                    let scale = scale(&file, &format!("blk.{il}.{t}.scale"))?;
                    let linear = Linear::load(&file, &name(t), k, rows, &tilings)?;
                    Ok::<_, ModelError>(linear.with_scale(scale))
                };
                let sub_norm = |t: &str, n: usize| {
                    arch.has_sub_norms()
                        .then(|| norm(&file, &name(t), n))
                        .transpose()
                };
                Ok(Layer {
                    attn_norm: norm(&file, &name("attn_norm"), n_embd)?,
                    wq: linear("attn_q", n_embd, n_embd)?,
                    wk: linear("attn_k", n_embd, n_embd_kv)?,
                    wv: linear("attn_v", n_embd, n_embd_kv)?,
                    wo: linear("attn_output", n_embd, n_embd)?,
                    attn_sub_norm: sub_norm("attn_sub_norm", n_embd)?,
                    ffn_norm: norm(&file, &name("ffn_norm"), n_embd)?,
                    ffn_gate: linear("ffn_gate", n_embd, n_ff)?,
                    ffn_up: linear("ffn_up", n_embd, n_ff)?,
                    ffn_down: linear("ffn_down", n_ff, n_embd)?,
                    ffn_sub_norm: sub_norm("ffn_sub_norm", n_ff)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let bos = file.metadata().get_opt_u32("tokenizer.ggml.bos_token_id")?;
        let mut model = Model {
            file,
            hparams,
            arch,
            token_embd,
            output,
            output_norm,
            layers,
            kernels,
            options: options.clone(),
            n_vocab,
            bos,
            cuda: None,
            device,
            load_time: start.elapsed(),
        };
        if let Device::Cuda(ordinal) = model.device.device {
            match CudaModel::upload(&model, ordinal, options.gpu_memory_limit) {
                Ok(cuda) => model.cuda = Some(cuda),
                Err(e) if options.device == DeviceStrategy::Auto => {
                    model.device = DeviceChoice {
                        strategy: options.device,
                        device: Device::Cpu,
                        reason: format!(
                            "the GPU could not take the model ({e}); running on the CPU"
                        ),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        if model.cuda.is_none() && model.kernels.preferred_i2s_layout() == I2sLayout::Quads {
            model.group_i2s_rows()?;
        }
        model.load_time = start.elapsed();
        Ok(model)
    }

    /// Groups the rows of every I2_S matrix in fours, the layout the CPU kernels read fastest,
    /// where the file is resident (a mapped file's pages stay as the file has them).
    fn group_i2s_rows(&mut self) -> Result<(), ModelError> {
        let Model {
            file,
            layers,
            output,
            ..
        } = self;
        let linears =
            std::iter::once(output).chain(layers.iter_mut().flat_map(Layer::matrices_mut));
        file.edit_resident(|bytes| {
            linears
                .into_iter()
                .try_for_each(|linear| linear.group_i2s_rows(bytes))
        })?
        .unwrap_or(Ok(()))
    }

    #[cfg(feature = "cuda")]
    /// Every weight matrix of the graph, the output projection once even when it is tied to the
    /// token embeddings.
    pub(crate) fn linears(&self) -> Vec<&Linear> {
        let mut all = vec![&self.token_embd];
        if self.output.name() != self.token_embd.name() {
            all.push(&self.output);
        }
        all.extend(self.layers.iter().flat_map(Layer::matrices));
        all
    }

    /// How the rows of the model's I2_S matrices lie in memory on the CPU: grouped in fours
    /// where the kernels read them faster so and the file is resident, else as in the file.
    pub fn i2s_layout(&self) -> I2sLayout {
        self.layers
            .iter()
            .flat_map(Layer::matrices)
            .find(|linear| linear.ty() == GgmlType::I2_S)
            .map_or(I2sLayout::Rows, Linear::i2s_layout)
    }

    /// The file's metadata (tokenizer, chat template, …).
    pub fn metadata(&self) -> &Metadata {
        self.file.metadata()
    }

    /// The device the model runs on, and why it was chosen.
    pub fn device(&self) -> &DeviceChoice {
        &self.device
    }

    /// The instruction set of the CPU kernels.
    pub fn isa(&self) -> Isa {
        self.kernels.isa()
    }

    /// How long [`Model::load`] took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Bytes of weights mapped from the file and copied to the heap.
    pub fn weight_memory(&self) -> WeightMemory {
        let norms = self.layers.iter().fold(self.output_norm.len(), |n, layer| {
            n + layer.attn_norm.len()
                + layer.ffn_norm.len()
                + layer.attn_sub_norm.as_ref().map_or(0, Vec::len)
                + layer.ffn_sub_norm.as_ref().map_or(0, Vec::len)
        });
        WeightMemory {
            mapped: self
                .file
                .layout()
                .tensors
                .iter()
                .map(|t| t.n_bytes as usize)
                .sum(),
            copied: norms * size_of::<f32>(),
        }
    }

    /// The hyperparameters.
    pub fn hparams(&self) -> &ModelHparams {
        &self.hparams
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The blocks.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The vocabulary size (rows of `token_embd`).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The begin-of-text token, if the file names one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The options the model was loaded with.
    pub fn options(&self) -> &ModelOptions {
        &self.options
    }

    /// The training context length.
    pub fn n_ctx_train(&self) -> usize {
        self.hparams.context_length as usize
    }

    pub(crate) fn heads(&self) -> HeadLayout {
        head_layout(&self.hparams).expect("checked at load")
    }

    pub(crate) fn rope_kind(&self) -> RopeKind {
        match self.arch {
            Arch::Llama => RopeKind::Normal,
            Arch::Bitnet | Arch::BitnetB158 => RopeKind::Neox,
        }
    }
}

fn head_layout(hp: &ModelHparams) -> Result<HeadLayout, ModelError> {
    let (n_embd, n_head, n_head_kv) = (
        hp.embedding_length as usize,
        hp.head_count as usize,
        hp.head_count_kv as usize,
    );
    if n_head_kv == 0 || !n_embd.is_multiple_of(n_head) || !n_head.is_multiple_of(n_head_kv) {
        return Err(ModelError::Hparams(format!(
            "n_embd {n_embd}, n_head {n_head}, n_head_kv {n_head_kv} do not form whole heads"
        )));
    }
    let head_dim = n_embd / n_head;
    let n_rot = hp.rope_dimension_count as usize;
    if n_rot > head_dim || !n_rot.is_multiple_of(2) {
        return Err(ModelError::Hparams(format!(
            "rope dimension count {n_rot} must be even and at most the head width {head_dim}"
        )));
    }
    Ok(HeadLayout {
        n_head,
        n_head_kv,
        head_dim,
    })
}

/// An f32 vector tensor of `n` values.
fn norm(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
    let info = file.tensor_info(name)?;
    if info.dims != [n as u64] {
        return Err(ModelError::Shape {
            tensor: name.into(),
            expected: vec![n as u64],
            actual: info.dims.clone(),
        });
    }
    if info.ty != GgmlType::F32 {
        return Err(ModelError::UnsupportedType {
            tensor: name.into(),
            ty: info.ty,
        });
    }
    let bytes = file.tensor_data(info)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// An optional one-value f32 tensor.
fn scale(file: &GgufFile, name: &str) -> Result<Option<f32>, ModelError> {
    if file.tensor_info(name).is_err() {
        return Ok(None);
    }
    Ok(norm(file, name, 1)?.first().copied())
}
