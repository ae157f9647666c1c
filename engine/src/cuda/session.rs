//! The forward pass on the device: a KV cache, scratch buffers and one evaluation per batch.

use std::sync::Arc;

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, CudaSlice, CudaStream, CudaView, CudaViewMut};

use super::gpu::driver;
use super::launch::{
    argmax_index, attended_cells, attention_shared_bytes, dim, DenseOrder, I2sRows, I8sCodes,
    Launcher, RopeGeometry,
};
use super::pick::PickBuffers;
use super::weights::{check_fits, GpuLinear, GpuWeights};
use super::{CudaError, CudaModel};
use crate::formats::QK_K;
use crate::model::ops::{rope_angles, RopeKind};
use crate::model::{Model, PickRequest, Picked, KV_PAD};
use crate::synth::Arch;

/// Buffers sized for a batch of up to `tokens` tokens.
struct Scratch {
    tokens: usize,
    ids: CudaSlice<u32>,
    x: CudaSlice<f32>,
    h: CudaSlice<f32>,
    q: CudaSlice<f32>,
    k: CudaSlice<f32>,
    v: CudaSlice<f32>,
    attn: CudaSlice<f32>,
    gate: CudaSlice<f32>,
    up: CudaSlice<f32>,
    codes: CudaSlice<i8>,
    act_scale: CudaSlice<f32>,
    act_sum: CudaSlice<i32>,
    act_d: CudaSlice<f32>,
}

impl Scratch {
    fn new(stream: &Arc<CudaStream>, dims: &Dims, tokens: usize) -> Result<Self, CudaError> {
        let alloc = |n: usize| {
            stream
                .alloc_zeros::<f32>(n.max(1))
                .map_err(driver("allocating scratch buffers"))
        };
        let widest = dims.n_embd.max(dims.n_ff);
        Ok(Scratch {
            tokens,
            ids: stream
                .alloc_zeros::<u32>(tokens)
                .map_err(driver("allocating token ids"))?,
            x: alloc(tokens * dims.n_embd)?,
            h: alloc(tokens * dims.n_embd)?,
            q: alloc(tokens * dims.n_embd)?,
            k: alloc(tokens * dims.n_embd_kv)?,
            v: alloc(tokens * dims.n_embd_kv)?,
            attn: alloc(tokens * dims.n_embd)?,
            gate: alloc(tokens * dims.n_ff)?,
            up: alloc(tokens * dims.n_ff)?,
            codes: stream
                .alloc_zeros::<i8>(tokens * widest)
                .map_err(driver("allocating activation codes"))?,
            act_scale: alloc(tokens)?,
            act_sum: stream
                .alloc_zeros::<i32>(tokens)
                .map_err(driver("allocating activation sums"))?,
            act_d: alloc(tokens * widest.div_ceil(QK_K))?,
        })
    }
}

/// The model's dimensions, as the kernels take them.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n_embd: usize,
    n_embd_kv: usize,
    n_ff: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    n_rot: usize,
    n_vocab: usize,
    eps: f32,
}

/// A captured decode step.
struct DecodeGraph(CudaGraph);

/// How one evaluation attends.
#[derive(Debug, Clone, Copy)]
enum AttentionPath {
    /// One block per head and token, with shared memory for `cells` cells.
    OneBlock { cells: usize },
    /// A decode step split across the context.
    Split,
}

// SAFETY: a CUDA graph must not be used from two threads at once. This one belongs to one
// session and is only launched through `&mut CudaSession`, so it is never used concurrently; moving
// it to another thread (with the session) is sound.
unsafe impl Send for DecodeGraph {}

/// Which activation quantization the scratch codes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantized {
    I8s,
    Q8k,
}

