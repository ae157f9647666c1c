//! Matrix-vector and matrix-matrix products over the dot-product kernels, parallel over output rows.

mod block_quant;

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use half::f16;

use super::dense::{round_to_f16, DenseMatrix};
use super::error::{expect_len, KernelError};
use super::reduce::ReduceWidth;
use super::table::{DotKernels, SCALAR_QUADS};
use super::team::Team;
use super::Isa;
use crate::formats::{
    FpContract, I2sLayout, I2sMatrix, I8sActivations, Q8kActivations, Tl1Activations, Tl1Matrix,
    Tl2Activations, Tl2Matrix, TqKind, TqMatrix,
};

/// Numerical choices that the reference makes at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Numerics {
    /// How `a · b + c` in the reference's C is evaluated (see [`FpContract`]).
    pub contract: FpContract,
    /// The lane layout of the reference's float dot products (see [`ReduceWidth`]).
    pub width: ReduceWidth,
}

impl Numerics {
    /// What a reference built with `-march=native` by clang (no contraction) computes on this CPU.
    pub fn native() -> Self {
        Numerics {
            contract: FpContract::Off,
            width: ReduceWidth::native(),
        }
    }
}

/// The I2_S epilogue of the reference's `mul_mat`: `(dot − Σq) / s_a · s_w`, all in f32, in that order.
#[inline]
pub fn i2s_epilogue(dot: i32, act_sum: i32, act_scale: f32, weight_scale: f32) -> f32 {
    (dot as f32 - act_sum as f32) / act_scale * weight_scale
}

/// The longest f16 rows that one-token products take two at a time.
const SHORT_F16_ROW: usize = 256;

/// The CPU kernels of one ISA with a thread count.
///
/// Every product writes `out[token · rows + row]`. Results do not depend on the thread count: each
/// output is computed by one dot product.
#[derive(Debug, Clone)]
pub struct CpuKernels {
    isa: Isa,
    dots: &'static DotKernels,
    team: Option<Arc<Team>>,
    numerics: Numerics,
    /// The spans of the one-token products met so far, by their parts' row counts and chunk
    /// size: a layer's products repeat the same few shapes, token after token.
    splits: Arc<Mutex<Vec<Arc<StreamingSplit>>>>,
}

/// A one-token product's [`streaming_spans`] for parts of `rows` rows in chunks of `per_chunk`.
#[derive(Debug)]
struct StreamingSplit {
    rows: Vec<usize>,
    per_chunk: usize,
    spans: Vec<(usize, Range<usize>)>,
    runs: Vec<usize>,
}

impl CpuKernels {
    /// Kernels of `isa` running on `threads` threads (0 or 1: on the calling thread).
    pub fn new(isa: Isa, threads: usize) -> Result<Self, KernelError> {
        let team = match threads > 1 {
            true => Some(Arc::new(Team::new(threads)?)),
            false => None,
        };
        Self::build(isa, team)
    }

    /// Kernels of `isa` running on an existing team of threads.
    pub fn with_team(isa: Isa, team: Arc<Team>) -> Result<Self, KernelError> {
        Self::build(isa, Some(team))
    }

    /// The fastest ISA of this CPU on `threads` threads.
    pub fn best(threads: usize) -> Result<Self, KernelError> {
        Self::new(Isa::best(), threads)
    }

    fn build(isa: Isa, team: Option<Arc<Team>>) -> Result<Self, KernelError> {
        let dots = isa.dots().ok_or(KernelError::IsaUnsupported { isa })?;
        Ok(CpuKernels {
            isa,
            dots,
            team,
            numerics: Numerics::native(),
            splits: Arc::default(),
        })
    }

    /// The same kernels with other numerics.
    pub fn with_numerics(mut self, numerics: Numerics) -> Self {
        self.numerics = numerics;
        self
    }

    /// The ISA.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The numerics.
    pub fn numerics(&self) -> Numerics {
        self.numerics
    }

    /// Threads the products run on.
    pub fn threads(&self) -> usize {
        self.team.as_ref().map_or(1, |team| team.threads())
    }

    /// The same kernels on the calling thread only, for work that is already split over the team.
    pub fn serial(&self) -> Self {
        CpuKernels {
            team: None,
            ..self.clone()
        }
    }

    /// `f(i)` for `i` in `0..n`, in parallel on the team (in order on the calling thread without
    /// one), collected in order.
    pub fn map_parallel<T: Send>(&self, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
        self.map_each((0..n).collect(), f)
    }

    /// `f(item)` for every item, in parallel on the team (in order on the calling thread without
    /// one), thread `t` starting on the `t`-th of equal runs of items; the results in item order.
    pub fn map_each<I: Send, R: Send>(&self, items: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
        match &self.team {
            Some(team) => team.map(items, f),
            None => items.into_iter().map(f).collect(),
        }
    }

