//! Typed launches of the kernels in `kernels.cu`, one function per kernel.
//!
//! Each function takes device buffers sized by its caller and the geometry they share; the
//! launch geometry follows from that geometry alone.

use std::sync::Arc;

use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, LaunchConfig, PushKernelArg,
};

use super::gpu::{driver, Gpu};
use super::CudaError;
use crate::model::KV_PAD;

/// Rows of a matmul per block (one warp each).
const ROWS_PER_BLOCK: u32 = 4;
/// Tokens per warp in the matmul kernels (`TOKEN_TILE` in kernels.cu).
const TOKEN_TILE: u32 = 8;
/// Warps of an I2_S block, rows per warp and most tokens per block (`I2S_ROWS_PER_WARP` and
/// `I2S_TOKEN_TILE` in kernels.cu).
const I2S_WARPS: u32 = 8;
const I2S_ROWS_PER_WARP: u32 = 2;
const I2S_TOKEN_TILE: usize = 16;
/// Warps (rows) of a block of the one-token I2_S kernels, and the most matrices `i2s_gemv`
/// takes in one launch.
const I2S_GEMV_WARPS: u32 = 8;
const I2S_GEMV_PARTS: usize = 3;
/// Weights of an I2_S row that the one-token kernels read per load (`I2S_GEMV_WEIGHTS`): rows
/// of other widths take the batched kernel.
pub(crate) const I2S_GEMV_WEIGHTS: usize = 64;
/// Threads of the one block of a pick.
const PICK_THREADS: u32 = 1024;
/// Warps of a block of the split decode attention: cells of a scores block, outputs of a values
/// block.
const SPLIT_ATTENTION_WARPS: u32 = 8;

macro_rules! launch {
    ($stream:expr, $func:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let mut builder = $stream.launch_builder($func);
        $( builder.arg($arg); )*
        // SAFETY: the arguments follow the kernel's parameter list in kernels.cu, in order and
        // type, and every buffer holds the elements the launch geometry reaches: each public
        // function of this module derives the geometry from the sizes its caller allocated.
        unsafe { builder.launch($cfg) }
            .map(drop)
            .map_err(driver("launching a kernel"))
    }};
}

/// A dimension as the kernels' `int`.
pub(crate) fn dim(value: usize) -> Result<i32, CudaError> {
    i32::try_from(value)
        .map_err(|_| CudaError::Unsupported(format!("a dimension of {value} (over 2^31 − 1)")))
}

fn blocks(n: usize, per_block: u32) -> u32 {
    (n as u32).div_ceil(per_block)
}

fn rows_config(rows: usize, tokens: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks(rows, ROWS_PER_BLOCK), blocks(tokens, TOKEN_TILE), 1),
        block_dim: (32 * ROWS_PER_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn per_block(grid: (u32, u32), threads: u32, shared: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid.0, grid.1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: shared,
    }
}

/// Threads of a kernel with one block per row: a lone row (a decode step) gets the widest block.
fn row_threads(rows: usize) -> u32 {
    if rows == 1 {
        1024
    } else {
        256
    }
}

fn elementwise(n: usize) -> LaunchConfig {
    per_block((blocks(n, 256), 1), 256, 0)
}

/// Optional output scale as the kernels take it: value and flag.
fn out_scale(scale: Option<f32>) -> (f32, i32) {
    (scale.unwrap_or(1.0), i32::from(scale.is_some()))
}

/// The kernels of one device on one stream.
pub(crate) struct Launcher<'a> {
    pub gpu: &'a Gpu,
    pub stream: &'a Arc<CudaStream>,
}