/// A context of `n_ctx` positions on the device: an F16 KV cache, the rotation table and scratch
/// buffers that grow with the largest batch.
pub struct CudaSession {
    stream: std::sync::Arc<CudaStream>,
    dims: Dims,
    arch: Arch,
    neox: bool,
    fused: bool,
    lanes: usize,
    n_ctx: usize,
    /// Cells of the cache: `n_ctx` rounded up as the CPU pads it.
    capacity: usize,
    k_cache: Vec<CudaSlice<u16>>,
    v_cache: Vec<CudaSlice<u16>>,
    cos_sin: CudaSlice<f32>,
    /// The position of the batch being evaluated, read by the kernels from device memory.
    n_past: CudaSlice<i32>,
    scratch: Option<Scratch>,
    logits: Option<CudaSlice<f32>>,
    best: CudaSlice<u64>,
    /// Buffers of the sampler's picks, allocated by the first.
    pick: Option<PickBuffers>,
    /// Every head's attention scores of a decode step split across the context.
    scores: CudaSlice<f32>,
    /// Decode steps attending at least this many cells split attention across the context.
    split_from: usize,
    /// Bumped whenever a scratch or logits buffer is reallocated.
    generation: u64,
    /// The captured one-token steps, with one-block and with split attention, and the buffer
    /// generation each names.
    decode: [Option<(DecodeGraph, u64)>; 2],
}

impl CudaSession {
    /// Allocates a session of `n_ctx` positions for `model` on its device.
    pub fn new(model: &Model, cuda: &CudaModel, n_ctx: usize) -> Result<Self, CudaError> {
        if !model.options().kv_f16 {
            return Err(CudaError::Unsupported(
                "an f32 KV cache (the GPU cache is F16)".into(),
            ));
        }
        let hp = model.hparams();
        let heads = model.heads();
        if heads.head_dim > 256 {
            return Err(CudaError::Unsupported(format!(
                "heads of {} values (at most 256)",
                heads.head_dim
            )));
        }
        let numerics = model.options().numerics;
        let lanes = numerics.width.lanes();
        // Cells as the CPU pads them, so that attention sums over the same cells.
        let capacity = n_ctx.next_multiple_of(KV_PAD);
        if attention_shared_bytes(capacity, lanes) > cuda.gpu.attention_shared_limit {
            return Err(CudaError::Unsupported(format!(
                "a context of {n_ctx} positions (attention keeps its scores in shared memory)"
            )));
        }
        let kv = model
            .heads()
            .cache_bytes(model.layers().len(), capacity, true) as u64;
        let needed = cuda.weight_bytes() + kv;
        check_fits(
            &cuda.device()?,
            cuda.memory_limit,
            needed,
            "the weights and the KV cache",
        )?;
        let stream = cuda.stream.clone();
        let n_rot = hp.rope_dimension_count as usize;
        let table: Vec<f32> = (0..n_ctx)
            .flat_map(|pos| rope_angles(pos, n_rot, hp.rope_freq_base))
            .flat_map(|(c, s)| [c, s])
            .collect();
        let cache_len = heads.n_head_kv * capacity * heads.head_dim;
        let cache = || {
            stream
                .alloc_zeros::<u16>(cache_len.max(1))
                .map_err(driver("allocating the KV cache"))
        };
        let layers = model.layers().len();
        Ok(CudaSession {
            dims: Dims {
                n_embd: hp.embedding_length as usize,
                n_embd_kv: heads.n_head_kv * heads.head_dim,
                n_ff: hp.feed_forward_length as usize,
                n_head: heads.n_head,
                n_head_kv: heads.n_head_kv,
                head_dim: heads.head_dim,
                n_rot,
                n_vocab: model.n_vocab(),
                eps: hp.rms_epsilon,
            },
            arch: model.arch(),
            neox: model.rope_kind() == RopeKind::Neox,
            fused: numerics.contract == crate::formats::FpContract::Fused,
            lanes,
            n_ctx,
            capacity,
            k_cache: (0..layers).map(|_| cache()).collect::<Result<_, _>>()?,
            v_cache: (0..layers).map(|_| cache()).collect::<Result<_, _>>()?,
            cos_sin: stream
                .clone_htod(&table)
                .map_err(driver("uploading the rotation table"))?,
            n_past: stream
                .alloc_zeros::<i32>(1)
                .map_err(driver("allocating the position"))?,
            scratch: None,
            logits: None,
            pick: None,
            scores: stream
                .alloc_zeros::<f32>(heads.n_head * capacity)
                .map_err(driver("allocating attention scores"))?,
            split_from: model.options().gpu_split_attention_from,
            generation: 0,
            decode: [None, None],
            best: stream
                .alloc_zeros::<u64>(1)
                .map_err(driver("allocating the argmax"))?,
            stream,
        })
    }