    /// `f(first_row, chunk)` over chunks of whole `width`-value rows of `data`, in parallel on
    /// the team when every thread gets `ROWS_PER_THREAD` (4) rows or more (else in one chunk on the
    /// calling thread); the results in row order.
    pub fn map_row_chunks<T: Send, R: Send>(
        &self,
        data: &mut [T],
        width: usize,
        f: impl Fn(usize, &mut [T]) -> R + Sync,
    ) -> Vec<R> {
        let (rows, threads) = (data.len().checked_div(width).unwrap_or(0), self.threads());
        match threads > 1 && rows >= ROWS_PER_THREAD * threads {
            true => self.row_chunks(data, width, rows.div_ceil(4 * threads), f),
            false => vec![f(0, data)],
        }
    }

    /// `f(first_row, chunk)` over chunks of `per_chunk` whole `width`-value rows of `data`, in
    /// parallel on the team (in one chunk on the calling thread without one); the results in
    /// row order.
    fn row_chunks<T: Send, R: Send>(
        &self,
        data: &mut [T],
        width: usize,
        per_chunk: usize,
        f: impl Fn(usize, &mut [T]) -> R + Sync,
    ) -> Vec<R> {
        let per_chunk = per_chunk.max(1);
        match &self.team {
            Some(_) if width > 0 => {
                let chunks = data.chunks_mut(per_chunk * width).enumerate().collect();
                self.map_each(chunks, |(i, chunk)| f(i * per_chunk, chunk))
            }
            _ => vec![f(0, data)],
        }
    }