impl Launcher<'_> {
    /// Rows `tokens` of an embedding table of f16 bits (`u16`) or f32 values, as `kernel`
    /// (`embed_f16` or `embed_f32`) reads them, into `out` as f32.
    pub fn embed<T>(
        &self,
        kernel: &CudaFunction,
        table: &CudaSlice<T>,
        tokens: &CudaView<u32>,
        out: &mut CudaViewMut<f32>,
        (n_tokens, n_embd): (usize, usize),
    ) -> Result<(), CudaError> {
        let n_embd = dim(n_embd)?;
        let cfg = per_block((n_tokens as u32, 1), 256, 0);
        launch!(self.stream, kernel, cfg, table, tokens, out, &n_embd)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm(
        &self,
        x: &CudaView<f32>,
        weight: &CudaSlice<f32>,
        out: &mut CudaViewMut<f32>,
        rows: usize,
        width: usize,
        eps: f32,
    ) -> Result<(), CudaError> {
        let width = dim(width)?;
        let cfg = per_block((rows as u32, 1), row_threads(rows), 0);
        launch!(
            self.stream,
            &self.gpu.kernels.rms_norm,
            cfg,
            x,
            weight,
            out,
            &width,
            &eps
        )
    }

    /// RMSNorm into `out` and the I8_S quantization of the result, in one launch.
    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm_quantize(
        &self,
        x: &CudaView<f32>,
        weight: &CudaSlice<f32>,
        out: &mut CudaViewMut<f32>,
        (rows, width, eps): (usize, usize, f32),
        fused: bool,
        codes: &mut CudaViewMut<i8>,
        scales: &mut CudaViewMut<f32>,
        sums: &mut CudaViewMut<i32>,
    ) -> Result<(), CudaError> {
        let (width, fused) = (dim(width)?, i32::from(fused));
        let cfg = per_block((rows as u32, 1), row_threads(rows), 0);
        launch!(
            self.stream,
            &self.gpu.kernels.rms_norm_quantize,
            cfg,
            x,
            weight,
            out,
            &width,
            &eps,
            &fused,
            codes,
            scales,
            sums
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn quantize_i8s(
        &self,
        x: &CudaView<f32>,
        tokens: usize,
        k: usize,
        fused: bool,
        codes: &mut CudaViewMut<i8>,
        scales: &mut CudaViewMut<f32>,
        sums: &mut CudaViewMut<i32>,
    ) -> Result<(), CudaError> {
        let (k, fused) = (dim(k)?, i32::from(fused));
        let cfg = per_block((tokens as u32, 1), row_threads(tokens), 0);
        launch!(
            self.stream,
            &self.gpu.kernels.quantize_i8s,
            cfg,
            x,
            &k,
            &fused,
            codes,
            scales,
            sums
        )
    }

    pub fn quantize_q8k(
        &self,
        x: &CudaView<f32>,
        tokens: usize,
        k: usize,
        fused: bool,
        codes: &mut CudaViewMut<i8>,
        d: &mut CudaViewMut<f32>,
    ) -> Result<(), CudaError> {
        let blocks = (k / 256) as u32;
        let (k, fused) = (dim(k)?, i32::from(fused));
        let cfg = per_block((blocks, tokens as u32), 256, 0);
        launch!(
            self.stream,
            &self.gpu.kernels.quantize_q8k,
            cfg,
            x,
            &k,
            &fused,
            codes,
            d
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn i2s_matmul(
        &self,
        codes: &CudaSlice<u32>,
        w_scale: f32,
        act: &CudaView<i8>,
        act_scale: &CudaView<f32>,
        act_sum: &CudaView<i32>,
        scale: Option<f32>,
        out: &mut CudaViewMut<f32>,
        accumulate: bool,
        (rows, k, tokens): (usize, usize, usize),
    ) -> Result<(), CudaError> {
        // As many tokens per block as fit the staged activations, up to I2S_TOKEN_TILE.
        let tile = (self.gpu.i2s_shared_limit / k.max(1))
            .min(I2S_TOKEN_TILE)
            .min(tokens);
        if tile == 0 {
            return Err(CudaError::Unsupported(format!(
                "I2_S rows of {k} weights (one token's activations must fit {} bytes of shared \
                 memory)",
                self.gpu.i2s_shared_limit
            )));
        }
        let rows_per_block = I2S_ROWS_PER_WARP * I2S_WARPS;
        let cfg = per_block(
            (blocks(rows, rows_per_block), blocks(tokens, tile as u32)),
            32 * I2S_WARPS,
            (tile * k) as u32,
        );
        let (s, has_s) = out_scale(scale);
        let accumulate = i32::from(accumulate);
        let (rows, k, tokens, tile) = (dim(rows)?, dim(k)?, dim(tokens)?, dim(tile)?);
        launch!(
            self.stream,
            &self.gpu.kernels.i2s_matmul,
            cfg,
            codes,
            &w_scale,
            act,
            act_scale,
            act_sum,
            &s,
            &has_s,
            &accumulate,
            out,
            &rows,
            &k,
            &tokens,
            &tile
        )
    }

    /// A one-token I2_S product of up to three matrices of `k` weights that read the same
    /// activations, in one launch (one warp per row of every part).
    pub fn i2s_gemv(
        &self,
        act: &I8sCodes<'_, '_>,
        k: usize,
        accumulate: bool,
        parts: &mut [I2sRows<'_, '_>],
    ) -> Result<(), CudaError> {
        let Some(first) = parts.first() else {
            return Ok(());
        };
        if parts.len() > I2S_GEMV_PARTS {
            return Err(CudaError::Unsupported(format!(
                "{} matrices in one I2_S launch (at most {I2S_GEMV_PARTS})",
                parts.len()
            )));
        }
        let dummy_codes = first.matrix.codes;
        let total: usize = parts.iter().map(|p| p.rows).sum();
        let meta = parts
            .iter()
            .map(|p| {
                let (s, has_s) = out_scale(p.matrix.out_scale);
                Ok((p.matrix.w_scale, s, has_s, dim(p.rows)?))
            })
            .collect::<Result<Vec<_>, CudaError>>()?;
        let absent = (1.0f32, 1.0f32, 0i32, 0i32);
        let (k, accumulate) = (dim(k)?, i32::from(accumulate));
        let cfg = per_block((blocks(total, I2S_GEMV_WARPS), 1), 32 * I2S_GEMV_WARPS, 0);
        let mut builder = self.stream.launch_builder(&self.gpu.kernels.i2s_gemv);
        builder.arg(act.codes).arg(act.scale).arg(act.sum);
        builder.arg(&k).arg(&accumulate);
        for (part, (ws, s, has_s, rows)) in parts.iter_mut().zip(&meta) {
            builder.arg(part.matrix.codes).arg(ws).arg(s).arg(has_s);
            builder.arg(&mut *part.out).arg(rows);
        }
        // A part of no rows is never read or written; its pointers only fill the parameters.
        for _ in meta.len()..I2S_GEMV_PARTS {
            builder
                .arg(dummy_codes)
                .arg(&absent.0)
                .arg(&absent.1)
                .arg(&absent.2);
            builder.arg(act.scale).arg(&absent.3);
        }
        // SAFETY: the arguments follow i2s_gemv's parameter list in kernels.cu, in order and
        // type; each part's output holds its `rows` values and its codes `rows · k / 16` words,
        // the activations hold `k` codes, and the kernel reaches no row past the parts' total.
        unsafe { builder.launch(cfg) }
            .map(drop)
            .map_err(driver("launching a kernel"))
    }

    /// The gate and up projections of one token (I2_S, `rows` × `k` each) and their gating
    /// (SiLU with `silu`, else ReLU²) into `out`, in one launch.
    pub fn i2s_gemv_glu(
        &self,
        act: &I8sCodes<'_, '_>,
        (gate, up): (&I2sMatrixRef<'_>, &I2sMatrixRef<'_>),
        out: &mut CudaViewMut<f32>,
        (rows, k): (usize, usize),
        (silu, lanes): (bool, usize),
    ) -> Result<(), CudaError> {
        let (gs, has_gs) = out_scale(gate.out_scale);
        let (us, has_us) = out_scale(up.out_scale);
        let cfg = per_block((blocks(rows, I2S_GEMV_WARPS), 1), 32 * I2S_GEMV_WARPS, 0);
        let (rows, k, silu, lanes) = (dim(rows)?, dim(k)?, i32::from(silu), dim(lanes)?);
        launch!(
            self.stream,
            &self.gpu.kernels.i2s_gemv_glu,
            cfg,
            act.codes,
            act.scale,
            act.sum,
            &k,
            gate.codes,
            &gate.w_scale,
            &gs,
            &has_gs,
            up.codes,
            &up.w_scale,
            &us,
            &has_us,
            out,
            &rows,
            &silu,
            &lanes
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn tq_matmul(
        &self,
        codes: &CudaSlice<u8>,
        w_d: &CudaSlice<f32>,
        act: &CudaView<i8>,
        act_d: &CudaView<f32>,
        scale: Option<f32>,
        fused: bool,
        out: &mut CudaViewMut<f32>,
        accumulate: bool,
        (rows, k, tokens): (usize, usize, usize),
    ) -> Result<(), CudaError> {
        let cfg = rows_config(rows, tokens);
        let (s, has_s) = out_scale(scale);
        let (accumulate, fused) = (i32::from(accumulate), i32::from(fused));
        let (rows, k, tokens) = (dim(rows)?, dim(k)?, dim(tokens)?);
        launch!(
            self.stream,
            &self.gpu.kernels.tq_matmul,
            cfg,
            codes,
            w_d,
            act,
            act_d,
            &s,
            &has_s,
            &accumulate,
            &fused,
            out,
            &rows,
            &k,
            &tokens
        )
    }

    /// A dense product: `w` holds f16 bits (`u16`) or f32 values, as `kernel` (`f16_matmul` or
    /// `f32_matmul`) reads them.
    #[allow(clippy::too_many_arguments)]
    pub fn dense_matmul<T>(
        &self,
        kernel: &CudaFunction,
        w: &CudaSlice<T>,
        x: &CudaView<f32>,
        order: DenseOrder,
        scale: Option<f32>,
        out: &mut CudaViewMut<f32>,
        accumulate: bool,
        (rows, k, tokens): (usize, usize, usize),
    ) -> Result<(), CudaError> {
        let cfg = per_block((blocks(rows, ROWS_PER_BLOCK), 1), 32 * ROWS_PER_BLOCK, 0);
        let (s, has_s) = out_scale(scale);
        let (tiled, lanes) = (i32::from(order.tiled), dim(order.lanes)?);
        let accumulate = i32::from(accumulate);
        let (rows, k, tokens) = (dim(rows)?, dim(k)?, dim(tokens)?);
        launch!(
            self.stream,
            kernel,
            cfg,
            w,
            x,
            &tiled,
            &lanes,
            &s,
            &has_s,
            &accumulate,
            out,
            &rows,
            &k,
            &tokens
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rope_store(
        &self,
        q: &mut CudaViewMut<f32>,
        k: &mut CudaViewMut<f32>,
        v: &CudaView<f32>,
        cos_sin: &CudaSlice<f32>,
        k_cache: &mut CudaViewMut<u16>,
        v_cache: &mut CudaViewMut<u16>,
        n_past: &CudaSlice<i32>,
        geometry: &RopeGeometry,
        tokens: usize,
    ) -> Result<(), CudaError> {
        let g = geometry;
        let (n_head, n_head_kv, head_dim, n_rot) = (
            dim(g.n_head)?,
            dim(g.n_head_kv)?,
            dim(g.head_dim)?,
            dim(g.n_rot)?,
        );
        let (neox, fused) = (i32::from(g.neox), i32::from(g.fused));
        let capacity = dim(g.capacity)?;
        let cfg = per_block((tokens as u32, 1), 512, 0);
        launch!(
            self.stream,
            &self.gpu.kernels.rope_store,
            cfg,
            q,
            k,
            v,
            cos_sin,
            k_cache,
            v_cache,
            &n_head,
            &n_head_kv,
            &head_dim,
            &n_rot,
            &neox,
            &fused,
            n_past,
            &capacity
        )
    }

    /// Dynamic shared memory of an attention block over `cells` cells, if it fits.
    fn attention_shared(&self, cells: usize, lanes: usize) -> Result<u32, CudaError> {
        let shared = attention_shared_bytes(cells, lanes);
        if shared > self.gpu.attention_shared_limit {
            return Err(CudaError::Unsupported(format!(
                "attention over {cells} positions (at most {} fit in shared memory)",
                max_attention_positions(self.gpu.attention_shared_limit, lanes)
            )));
        }
        Ok(shared as u32)
    }

    /// Attention of `tokens` queries after `*n_past` cached positions, with shared memory for
    /// attending up to `cells` cells (at least what the CPU attends after the batch).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        q: &CudaView<f32>,
        k_cache: &CudaView<u16>,
        v_cache: &CudaView<u16>,
        out: &mut CudaViewMut<f32>,
        n_past: &CudaSlice<i32>,
        geometry: &RopeGeometry,
        (tokens, cells): (usize, usize),
        (scale, lanes): (f32, usize),
    ) -> Result<(), CudaError> {
        let g = geometry;
        let shared = self.attention_shared(cells, lanes)?;
        let (n_head, n_head_kv, head_dim) = (dim(g.n_head)?, dim(g.n_head_kv)?, dim(g.head_dim)?);
        let (capacity, tokens_i, lanes) = (dim(g.capacity)?, dim(tokens)?, dim(lanes)?);
        // A decode step has one block per head: give it the widest block.
        let threads = if tokens == 1 { 1024 } else { 256 };
        let cfg = per_block((g.n_head as u32, tokens as u32), threads, shared);
        launch!(
            self.stream,
            &self.gpu.kernels.attention,
            cfg,
            q,
            k_cache,
            v_cache,
            out,
            &n_head,
            &n_head_kv,
            &head_dim,
            &capacity,
            n_past,
            &tokens_i,
            &scale,
            &lanes
        )
    }

    /// A decode step's attention split across the context (flash-decoding): the scores of
    /// every head in blocks that share its cells, into `scores` (`capacity` per head), then the
    /// softmax and the outputs in blocks that share its values. Equal to [`Launcher::attention`]
    /// of one token, bit for bit.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_split(
        &self,
        q: &CudaView<f32>,
        (k_cache, v_cache): (&CudaView<u16>, &CudaView<u16>),
        scores: &mut CudaSlice<f32>,
        out: &mut CudaViewMut<f32>,
        n_past: &CudaSlice<i32>,
        geometry: &RopeGeometry,
        (scale, lanes): (f32, usize),
    ) -> Result<(), CudaError> {
        let g = geometry;
        let shared = self.attention_shared(g.capacity, lanes)?;
        let (n_head, n_head_kv, head_dim) = (dim(g.n_head)?, dim(g.n_head_kv)?, dim(g.head_dim)?);
        let (capacity, lanes) = (dim(g.capacity)?, dim(lanes)?);
        let threads = 32 * SPLIT_ATTENTION_WARPS;
        let splits = (g.capacity as u32 / (SPLIT_ATTENTION_WARPS * 4)).clamp(1, 32);
        launch!(
            self.stream,
            &self.gpu.kernels.attention_scores,
            per_block((g.n_head as u32, splits), threads, 0),
            q,
            k_cache,
            &mut *scores,
            &n_head,
            &n_head_kv,
            &head_dim,
            &capacity,
            n_past,
            &scale,
            &lanes
        )?;
        let parts = blocks(g.head_dim, SPLIT_ATTENTION_WARPS);
        launch!(
            self.stream,
            &self.gpu.kernels.attention_values,
            per_block((g.n_head as u32, parts), threads, shared),
            &*scores,
            v_cache,
            out,
            &n_head,
            &n_head_kv,
            &head_dim,
            &capacity,
            n_past,
            &lanes
        )
    }

    pub fn silu_mul(
        &self,
        gate: &mut CudaViewMut<f32>,
        up: &CudaView<f32>,
        width: usize,
        lanes: usize,
        n: usize,
    ) -> Result<(), CudaError> {
        let (width_i, lanes, n_i) = (dim(width)?, dim(lanes)?, dim(n)?);
        launch!(
            self.stream,
            &self.gpu.kernels.silu_mul,
            elementwise(n),
            gate,
            up,
            &width_i,
            &lanes,
            &n_i
        )
    }

    pub fn relu_sqr_mul(
        &self,
        gate: &mut CudaViewMut<f32>,
        up: &CudaView<f32>,
        n: usize,
    ) -> Result<(), CudaError> {
        let n_i = dim(n)?;
        launch!(
            self.stream,
            &self.gpu.kernels.relu_sqr_mul,
            elementwise(n),
            gate,
            up,
            &n_i
        )
    }

    /// The device's share of a pick from `row` (see `PickBuffers`): `work` holds the
    /// penalized row, the candidates go to `candidates` as `(token, logit bits)` pairs (at most
    /// `cap`), and `result` says what was picked.
    pub fn pick(
        &self,
        row: &CudaView<f32>,
        work: &mut CudaSlice<f32>,
        penalized: &CudaSlice<u32>,
        args: &PickArgs,
        (candidates, cap): (&mut CudaSlice<u32>, usize),
        result: &mut CudaSlice<i32>,
    ) -> Result<(), CudaError> {
        let (n, cap) = (dim(row.len())?, dim(cap)?);
        launch!(
            self.stream,
            &self.gpu.kernels.pick,
            per_block((1, 1), PICK_THREADS, 0),
            row,
            &n,
            work,
            penalized,
            &args.n_penalized,
            &args.penalty,
            &args.mode,
            &args.k,
            &args.p,
            &args.offset,
            &args.temperature,
            &args.unit,
            candidates,
            &cap,
            result
        )
    }

    /// The index of the largest of `n` values (the first on ties) into `best`, as a key that
    /// [`argmax_index`] decodes.
    pub fn argmax(
        &self,
        row: &CudaView<f32>,
        n: usize,
        best: &mut CudaSlice<u64>,
    ) -> Result<(), CudaError> {
        self.stream
            .memset_zeros(best)
            .map_err(driver("clearing the argmax"))?;
        let n_i = dim(n)?;
        let cfg = per_block((blocks(n, 256 * 16).max(1), 1), 256, 0);
        launch!(self.stream, &self.gpu.kernels.argmax, cfg, row, &n_i, best)
    }
}

/// The scalar arguments of the `pick` kernel.
pub(crate) struct PickArgs {
    pub n_penalized: i32,
    pub penalty: f32,
    /// `PICK_*` in kernels.cu.
    pub mode: i32,
    pub k: i32,
    pub p: f32,
    pub offset: f32,
    pub temperature: f32,
    pub unit: f64,
}

/// The index an argmax key holds (0 when every value was NaN).
pub(crate) fn argmax_index(key: u64) -> u32 {
    if key == 0 {
        0
    } else {
        u32::MAX - key as u32
    }
}

/// One token's I8_S activations on the device: codes, scale and code sum.
pub(crate) struct I8sCodes<'a, 'b> {
    pub codes: &'a CudaView<'b, i8>,
    pub scale: &'a CudaView<'b, f32>,
    pub sum: &'a CudaView<'b, i32>,
}

/// An I2_S matrix on the device: repacked codes, per-tensor scale, optional output scale.
pub(crate) struct I2sMatrixRef<'a> {
    pub codes: &'a CudaSlice<u32>,
    pub w_scale: f32,
    pub out_scale: Option<f32>,
}

/// One matrix of a one-token I2_S launch and where its `rows` results go.
pub(crate) struct I2sRows<'a, 'b> {
    pub matrix: I2sMatrixRef<'a>,
    pub rows: usize,
    pub out: &'a mut CudaViewMut<'b, f32>,
}

/// The evaluation order of a dense product, as the CPU picks it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DenseOrder {
    /// tinyBLAS's one accumulator per token (two or more tokens, rows a multiple of `lanes`);
    /// otherwise ggml_vec_dot's four accumulators, f16 activations rounded first.
    pub tiled: bool,
    /// Lanes of the reference build.
    pub lanes: usize,
}

/// Where the rotated queries and keys of a batch go: head geometry, rotation, cache size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RopeGeometry {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub neox: bool,
    pub fused: bool,
    pub capacity: usize,
}

/// Cells the CPU (and the reference) attend after `end` positions: `end` rounded up to
/// [`KV_PAD`], at most the padded `capacity`.
pub(crate) fn attended_cells(end: usize, capacity: usize) -> usize {
    end.next_multiple_of(KV_PAD).min(capacity)
}

/// Dynamic shared memory of one attention block over `n_kv` cells (a multiple of `lanes`).
pub(crate) fn attention_shared_bytes(n_kv: usize, lanes: usize) -> usize {
    (n_kv + n_kv.div_ceil(lanes)) * size_of::<f32>()
}

/// The most positions whose attention fits in `limit` bytes of shared memory.
pub(crate) fn max_attention_positions(limit: usize, lanes: usize) -> usize {
    let per_group = (lanes + 1) * size_of::<f32>();
    limit / per_group * lanes
}