    /// Bytes of the KV cache.
    pub fn kv_cache_bytes(&self) -> usize {
        self.k_cache
            .iter()
            .chain(&self.v_cache)
            .map(|c| c.num_bytes())
            .sum()
    }

    /// Evaluates `tokens` after `n_past` cached positions and returns the logits of every token
    /// (`all_logits`) or of the last one.
    pub fn eval(
        &mut self,
        cuda: &CudaModel,
        tokens: &[u32],
        n_past: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, CudaError> {
        let rows = self.forward(cuda, tokens, n_past, all_logits)?;
        let logits = self.logits.as_ref().expect("allocated by forward");
        let mut out = vec![0f32; rows * self.dims.n_vocab];
        self.stream
            .memcpy_dtoh(&logits.slice(..out.len()), &mut out)
            .map_err(driver("copying logits to the host"))?;
        Ok(out)
    }

    /// Evaluates `tokens` after `n_past` cached positions and runs the device's share of a
    /// sampler's pick on the last token's logits.
    pub fn eval_pick(
        &mut self,
        cuda: &CudaModel,
        tokens: &[u32],
        n_past: usize,
        request: &PickRequest,
    ) -> Result<Picked, CudaError> {
        self.forward(cuda, tokens, n_past, false)?;
        let n_vocab = self.dims.n_vocab;
        if self.pick.is_none() {
            self.pick = Some(PickBuffers::new(&self.stream, n_vocab)?);
        }
        let (pick, logits) = (
            self.pick.as_mut().expect("allocated above"),
            self.logits.as_ref().expect("allocated by forward"),
        );
        let launcher = Launcher {
            gpu: &cuda.gpu,
            stream: &self.stream,
        };
        pick.pick(&launcher, &logits.slice(..n_vocab), request)
    }

    /// Evaluates `tokens` after `n_past` cached positions and returns the most likely next token
    /// (the first on ties), picked on the device.
    pub fn eval_argmax(
        &mut self,
        cuda: &CudaModel,
        tokens: &[u32],
        n_past: usize,
    ) -> Result<u32, CudaError> {
        self.forward(cuda, tokens, n_past, false)?;
        let mut best = [0u64];
        self.stream
            .memcpy_dtoh(&self.best, &mut best)
            .map_err(driver("copying the argmax to the host"))?;
        Ok(argmax_index(best[0]))
    }

    /// Runs the graph; leaves the logits of the returned number of rows in `self.logits` (and
    /// their argmax in `self.best` when there is one row). A one-token step replays a captured
    /// CUDA graph, captured again whenever the buffers it names were reallocated.
    fn forward(
        &mut self,
        cuda: &CudaModel,
        tokens: &[u32],
        n_past: usize,
        all_logits: bool,
    ) -> Result<usize, CudaError> {
        let n = tokens.len();
        if n == 0 || n_past + n > self.n_ctx {
            return Err(CudaError::Request(format!(
                "{n} tokens after {n_past} do not fit a context of {}",
                self.n_ctx
            )));
        }
        let out_rows = if all_logits { n } else { 1 };
        self.reserve(n, out_rows)?;
        let past = [dim(n_past)?];
        self.stream
            .memcpy_htod(&past, &mut self.n_past)
            .map_err(driver("copying the position"))?;
        let scratch = self.scratch.as_mut().expect("reserved");
        self.stream
            .memcpy_htod(tokens, &mut scratch.ids.slice_mut(..n))
            .map_err(driver("copying token ids"))?;
        if n > 1 {
            let cells = attended_cells(n_past + n, self.capacity);
            self.launch_all(cuda, n, out_rows, AttentionPath::OneBlock { cells })?;
            return Ok(out_rows);
        }
        let split = attended_cells(n_past + 1, self.capacity) >= self.split_from;
        let slot = usize::from(split);
        if self.decode[slot]
            .as_ref()
            .is_none_or(|(_, g)| *g != self.generation)
        {
            self.decode[slot] = None;
            self.stream
                .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(driver("starting a graph capture"))?;
            // Captured once for every position: shared memory for the whole cache.
            let path = if split {
                AttentionPath::Split
            } else {
                AttentionPath::OneBlock {
                    cells: self.capacity,
                }
            };
            let launched = self.launch_all(cuda, 1, 1, path);
            let captured = self
                .stream
                .end_capture(
                    CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH,
                )
                .map_err(driver("capturing the decode step"));
            launched?;
            let graph = captured?.ok_or_else(|| CudaError::Driver {
                during: "capturing the decode step".into(),
                message: "the capture recorded nothing".into(),
            })?;
            self.decode[slot] = Some((DecodeGraph(graph), self.generation));
        }
        let (graph, _) = self.decode[slot].as_ref().expect("captured above");
        graph
            .0
            .launch()
            .map_err(driver("launching the decode step"))?;
        Ok(1)
    }

    /// Scratch buffers for `n` tokens and logits for `out_rows` rows; a reallocation moves to a
    /// new buffer generation.
    fn reserve(&mut self, n: usize, out_rows: usize) -> Result<(), CudaError> {
        let d = self.dims;
        if self.scratch.as_ref().is_none_or(|s| s.tokens < n) {
            self.scratch = None;
            self.scratch = Some(Scratch::new(&self.stream, &d, n)?);
            self.generation += 1;
        }
        if self
            .logits
            .as_ref()
            .is_none_or(|l| l.len() < out_rows * d.n_vocab)
        {
            self.logits = None;
            self.logits = Some(
                self.stream
                    .alloc_zeros::<f32>(out_rows * d.n_vocab)
                    .map_err(driver("allocating logits"))?,
            );
            self.generation += 1;
        }
        Ok(())
    }

    /// Launches every kernel of one evaluation of `n` tokens (ids and position already on the
    /// device), attending as `path` says.
    fn launch_all(
        &mut self,
        cuda: &CudaModel,
        n: usize,
        out_rows: usize,
        path: AttentionPath,
    ) -> Result<(), CudaError> {
        let d = self.dims;
        let s = self.scratch.as_mut().expect("reserved");
        let logits = self.logits.as_mut().expect("reserved");
        let l = Launcher {
            gpu: &cuda.gpu,
            stream: &self.stream,
        };
        let (e, ekv, ff) = (n * d.n_embd, n * d.n_embd_kv, n * d.n_ff);
        let ids = s.ids.slice(..n);
        let x = &mut s.x.slice_mut(..e);
        let kernels = &cuda.gpu.kernels;
        match &cuda.token_embd.weights {
            GpuWeights::F16(table) => l.embed(&kernels.embed_f16, table, &ids, x, (n, d.n_embd))?,
            GpuWeights::F32(table) => l.embed(&kernels.embed_f32, table, &ids, x, (n, d.n_embd))?,
            _ => return Err(CudaError::Unsupported("ternary token embeddings".into())),
        }
        let geometry = RopeGeometry {
            n_head: d.n_head,
            n_head_kv: d.n_head_kv,
            head_dim: d.head_dim,
            n_rot: d.n_rot,
            neox: self.neox,
            fused: self.fused,
            capacity: self.capacity,
        };
        let mm = Matmuls {
            launcher: &l,
            fused: self.fused,
            lanes: self.lanes,
        };
        let scale = 1.0 / (d.head_dim as f32).sqrt();
        let mut act = Activations {
            codes: &mut s.codes,
            scale: &mut s.act_scale,
            sum: &mut s.act_sum,
            d: &mut s.act_d,
            held: None,
        };
        let (embd, ffn) = ((n, d.n_embd, d.eps), (n, d.n_ff, d.eps));
        for (il, layer) in cuda.layers.iter().enumerate() {
            let h = &mut s.h.slice_mut(..e);
            mm.norm(
                &s.x.slice(..e),
                &layer.attn_norm,
                h,
                embd,
                &layer.wq,
                &mut act,
            )?;
            let h = s.h.slice(..e);
            mm.apply_shared(
                &mut [
                    (&layer.wq, &mut s.q.slice_mut(..e)),
                    (&layer.wk, &mut s.k.slice_mut(..ekv)),
                    (&layer.wv, &mut s.v.slice_mut(..ekv)),
                ],
                &h,
                &mut act,
                n,
            )?;
            l.rope_store(
                &mut s.q.slice_mut(..e),
                &mut s.k.slice_mut(..ekv),
                &s.v.slice(..ekv),
                &self.cos_sin,
                &mut self.k_cache[il].slice_mut(..),
                &mut self.v_cache[il].slice_mut(..),
                &self.n_past,
                &geometry,
                n,
            )?;
            let (k_cache, v_cache) = (self.k_cache[il].slice(..), self.v_cache[il].slice(..));
            match path {
                AttentionPath::Split => l.attention_split(
                    &s.q.slice(..e),
                    (&k_cache, &v_cache),
                    &mut self.scores,
                    &mut s.attn.slice_mut(..e),
                    &self.n_past,
                    &geometry,
                    (scale, self.lanes),
                )?,
                AttentionPath::OneBlock { cells } => l.attention(
                    &s.q.slice(..e),
                    &k_cache,
                    &v_cache,
                    &mut s.attn.slice_mut(..e),
                    &self.n_past,
                    &geometry,
                    (n, cells),
                    (scale, self.lanes),
                )?,
            }
            let attn_in = mm.sub_norm(
                &s.attn,
                &mut s.h,
                layer.attn_sub_norm.as_ref(),
                embd,
                &layer.wo,
                &mut act,
            )?;
            // The residual connections add the products into the stream in place.
            mm.apply(
                &layer.wo,
                &attn_in,
                &mut act,
                &mut s.x.slice_mut(..e),
                (n, true),
            )?;
            let h = &mut s.h.slice_mut(..e);
            mm.norm(
                &s.x.slice(..e),
                &layer.ffn_norm,
                h,
                embd,
                &layer.ffn_up,
                &mut act,
            )?;
            let silu = match self.arch {
                Arch::BitnetB158 => false,
                Arch::Bitnet | Arch::Llama => true,
            };
            mm.apply_glu(
                (&layer.ffn_gate, &layer.ffn_up),
                &s.h.slice(..e),
                &mut act,
                &mut s.gate.slice_mut(..ff),
                &mut s.up.slice_mut(..ff),
                (n, silu),
            )?;
            let down_in = mm.sub_norm(
                &s.gate,
                &mut s.up,
                layer.ffn_sub_norm.as_ref(),
                ffn,
                &layer.ffn_down,
                &mut act,
            )?;
            mm.apply(
                &layer.ffn_down,
                &down_in,
                &mut act,
                &mut s.x.slice_mut(..e),
                (n, true),
            )?;
        }
        let first = (n - out_rows) * d.n_embd;
        let rows = out_rows * d.n_embd;
        let h = &mut s.h.slice_mut(..rows);
        let last = (out_rows, d.n_embd, d.eps);
        mm.norm(
            &s.x.slice(first..e),
            &cuda.output_norm,
            h,
            last,
            cuda.output(),
            &mut act,
        )?;
        let out = out_rows * d.n_vocab;
        mm.apply(
            cuda.output(),
            &s.h.slice(..rows),
            &mut act,
            &mut logits.slice_mut(..out),
            (out_rows, false),
        )?;
        if out_rows == 1 {
            l.argmax(&logits.slice(..d.n_vocab), d.n_vocab, &mut self.best)?;
        }
        Ok(())
    }
}

/// The quantized activations of the input the matmuls of one step share.
pub(crate) struct Activations<'a> {
    pub codes: &'a mut CudaSlice<i8>,
    pub scale: &'a mut CudaSlice<f32>,
    pub sum: &'a mut CudaSlice<i32>,
    pub d: &'a mut CudaSlice<f32>,
    /// What the buffers hold for the current input; reset when the input changes.
    pub held: Option<Quantized>,
}