    /// The dot-product table.
    pub fn dots(&self) -> &'static DotKernels {
        self.dots
    }

    /// The layout of I2_S rows these kernels read fastest: [`I2sLayout::Quads`] where the table
    /// has kernels for it.
    pub fn preferred_i2s_layout(&self) -> I2sLayout {
        self.dots
            .i2s_quads
            .map_or(I2sLayout::Rows, |_| I2sLayout::Quads)
    }

    /// I2_S × I8_S for one token: `out[row]` as the reference's `mul_mat` computes it.
    pub fn i2s_gemv(
        &self,
        w: &I2sMatrix,
        x: &I8sActivations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        expect_len("i2_s gemv tokens", 1, x.tokens())?;
        self.i2s_gemm(w, x, out)
    }

    /// I2_S × I8_S for every token of `x`.
    ///
    /// The integer dot product is exact (i32); the reference's AVX2 kernel sums 32 blocks in i16
    /// lanes and wraps on extreme inputs, where the results differ (see the module docs).
    pub fn i2s_gemm(
        &self,
        w: &I2sMatrix,
        x: &I8sActivations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        expect_len("i2_s activation width", shape.ne0, x.k())?;
        expect_len("i2_s output length", shape.ne1 * x.tokens(), out.len())?;
        let (rows, tokens) = (shape.ne1, x.tokens());
        if out.is_empty() {
            return Ok(());
        }
        // Tokens go in blocks whose activations stay in L1 while a chunk's rows pass over them,
        // and rows in runs small enough to stay in L1 across a block's groups of four tokens;
        // each run is one kernel call per group.
        if tokens == 1 {
            return self.i2s_gemv_each(std::slice::from_ref(w), x, &mut [out]);
        }
        let block = i2s_token_block(shape.ne0);
        let threads = self.threads();
        if threads > 1 && tokens < I2S_TOKENS_PER_THREAD * threads {
            self.for_each_run_blocked(rows, tokens, block, out, |first_row, span, chunk| {
                for (run, run_out) in chunk.chunks_mut(I2S_RUN_ROWS * tokens).enumerate() {
                    let (first, n) = (first_row + run * I2S_RUN_ROWS, run_out.len() / tokens);
                    self.i2s_run(w, x, first..first + n, span.clone(), |r, t, v| {
                        run_out[r * tokens + t] = v
                    });
                }
            });
            return Ok(());
        }
        // Enough tokens for every thread: each takes its own tokens over all rows and writes
        // them token-major, so no row-major scratch is needed.
        let row_chunk = i2s_row_chunk(shape.ne0);
        let per_thread = tokens.div_ceil(threads).next_multiple_of(4);
        self.row_chunks(out, rows, per_thread, |first_token, chunk| {
            let end = first_token + chunk.len() / rows;
            for chunk_rows in (0..rows).step_by(row_chunk) {
                let chunk_end = (chunk_rows + row_chunk).min(rows);
                for first in (first_token..end).step_by(block) {
                    let span = first..(first + block).min(end);
                    for run in (chunk_rows..chunk_end).step_by(I2S_RUN_ROWS) {
                        let run_rows = run..(run + I2S_RUN_ROWS).min(chunk_end);
                        self.i2s_run(w, x, run_rows, span.clone(), |r, t, v| {
                            chunk[(t - first_token) * rows + run + r] = v
                        });
                    }
                }
            }
        });
        Ok(())
    }

    /// [`Self::i2s_gemm`] of several matrices of one width with one token, `outs[i]` receiving
    /// `ws[i] · x`: the rows of all of them share one dispatch over the team, so the smaller
    /// ones (a layer's K and V beside its Q) do not each wait for a round trip of the threads,
    /// in chunks sized by all their rows together, so the smaller ones are not cut into many
    /// tiny jobs either.
    pub fn i2s_gemv_each(
        &self,
        ws: &[I2sMatrix<'_>],
        x: &I8sActivations,
        outs: &mut [&mut [f32]],
    ) -> Result<(), KernelError> {
        expect_len("i2_s gemv tokens", 1, x.tokens())?;
        expect_len("i2_s gemv outputs", ws.len(), outs.len())?;
        for (w, out) in ws.iter().zip(outs.iter()) {
            expect_len("i2_s activation width", w.shape().ne0, x.k())?;
            expect_len("i2_s output length", w.shape().ne1, out.len())?;
        }
        let run = |w: &I2sMatrix, first_row: usize, chunk: &mut [f32]| {
            for (run, run_out) in chunk.chunks_mut(I2S_RUN_ROWS).enumerate() {
                let first = first_row + run * I2S_RUN_ROWS;
                self.i2s_run(w, x, first..first + run_out.len(), 0..1, |r, _, v| {
                    run_out[r] = v
                });
            }
        };
        self.streaming_each(outs, x.k() / 4, |k, first, chunk| run(&ws[k], first, chunk));
        Ok(())
    }

    /// `f(part, first_row, chunk)` over the rows of a one-token product whose outputs are
    /// `outs` (one value per row of each part, `row_bytes` bytes of weights per row), in
    /// [`streaming_spans`] over the team (each part whole on the calling thread without one).
    fn streaming_each(
        &self,
        outs: &mut [&mut [f32]],
        row_bytes: usize,
        f: impl Fn(usize, usize, &mut [f32]) + Sync,
    ) {
        match &self.team {
            Some(team) => {
                let split = self.streaming_split(team.threads(), outs, row_bytes);
                team.for_each_span(outs, &split.spans, &split.runs, f);
            }
            None => outs
                .iter_mut()
                .enumerate()
                .for_each(|(k, out)| f(k, 0, out)),
        }
    }

    /// The [`streaming_spans`] of a one-token product over `threads` whose outputs are `outs`,
    /// from the ones met before where it has the same shape.
    fn streaming_split(
        &self,
        threads: usize,
        outs: &[&mut [f32]],
        row_bytes: usize,
    ) -> Arc<StreamingSplit> {
        let total = outs.iter().map(|out| out.len()).sum();
        let per_chunk = streaming_rows_per_chunk(total, threads, row_bytes);
        let same = |split: &StreamingSplit| {
            split.per_chunk == per_chunk
                && split.rows.len() == outs.len()
                && split
                    .rows
                    .iter()
                    .zip(outs)
                    .all(|(&rows, out)| rows == out.len())
        };
        let mut splits = self.splits.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(split) = splits.iter().find(|split| same(split)) {
            return split.clone();
        }
        let rows: Vec<usize> = outs.iter().map(|out| out.len()).collect();
        let (spans, runs) = streaming_spans(&rows, threads, per_chunk);
        let split = Arc::new(StreamingSplit {
            rows,
            per_chunk,
            spans,
            runs,
        });
        if splits.len() == MAX_SPLITS {
            splits.remove(0);
        }
        splits.push(split.clone());
        split
    }

    /// The products of the I2_S rows `rows` (at most [`I2S_RUN_ROWS`]) with the tokens of
    /// `span`, four tokens per kernel call where the ISA has such a kernel, each handed to
    /// `store(row − rows.start, token, value)`. Rows grouped in fours are read by the table's
    /// kernels for that layout (the scalar ones where it has none); every run starts at a group,
    /// as every chunk of rows starts at a multiple of four.
    fn i2s_run(
        &self,
        w: &I2sMatrix,
        x: &I8sActivations,
        rows: Range<usize>,
        span: Range<usize>,
        mut store: impl FnMut(usize, usize, f32),
    ) {
        let (scales, sums, w_scale) = (x.scales(), x.sums(), w.scale());
        let epilogue = |d: i32, token: usize| i2s_epilogue(d, sums[token], scales[token], w_scale);
        let (width, n) = (w.shape().ne0 / 4, rows.len());
        let codes = &w.codes()[rows.start * width..rows.end * width];
        let (one, four) = match w.layout() {
            I2sLayout::Rows => (self.dots.i2s_rows, self.dots.i2s_rows_x4),
            I2sLayout::Quads => {
                assert!(
                    rows.start.is_multiple_of(4),
                    "a run of grouped i2_s rows starts inside a group"
                );
                let quads = self.dots.i2s_quads.unwrap_or(SCALAR_QUADS);
                (quads.rows, Some(quads.rows_x4))
            }
        };
        let mut t = span.start;
        if let Some(rows_x4) = four {
            let mut dots = [[0i32; 4]; I2S_RUN_ROWS];
            while t + 4 <= span.end {
                let acts = std::array::from_fn(|j| x.token_codes(t + j));
                rows_x4(codes, acts, &mut dots[..n]);
                for (r, d) in dots[..n].iter().enumerate() {
                    for (j, &d) in d.iter().enumerate() {
                        store(r, t + j, epilogue(d, t + j));
                    }
                }
                t += 4;
            }
        }
        let mut dots = [0i32; I2S_RUN_ROWS];
        for t in t..span.end {
            one(codes, x.token_codes(t), &mut dots[..n]);
            for (r, &d) in dots[..n].iter().enumerate() {
                store(r, t, epilogue(d, t));
            }
        }
    }

    /// TQ1_0/TQ2_0 × Q8_K for one token.
    pub fn tq_gemv(
        &self,
        w: &TqMatrix,
        x: &Q8kActivations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        expect_len("tq gemv tokens", 1, x.tokens())?;
        self.tq_gemm(w, x, out)
    }

    /// TQ1_0/TQ2_0 × Q8_K for every token of `x`, as `ggml_vec_dot_tq*_q8_K` (AVX2 order).
    pub fn tq_gemm(
        &self,
        w: &TqMatrix,
        x: &Q8kActivations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        expect_len("tq activation width", shape.ne0, x.k())?;
        expect_len("tq output length", shape.ne1 * x.tokens(), out.len())?;
        let dot = match w.kind() {
            TqKind::Tq1_0 => self.dots.tq1,
            TqKind::Tq2_0 => self.dots.tq2,
        };
        let contract = self.numerics.contract;
        self.for_each_output(shape.ne1, x.tokens(), out, |row, token| {
            dot(w.row(row), x.token_blocks(token), contract)
        });
        Ok(())
    }

    /// TL2 × its lookup tables for every token of `x`, as bitnet.cpp's generated TL2 kernels
    /// compute one token: `(Σ code · q) as f32 / s_a · s_w`. The reference's batched TL2 path is not
    /// used: tokens are independent, each exactly as the reference computes a single token.
    pub fn tl2_gemm(
        &self,
        w: &Tl2Matrix,
        x: &Tl2Activations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        let tokens = x.tokens();
        expect_len("tl2 activation width", shape.ne0, x.k())?;
        expect_len("tl2 three-weight columns", w.three_cols(), x.three_cols())?;
        expect_len("tl2 output length", shape.ne1 * tokens, out.len())?;
        let (dot, w_scale, scales) = (self.dots.tl2, w.scale(), x.scales());
        self.for_each_block(32, w.blocks(), tokens, out, |block, token, values| {
            let sums = dot(&w.block(block), x.three(token), x.two(token));
            for (o, sum) in values.iter_mut().zip(sums) {
                *o = sum as f32 / scales[token] * w_scale;
            }
        });
        Ok(())
    }

    /// TL1 × its lookup tables for every token of `x`, as bitnet.cpp's generated TL1 kernels
    /// compute one token: `(Σ code · q) as f32 / s_a · s_w`. The reference multiplies batches of
    /// TL1 weights as if they were f32 (a defect of its batched path), so tokens are computed
    /// independently, each exactly as the reference computes a single token.
    pub fn tl1_gemm(
        &self,
        w: &Tl1Matrix,
        x: &Tl1Activations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        expect_len("tl1 activation width", shape.ne0, x.k())?;
        expect_len("tl1 output length", shape.ne1 * x.tokens(), out.len())?;
        let (dot, w_scale, scales) = (self.dots.tl1, w.scale(), x.scales());
        let rows = w.tiling().simd_rows;
        self.for_each_block(rows, w.blocks(), x.tokens(), out, |block, token, values| {
            let mut sums = [0i32; 64];
            dot(&w.block(block), x.tables(token), &mut sums[..rows]);
            for (o, sum) in values.iter_mut().zip(sums) {
                *o = sum as f32 / scales[token] * w_scale;
            }
        });
        Ok(())
    }

    /// f16 weights × one f32 token: the activations are rounded to f16 first (`ggml_vec_dot_f16`).
    pub fn f16_gemv(
        &self,
        w: &DenseMatrix<f16>,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        expect_len("f16 gemv activation length", w.shape().ne0, x.len())?;
        self.f16_gemm(w, x, out)
    }

    /// f16 weights × f32 tokens as the reference dispatches them: with two or more tokens and
    /// `ne0` a multiple of the lane count, tinyBLAS (f32 activations, one accumulator); otherwise
    /// `ggml_vec_dot_f16` on activations rounded to f16.
    pub fn f16_gemm(
        &self,
        w: &DenseMatrix<f16>,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        let tokens = self.tokens(shape.ne0, x, out, shape.ne1)?;
        let width = self.numerics.width;
        if tokens >= 2 && shape.ne0.is_multiple_of(width.lanes()) {
            let (dot, dot_x4) = (self.dots.f16_tiled, self.dots.f16_tiled_x4);
            self.for_each_row(shape.ne1, tokens, out, |row, row_out| {
                let (w_row, mut token) = (w.row(row), 0);
                if let Some(dot_x4) = dot_x4 {
                    for quad in row_out.chunks_exact_mut(4) {
                        let ys = std::array::from_fn(|i| token_of(x, shape.ne0, token + i));
                        quad.copy_from_slice(&dot_x4(w_row, ys, width));
                        token += 4;
                    }
                }
                for (t, o) in row_out.iter_mut().enumerate().skip(token) {
                    *o = dot(w_row, token_of(x, shape.ne0, t), width);
                }
            });
        } else if tokens == 1 {
            let y = round_to_f16(x);
            self.streaming_each(&mut [out], 2 * shape.ne0, |_, first_row, chunk| {
                let rows = first_row..first_row + chunk.len();
                self.f16_vec_rows_with(rows, w, &y, |r, v| chunk[r] = v);
            });
        } else {
            let rounded = round_to_f16(x);
            self.for_each_run_blocked(shape.ne1, tokens, tokens, out, |first_row, _, chunk| {
                let n_rows = chunk.len() / tokens;
                for token in 0..tokens {
                    let y = token_of(&rounded, shape.ne0, token);
                    self.f16_vec_rows_with(first_row..first_row + n_rows, w, y, |r, v| {
                        chunk[r * tokens + token] = v
                    });
                }
            });
        }
        Ok(())
    }

    /// `outs[v][row] = ggml_vec_dot_f16(w.row(row), ys[v])` for every row of `w` and each vector
    /// of `ys` (already rounded to f16), on the calling thread: each row is read once for all the
    /// vectors (grouped-query attention's keys and values against the heads sharing them).
    pub fn f16_vec_rows_each(
        &self,
        w: &DenseMatrix<f16>,
        ys: &[&[f16]],
        outs: &mut [&mut [f32]],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        expect_len("f16 rows outputs", ys.len(), outs.len())?;
        for (y, out) in ys.iter().zip(outs.iter()) {
            expect_len("f16 rows activation length", shape.ne0, y.len())?;
            expect_len("f16 rows output length", shape.ne1, out.len())?;
        }
        if let ([y], [out]) = (ys, &mut *outs) {
            self.f16_vec_rows_with(0..shape.ne1, w, y, |r, v| out[r] = v);
            return Ok(());
        }
        let width = self.numerics.width;
        let mut v = 0;
        if let Some(rows_x4) = self.dots.f16_rows_x4 {
            let mut quad_out = vec![[0f32; 4]; shape.ne1];
            while v + 4 <= ys.len() {
                rows_x4(
                    w,
                    [ys[v], ys[v + 1], ys[v + 2], ys[v + 3]],
                    &mut quad_out,
                    width,
                );
                for (i, out) in outs[v..v + 4].iter_mut().enumerate() {
                    for (o, values) in out.iter_mut().zip(&quad_out) {
                        *o = values[i];
                    }
                }
                v += 4;
            }
        }
        if v == ys.len() {
            return Ok(());
        }
        // The dot product is symmetric, so the two-row kernel takes two vectors as its rows and
        // the matrix row as its vector.
        let (x2, dot) = (self.dots.f16_vec_x2, self.dots.f16_vec);
        for r in 0..shape.ne1 {
            let row = w.row(r);
            let mut v = v;
            if let Some(x2) = x2 {
                while v + 2 <= ys.len() {
                    let [a, b] = x2([ys[v], ys[v + 1]], row, width);
                    (outs[v][r], outs[v + 1][r]) = (a, b);
                    v += 2;
                }
            }
            for (y, out) in ys.iter().zip(outs.iter_mut()).skip(v) {
                out[r] = dot(row, y, width);
            }
        }
        Ok(())
    }

    /// Stores `ggml_vec_dot_f16(w.row(first + r), y)` as `store(r, value)` for the rows of
    /// `rows` (`first` its start).
    fn f16_vec_rows_with(
        &self,
        rows: Range<usize>,
        w: &DenseMatrix<f16>,
        y: &[f16],
        mut store: impl FnMut(usize, f32),
    ) {
        let width = self.numerics.width;
        // Short rows (attention's keys) wait on the multiply-adds, which two rows at a time
        // overlap; long rows wait on memory, and stream best one at a time.
        let dot_x2 = self.dots.f16_vec_x2.filter(|_| y.len() <= SHORT_F16_ROW);
        let dot = self.dots.f16_vec;
        let (first, n_rows) = (rows.start, rows.len());
        let mut row = 0;
        if let Some(dot_x2) = dot_x2 {
            while row + 2 <= n_rows {
                let pair = [w.row(first + row), w.row(first + row + 1)];
                let [a, b] = dot_x2(pair, y, width);
                store(row, a);
                store(row + 1, b);
                row += 2;
            }
        }
        for r in row..n_rows {
            store(r, dot(w.row(first + r), y, width));
        }
    }

    /// f32 weights × one f32 token (`ggml_vec_dot_f32`).
    pub fn f32_gemv(
        &self,
        w: &DenseMatrix<f32>,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        expect_len("f32 gemv activation length", w.shape().ne0, x.len())?;
        self.f32_gemm(w, x, out)
    }

    /// f32 weights × f32 tokens as the reference dispatches them (tinyBLAS for two or more tokens
    /// when `ne0` is a multiple of the lane count, `ggml_vec_dot_f32` otherwise).
    pub fn f32_gemm(
        &self,
        w: &DenseMatrix<f32>,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        let tokens = self.tokens(shape.ne0, x, out, shape.ne1)?;
        let width = self.numerics.width;
        if tokens >= 2 && shape.ne0.is_multiple_of(width.lanes()) {
            let dot = self.dots.f32_tiled;
            self.for_each_output(shape.ne1, tokens, out, |row, token| {
                dot(w.row(row), token_of(x, shape.ne0, token), width)
            });
        } else {
            let dot = self.dots.f32_vec;
            self.for_each_output(shape.ne1, tokens, out, |row, token| {
                dot(w.row(row), token_of(x, shape.ne0, token), width)
            });
        }
        Ok(())
    }

    /// Checks dense operands and returns the token count.
    fn tokens(&self, k: usize, x: &[f32], out: &[f32], rows: usize) -> Result<usize, KernelError> {
        if k == 0 || !x.len().is_multiple_of(k) {
            return Err(KernelError::Mismatch {
                what: "dense activation length (a multiple of ne0)",
                expected: k,
                actual: x.len(),
            });
        }
        let tokens = x.len() / k;
        expect_len("dense output length", rows * tokens, out.len())?;
        Ok(tokens)
    }

    /// Fills `out[token · rows + row] = f(row, token)`, splitting rows over the team.
    fn for_each_output<F>(&self, rows: usize, tokens: usize, out: &mut [f32], f: F)
    where
        F: Fn(usize, usize) -> f32 + Sync,
    {
        self.for_each_row(rows, tokens, out, |row, row_out| {
            for (token, o) in row_out.iter_mut().enumerate() {
                *o = f(row, token);
            }
        });
    }

    /// Runs `f(row, outputs)` for every weight row, `outputs` holding the row's value for each
    /// token, and stores them token-major in `out`.
    fn for_each_row<F>(&self, rows: usize, tokens: usize, out: &mut [f32], f: F)
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        self.for_each_row_blocked(rows, tokens, tokens, out, |row, _, row_out| f(row, row_out));
    }

    /// [`Self::for_each_row`] with the tokens taken `block` at a time: `f(row, first, outputs)`
    /// fills the row's outputs for tokens `first..first + outputs.len()`, and every row of a
    /// chunk is visited for one block of tokens before the next block.
    fn for_each_row_blocked<F>(
        &self,
        rows: usize,
        tokens: usize,
        block: usize,
        out: &mut [f32],
        f: F,
    ) where
        F: Fn(usize, usize, &mut [f32]) + Sync,
    {
        self.for_each_run_blocked(rows, tokens, block, out, |first_row, span, chunk| {
            for (i, row_out) in chunk.chunks_exact_mut(tokens).enumerate() {
                f(first_row + i, span.start, &mut row_out[span.clone()]);
            }
        });
    }

    /// Runs `f(first_row, span, chunk)` over chunks of whole rows for each block of `block`
    /// tokens: `chunk` holds the chunk's rows row-major (`tokens` values per row) and `f` fills
    /// the tokens of `span`. The values are stored token-major in `out`.
    fn for_each_run_blocked<F>(
        &self,
        rows: usize,
        tokens: usize,
        block: usize,
        out: &mut [f32],
        f: F,
    ) where
        F: Fn(usize, Range<usize>, &mut [f32]) + Sync,
    {
        if tokens == 1 {
            self.split_rows(out, 1, rows, |first_row, chunk| f(first_row, 0..1, chunk));
            return;
        }
        // Row-major scratch keeps each weight row hot across a block of tokens.
        let mut by_row = vec![0f32; rows * tokens];
        self.split_rows(&mut by_row, tokens, rows, |first_row, chunk| {
            for first in (0..tokens).step_by(block.max(1)) {
                f(first_row, first..(first + block).min(tokens), chunk);
            }
        });
        // Back to token-major order, in parallel over tokens and in blocks of rows, so each
        // block's scratch lines stay cached while its tokens are written.
        self.split_rows(out, rows, tokens, |first_token, chunk| {
            for first_row in (0..rows).step_by(TRANSPOSE_ROWS) {
                let end = (first_row + TRANSPOSE_ROWS).min(rows);
                for (i, token_out) in chunk.chunks_exact_mut(rows).enumerate() {
                    let token = first_token + i;
                    for (row, o) in token_out[first_row..end].iter_mut().enumerate() {
                        *o = by_row[(first_row + row) * tokens + token];
                    }
                }
            }
        });
    }

    /// Runs `f(block, token, outputs)` for every block of `block_rows` rows and every token,
    /// `outputs` holding the block's values for the token, and stores them token-major in `out`
    /// (`blocks · block_rows` values per token).
    fn for_each_block<F>(
        &self,
        block_rows: usize,
        blocks: usize,
        tokens: usize,
        out: &mut [f32],
        f: F,
    ) where
        F: Fn(usize, usize, &mut [f32]) + Sync,
    {
        let rows = block_rows * blocks;
        let mut by_block = vec![0f32; rows * tokens];
        self.split_rows(
            &mut by_block,
            block_rows * tokens,
            blocks,
            |first, chunk| {
                for (i, block_out) in chunk.chunks_exact_mut(block_rows * tokens).enumerate() {
                    for (token, token_out) in block_out.chunks_exact_mut(block_rows).enumerate() {
                        f(first + i, token, token_out);
                    }
                }
            },
        );
        for (block, values) in by_block.chunks_exact(block_rows * tokens).enumerate() {
            for (token, block_values) in values.chunks_exact(block_rows).enumerate() {
                let start = token * rows + block_rows * block;
                out[start..start + block_rows].copy_from_slice(block_values);
            }
        }
    }

    /// Runs `body(first_row, chunk)` over chunks of whole rows (`per_row` values each).
    fn split_rows<B>(&self, data: &mut [f32], per_row: usize, rows: usize, body: B)
    where
        B: Fn(usize, &mut [f32]) + Sync,
    {
        if rows == 0 || per_row == 0 {
            return;
        }
        match &self.team {
            None => body(0, data),
            Some(team) => {
                let rows_per_chunk = rows_per_chunk(rows, team.threads());
                team.for_each_chunk(&mut [data], rows_per_chunk * per_row, |_, first, chunk| {
                    body(first / per_row, chunk)
                });
            }
        }
    }
}

/// Rows per chunk when a product's `rows` are split over `threads` threads: eight chunks per
/// thread, claimed one at a time so that the threads finish close together, and a multiple of
/// four rows, so that every chunk of I2_S rows grouped in fours starts at a group.
fn rows_per_chunk(rows: usize, threads: usize) -> usize {
    (rows / (threads * 8)).max(4) / 4 * 4
}

/// Rows per chunk of a one-token product whose rows are `row_bytes` long: chunks of about
/// [`STREAMING_CHUNK_BYTES`], so that the threads, each streaming its own run of chunks back to
/// back, finish within a few microseconds of each other, at least eight per thread, and a
/// multiple of four rows.
fn streaming_rows_per_chunk(rows: usize, threads: usize, row_bytes: usize) -> usize {
    let by_bytes = (STREAMING_CHUNK_BYTES / row_bytes.max(1)).max(4) / 4 * 4;
    rows_per_chunk(rows, threads).min(by_bytes)
}

/// The spans of rows `(part, rows)` of a one-token product over `parts` (their row counts, the
/// parts' rows one after another) for a team of `threads`, and where each thread's run of
/// spans starts (`threads + 1` values, the last the number of spans): each thread an equal share
/// of the rows, cut into chunks of `per_chunk` rows, the last ones of each share halving down to
/// [`I2S_RUN_ROWS`] so that the threads finish close together. No span crosses into the next
/// part, and every one starts at a multiple of four rows of its part.
fn streaming_spans(
    parts: &[usize],
    threads: usize,
    per_chunk: usize,
) -> (Vec<(usize, Range<usize>)>, Vec<usize>) {
    let total: usize = parts.iter().sum();
    let per_chunk = per_chunk.max(I2S_RUN_ROWS);
    let mut spans = Vec::new();
    let mut runs = vec![0];
    // Where in its part each row of the product is, and where each thread's share ends.
    let (mut part, mut at, mut done) = (0, 0, 0);
    for t in 1..=threads {
        let mut left = (t * total / threads).saturating_sub(done);
        while left > 0 {
            // Skip the ends of parts.
            while at == parts[part] {
                (part, at) = (part + 1, 0);
            }
            let chunk = match left > 2 * per_chunk {
                true => per_chunk,
                false => left.div_ceil(2).next_multiple_of(4).max(I2S_RUN_ROWS),
            };
            let len = chunk.min(left).min(parts[part] - at);
            // Every span but the last of a part ends on a multiple of four rows.
            let len = match at + len == parts[part] {
                true => len,
                false => (len / 4 * 4).max(4).min(parts[part] - at),
            };
            spans.push((part, at..at + len));
            at += len;
            done += len;
            left = left.saturating_sub(len);
        }
        runs.push(spans.len());
    }
    (spans, runs)
}