impl Activations<'_> {
    /// Runs `f` on the I8_S codes of the first token (of `k` values) the buffers hold.
    fn one_token<R>(&self, k: usize, f: impl FnOnce(&I8sCodes<'_, '_>) -> R) -> R {
        let (codes, scale, sum) = (
            self.codes.slice(..k),
            self.scale.slice(..1),
            self.sum.slice(..1),
        );
        f(&I8sCodes {
            codes: &codes,
            scale: &scale,
            sum: &sum,
        })
    }
}

/// Applies weight matrices to a batch, quantizing the input once per format.
pub(crate) struct Matmuls<'a> {
    pub launcher: &'a Launcher<'a>,
    pub fused: bool,
    /// Lanes of the reference build, which with the batch size decide the order of dense
    /// products.
    pub lanes: usize,
}

impl Matmuls<'_> {
    /// RMSNorm of `rows` rows of `x` into `out`; when `consumer` is I2_S, in the same launch
    /// the I8_S quantization of the result it will read.
    pub fn norm(
        &self,
        x: &CudaView<f32>,
        weight: &CudaSlice<f32>,
        out: &mut CudaViewMut<f32>,
        (rows, width, eps): (usize, usize, f32),
        consumer: &GpuLinear,
        act: &mut Activations<'_>,
    ) -> Result<(), CudaError> {
        let l = self.launcher;
        if !matches!(consumer.weights, GpuWeights::I2s { .. }) {
            act.held = None;
            return l.rms_norm(x, weight, out, rows, width, eps);
        }
        let len = rows * width;
        l.rms_norm_quantize(
            x,
            weight,
            out,
            (rows, width, eps),
            self.fused,
            &mut act.codes.slice_mut(..len),
            &mut act.scale.slice_mut(..rows),
            &mut act.sum.slice_mut(..rows),
        )?;
        act.held = Some(Quantized::I8s);
        Ok(())
    }

    /// The CPU's order for a dense product of `n` tokens of `k` values.
    fn order(&self, n: usize, k: usize) -> DenseOrder {
        DenseOrder {
            tiled: n >= 2 && k.is_multiple_of(self.lanes),
            lanes: self.lanes,
        }
    }

    /// The input of a projection that a sub-norm may precede: the first `rows · width` values of
    /// `x` itself, or their RMSNorm by `weight` in `out` (quantized for `consumer` when it is
    /// I2_S).
    pub fn sub_norm<'b>(
        &self,
        x: &'b CudaSlice<f32>,
        out: &'b mut CudaSlice<f32>,
        weight: Option<&CudaSlice<f32>>,
        (rows, width, eps): (usize, usize, f32),
        consumer: &GpuLinear,
        act: &mut Activations<'_>,
    ) -> Result<CudaView<'b, f32>, CudaError> {
        let len = rows * width;
        act.held = None;
        let Some(weight) = weight else {
            return Ok(x.slice(..len));
        };
        let dims = (rows, width, eps);
        self.norm(
            &x.slice(..len),
            weight,
            &mut out.slice_mut(..len),
            dims,
            consumer,
            act,
        )?;
        Ok(out.slice(..len))
    }

    /// The I8_S quantization of `n` tokens of `k` values of `x` into `act`, unless it holds it.
    fn quantize_i8s(
        &self,
        x: &CudaView<f32>,
        (n, k): (usize, usize),
        act: &mut Activations<'_>,
    ) -> Result<(), CudaError> {
        if act.held == Some(Quantized::I8s) {
            return Ok(());
        }
        self.launcher.quantize_i8s(
            x,
            n,
            k,
            self.fused,
            &mut act.codes.slice_mut(..n * k),
            &mut act.scale.slice_mut(..n),
            &mut act.sum.slice_mut(..n),
        )?;
        act.held = Some(Quantized::I8s);
        Ok(())
    }

    /// `out_i = w_i · x` for matrices that read the same input `x` of `n` tokens: one launch for
    /// a one-token step when all are I2_S of one width, one product each otherwise.
    pub fn apply_shared(
        &self,
        parts: &mut [(&GpuLinear, &mut CudaViewMut<f32>)],
        x: &CudaView<f32>,
        act: &mut Activations<'_>,
        n: usize,
    ) -> Result<(), CudaError> {
        let k = parts.first().map_or(0, |(w, _)| w.k);
        let matrices: Option<Vec<_>> = parts
            .iter()
            .map(|(w, _)| w.i2s_gemv_ref().filter(|_| n == 1 && w.k == k))
            .collect();
        if let Some(matrices) = matrices {
            self.quantize_i8s(x, (1, k), act)?;
            let mut rows: Vec<I2sRows> = matrices
                .into_iter()
                .zip(parts.iter_mut())
                .map(|(matrix, (w, out))| I2sRows {
                    matrix,
                    rows: w.rows,
                    out,
                })
                .collect();
            let l = self.launcher;
            return act.one_token(k, |a| l.i2s_gemv(a, k, false, &mut rows));
        }
        for (w, out) in parts.iter_mut() {
            self.apply(w, x, act, out, (n, false))?;
        }
        Ok(())
    }

    /// The gated feed-forward input `act(gate · x) · (up · x)` of `n` tokens into `gate_out`
    /// (SiLU with `silu`, else ReLU²): one launch for a one-token step on I2_S matrices, the two
    /// products (the up one into `up_out`) and the gating otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_glu(
        &self,
        (gate, up): (&GpuLinear, &GpuLinear),
        x: &CudaView<f32>,
        act: &mut Activations<'_>,
        gate_out: &mut CudaViewMut<f32>,
        up_out: &mut CudaViewMut<f32>,
        (n, silu): (usize, bool),
    ) -> Result<(), CudaError> {
        let l = self.launcher;
        let one_token = n == 1 && gate.k == up.k && gate.rows == up.rows;
        if let (Some(g), Some(u), true) = (gate.i2s_gemv_ref(), up.i2s_gemv_ref(), one_token) {
            self.quantize_i8s(x, (1, gate.k), act)?;
            let geometry = (gate.rows, gate.k);
            return act.one_token(gate.k, |a| {
                l.i2s_gemv_glu(a, (&g, &u), gate_out, geometry, (silu, self.lanes))
            });
        }
        self.apply(up, x, act, up_out, (n, false))?;
        self.apply(gate, x, act, gate_out, (n, false))?;
        let len = n * gate.rows;
        if silu {
            l.silu_mul(gate_out, &up_out.as_view(), gate.rows, self.lanes, len)
        } else {
            l.relu_sqr_mul(gate_out, &up_out.as_view(), len)
        }
    }

    /// `out = w · x` (or `out += w · x` with `accumulate`) for `n` tokens of `x`.
    pub fn apply(
        &self,
        w: &GpuLinear,
        x: &CudaView<f32>,
        act: &mut Activations<'_>,
        out: &mut CudaViewMut<f32>,
        (n, accumulate): (usize, bool),
    ) -> Result<(), CudaError> {
        let l = self.launcher;
        let geometry = (w.rows, w.k, n);
        let len = n * w.k;
        match &w.weights {
            GpuWeights::I2s { codes, scale } => {
                self.quantize_i8s(x, (n, w.k), act)?;
                if let Some(matrix) = w.i2s_gemv_ref().filter(|_| n == 1) {
                    let mut part = [I2sRows {
                        matrix,
                        rows: w.rows,
                        out,
                    }];
                    return act.one_token(w.k, |a| l.i2s_gemv(a, w.k, accumulate, &mut part));
                }
                l.i2s_matmul(
                    codes,
                    *scale,
                    &act.codes.slice(..len),
                    &act.scale.slice(..n),
                    &act.sum.slice(..n),
                    w.scale,
                    out,
                    accumulate,
                    geometry,
                )
            }
            GpuWeights::Tq { codes, d } => {
                if act.held != Some(Quantized::Q8k) {
                    l.quantize_q8k(
                        x,
                        n,
                        w.k,
                        self.fused,
                        &mut act.codes.slice_mut(..len),
                        &mut act.d.slice_mut(..len / QK_K),
                    )?;
                    act.held = Some(Quantized::Q8k);
                }
                l.tq_matmul(
                    codes,
                    d,
                    &act.codes.slice(..len),
                    &act.d.slice(..len / QK_K),
                    w.scale,
                    self.fused,
                    out,
                    accumulate,
                    geometry,
                )
            }
            GpuWeights::F16(values) => {
                let kernel = &l.gpu.kernels.f16_matmul;
                let order = self.order(n, w.k);
                l.dense_matmul(kernel, values, x, order, w.scale, out, accumulate, geometry)
            }
            GpuWeights::F32(values) => {
                let kernel = &l.gpu.kernels.f32_matmul;
                let order = self.order(n, w.k);
                l.dense_matmul(kernel, values, x, order, w.scale, out, accumulate, geometry)
            }
        }
    }
}