/// One-token product shapes whose spans [`CpuKernels`] keeps (a layer has five; the output head
/// one more).
const MAX_SPLITS: usize = 16;

/// Bytes of weights per chunk of a one-token product.
const STREAMING_CHUNK_BYTES: usize = 256 * 1024;

/// Rows (tokens) each thread needs before a row-wise step is split over the team.
const ROWS_PER_THREAD: usize = 4;

/// Tokens each thread needs before an I2_S product splits its tokens, not its rows, over the
/// team.
const I2S_TOKENS_PER_THREAD: usize = 16;

/// Rows of an I2_S product that a thread passes over one block of tokens at a time: about
/// 192 KiB of codes, which stay in L2 across the blocks.
fn i2s_row_chunk(k: usize) -> usize {
    (192 * 1024 / (k / 4).max(1)).next_multiple_of(I2S_RUN_ROWS)
}

/// Rows per I2_S kernel call: 16 rows of a 2560-wide matrix are 10 KiB, which stay in L1 while a
/// block's groups of tokens pass over them.
const I2S_RUN_ROWS: usize = 16;

/// Rows per block when row-major products are put back in token-major order.
const TRANSPOSE_ROWS: usize = 64;

/// Tokens per block of an I2_S product: a multiple of four whose int8 activations fill at most
/// 16 KiB, half a typical L1 data cache.
fn i2s_token_block(k: usize) -> usize {
    (16 * 1024 / k.max(1) / 4 * 4).clamp(4, 64)
}

/// Token `token` of row-major activations `k` wide.
fn token_of<T>(x: &[T], k: usize, token: usize) -> &[T] {
    &x[token * k..(token + 1) * k]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_spans_cover_every_part_in_groups_and_shrink_at_each_run_end() {
        let cases: [&[usize]; 7] = [
            &[2560, 640, 640],
            &[13824],
            &[6, 6],
            &[0, 5, 0, 9],
            &[1],
            &[2560],
            &[70, 3, 130],
        ];
        for parts in cases {
            for threads in 1..=4 {
                let total: usize = parts.iter().sum();
                let per_chunk = streaming_rows_per_chunk(total, threads, 640);
                let (spans, runs) = streaming_spans(parts, threads, per_chunk);
                let case = format!("{parts:?} on {threads}");
                assert_eq!(runs.len(), threads + 1, "{case}");
                assert_eq!((runs[0], runs[threads]), (0, spans.len()), "{case}");
                assert!(runs.windows(2).all(|w| w[0] <= w[1]), "{case}");
                // Every row once, in order, each span inside its part and starting on a group.
                let mut next = vec![0; parts.len()];
                for (part, rows) in &spans {
                    assert_eq!(rows.start, next[*part], "{case}");
                    assert!(rows.start.is_multiple_of(4) && !rows.is_empty(), "{case}");
                    next[*part] = rows.end;
                }
                assert_eq!(next, parts, "{case}");
                // Each run of a large product ends on a chunk of a single run of rows.
                if total >= 1024 * threads {
                    for t in 0..threads {
                        let last = &spans[runs[t + 1] - 1].1;
                        assert!(
                            last.len() <= I2S_RUN_ROWS,
                            "{case}: run {t} ends on {last:?}"
                        );
                    }
                }
            }
        }
    }
}
