//! The KV cache and causal multi-head attention over it.

use std::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::ops::masked_softmax;
use super::ModelError;
use crate::formats::Shape;
use crate::kernels::{prefetch, prefetch_all, round_to_f16, CpuKernels, DenseMatrix};

/// Tokens per block of a batch's attention while the cached values are finite.
const ATTENTION_BLOCK: usize = 32;

/// The reference pads the attended length (and the context) to a multiple of this many cells.
pub(crate) const KV_PAD: usize = 32;

/// Geometry of the attention of one model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLayout {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

impl HeadLayout {
    /// Bytes of the keys and values of `n_layer` layers for a context of `n_ctx` positions
    /// (padded to [`KV_PAD`] cells), f16 or f32.
    pub(crate) fn cache_bytes(&self, n_layer: usize, n_ctx: usize, f16: bool) -> usize {
        let value = if f16 { 2 } else { 4 };
        2 * n_layer * self.n_head_kv * self.head_dim * n_ctx.next_multiple_of(KV_PAD) * value
    }

    fn n_embd(&self) -> usize {
        self.n_head * self.head_dim
    }

    fn n_embd_kv(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// Cached keys (`[kv_head][cell][head_dim]`) or values (`[kv_head][head_dim][cell]`, transposed
/// as the reference keeps them, so `V · p` reads rows) of one layer.
#[derive(Debug, Clone)]
enum Cells {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl Cells {
    /// Stores `values` at `at..`, rounded to f16 in an F16 cache.
    fn set_run(&mut self, at: usize, values: &[f32]) {
        match self {
            Cells::F16(c) => c[at..at + values.len()].convert_from_f32_slice(values),
            Cells::F32(c) => c[at..at + values.len()].copy_from_slice(values),
        }
    }

    /// Stores `values` at `at`, `at + stride`, …, rounded to f16 in an F16 cache; whether every
    /// stored value is finite.
    fn set_strided(&mut self, at: usize, stride: usize, values: &[f32]) -> bool {
        match self {
            Cells::F16(c) => store_column(&mut c[at..], stride, values),
            Cells::F32(c) => {
                for (i, &v) in values.iter().enumerate() {
                    c[at + i * stride] = v;
                }
                values.iter().all(|v| v.is_finite())
            }
        }
    }
}

/// Keys and values of every layer for up to `capacity` positions.
#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    heads: HeadLayout,
    capacity: usize,
    k: Vec<Cells>,
    v: Vec<Cells>,
    /// Per layer: whether every value stored since the last clear is finite.
    v_finite: Vec<bool>,
}

impl KvCache {
    /// A zeroed cache of at least `n_ctx` cells (rounded up to the padding) per layer.
    pub fn new(heads: HeadLayout, n_layer: usize, n_ctx: usize, f16: bool) -> Self {
        let capacity = n_ctx.next_multiple_of(KV_PAD);
        let len = heads.n_head_kv * capacity * heads.head_dim;
        let cells = || {
            if f16 {
                Cells::F16(vec![f16::ZERO; len])
            } else {
                Cells::F32(vec![0.0; len])
            }
        };
        KvCache {
            heads,
            capacity,
            k: (0..n_layer).map(|_| cells()).collect(),
            v: (0..n_layer).map(|_| cells()).collect(),
            v_finite: vec![true; n_layer],
        }
    }

    /// Bytes held by the cached keys and values.
    pub fn bytes(&self) -> usize {
        self.k
            .iter()
            .chain(&self.v)
            .map(|cells| match cells {
                Cells::F16(c) => size_of_val(c.as_slice()),
                Cells::F32(c) => size_of_val(c.as_slice()),
            })
            .sum()
    }

    /// Zeroes every cell.
    pub fn clear(&mut self) {
        for cells in self.k.iter_mut().chain(self.v.iter_mut()) {
            match cells {
                Cells::F16(c) => c.fill(f16::ZERO),
                Cells::F32(c) => c.fill(0.0),
            }
        }
        self.v_finite.fill(true);
    }

    /// Stores the keys `k` and values `v` of `tokens` new positions starting at `n_past` in
    /// layer `layer` and writes the attention output (`n_embd` per token) of the queries `q` to
    /// `out` (in the memory it already has where that is enough).
    pub fn attend(
        &mut self,
        kernels: &CpuKernels,
        layer: usize,
        n_past: usize,
        [q, k, v]: [&[f32]; 3],
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let h = self.heads;
        let tokens = q.len() / h.n_embd();
        if let (1, Cells::F16(keys), Cells::F16(values)) =
            (tokens, &mut self.k[layer], &mut self.v[layer])
        {
            let layout = (h, self.capacity);
            let finite =
                Self::attend_one_f16(layout, [keys, values], kernels, n_past, [q, k, v], out)?;
            self.v_finite[layer] &= finite;
            return Ok(());
        }
        self.store(layer, n_past, k, v);
        let n_kv = (n_past + tokens)
            .next_multiple_of(KV_PAD)
            .min(self.capacity);
        // The query heads that share a KV head go together, so each key row is read once for
        // all of them; the groups and the blocks of the batch's tokens are independent, and run
        // in parallel, each on one thread, so a product per head and token is not a team
        // dispatch of its own. Every output is computed exactly as on one thread.
        // While every cached value of the layer is finite, a masked cell adds exactly nothing to
        // the batched `V·p` (its probability is 0), so tokens go in blocks that attend only the
        // cells up to the block's last position; a non-finite value, whose product with 0 the
        // reference keeps as NaN, makes the whole batch one block over all `n_kv` cells.
        let block = if self.v_finite[layer] {
            ATTENTION_BLOCK
        } else {
            tokens
        };
        let blocks = token_blocks(tokens, block);
        let jobs: Vec<(usize, Range<usize>)> = (0..h.n_head_kv)
            .flat_map(|kv_head| blocks.iter().map(move |block| (kv_head, block.clone())))
            .collect();
        let serial = kernels.serial();
        let outputs = kernels.map_parallel(jobs.len(), |i| {
            let (kv_head, block) = jobs[i].clone();
            self.group_output(&serial, layer, kv_head, (n_past, n_kv), block, q)
        });
        let group = h.n_head / h.n_head_kv;
        out.clear();
        out.resize(tokens * h.n_embd(), 0.0);
        for ((kv_head, block), values) in jobs.iter().zip(outputs) {
            let values = values?;
            for (i, head_values) in values.chunks_exact(block.len() * h.head_dim).enumerate() {
                let head = kv_head * group + i;
                for (t, v) in head_values.chunks_exact(h.head_dim).enumerate() {
                    let at = (block.start + t) * h.n_embd() + head * h.head_dim;
                    out[at..at + h.head_dim].copy_from_slice(v);
                }
            }
        }
        Ok(())
    }

    /// One token's attention over F16 cells `keys` and `values` of one layer (at position
    /// `n_past`), its key and values stored on the way, written to `out`; whether every stored
    /// value is finite.
    ///
    /// The KV heads' groups of query heads run in parallel: each thread takes an even share of
    /// as many whole groups as split evenly, then its share of the value rows of each group left
    /// over, whose scores it computes as well (the same bits on every thread), so that the
    /// threads finish together. Each thread stores the new cell of the value rows it reads, and
    /// the new key of the groups it takes whole (the caller those of the split ones), after
    /// asking for the group's cells: the new cell's lines, one per value row, come with them
    /// instead of one miss at a time. The queries and the probabilities are rounded to f16, as
    /// `ggml_mul_mat` converts them for `ggml_vec_dot_f16`.
    fn attend_one_f16(
        (h, capacity): (HeadLayout, usize),
        [keys, values]: [&mut [f16]; 2],
        kernels: &CpuKernels,
        n_past: usize,
        [q, k, v]: [&[f32]; 3],
        out: &mut Vec<f32>,
    ) -> Result<bool, ModelError> {
        let (hd, group, seen) = (h.head_dim, h.n_head / h.n_head_kv, n_past + 1);
        let n_kv = seen.next_multiple_of(KV_PAD).min(capacity);
        let (serial, width, threads) = (
            kernels.serial(),
            kernels.numerics().width,
            kernels.threads(),
        );
        let scale = 1.0 / (hd as f32).sqrt();
        let queries = round_to_f16(q);
        let whole = h.n_head_kv - h.n_head_kv % threads;
        let mut key_heads: Vec<&mut [f16]> = keys.chunks_exact_mut(capacity * hd).collect();
        let split_keys: Vec<&[f16]> = key_heads
            .drain(whole..)
            .enumerate()
            .map(|(i, head)| {
                let at = (whole + i) * hd;
                head[n_past * hd..seen * hd].convert_from_f32_slice(&k[at..at + hd]);
                &*head
            })
            .collect();
        let mut value_heads: Vec<&mut [f16]> = values.chunks_exact_mut(hd * capacity).collect();
        let mut split_values: Vec<std::vec::IntoIter<&mut [f16]>> = value_heads
            .drain(whole..)
            .map(|head| split_rows(head, capacity, threads, hd).into_iter())
            .collect();
        // Thread t's jobs: its whole groups, then its rows of each split group.
        let mut whole_groups = key_heads.into_iter().zip(value_heads).enumerate();
        let mut jobs = Vec::new();
        for t in 0..threads {
            let count = (t + 1) * whole / threads - t * whole / threads;
            jobs.extend(
                whole_groups
                    .by_ref()
                    .take(count)
                    .map(|(kv_head, (key, rows))| (kv_head, 0..hd, GroupKeys::Store(key), rows)),
            );
            let part = row_start(t, threads, hd)..row_start(t + 1, threads, hd);
            for (i, (parts, key)) in split_values.iter_mut().zip(&split_keys).enumerate() {
                if let Some(rows) = parts.next().filter(|_| !part.is_empty()) {
                    jobs.push((whole + i, part.clone(), GroupKeys::Stored(key), rows));
                }
            }
        }
        let results = kernels.map_each(jobs, |(kv_head, rows, key, value_rows)| {
            prefetch_group(&key.cells()[..n_kv * hd], value_rows, capacity, n_kv);
            let at = kv_head * hd;
            let keys = key.stored(n_past * hd..seen * hd, &k[at..at + hd]);
            let new_values = &v[kv_head * hd + rows.start..kv_head * hd + rows.end];
            let finite = store_column(&mut value_rows[n_past..], capacity, new_values);
            let ys: Vec<&[f16]> = queries[kv_head * group * hd..][..group * hd]
                .chunks_exact(hd)
                .collect();
            let mut scores = vec![0f32; group * n_kv];
            let mut score_rows: Vec<&mut [f32]> = scores
                .chunks_exact_mut(n_kv)
                .map(|row| &mut row[..seen])
                .collect();
            let keys = visible_keys(keys, 0, seen, hd)?;
            serial.f16_vec_rows_each(&keys, &ys, &mut score_rows)?;
            for row in scores.chunks_exact_mut(n_kv) {
                masked_softmax(row, scale, seen, width);
            }
            let probs = round_to_f16(&scores);
            let ps: Vec<&[f16]> = probs.chunks_exact(n_kv).collect();
            // `V · p` reads each value row once for every head.
            let mut head_values = vec![0f32; group * rows.len()];
            let mut outs: Vec<&mut [f32]> = head_values.chunks_exact_mut(rows.len()).collect();
            let span = (rows.len() - 1) * capacity + n_kv;
            let shape = Shape::new(n_kv, rows.len());
            let values = DenseMatrix::strided(&value_rows[..span], shape, capacity)?;
            serial.f16_vec_rows_each(&values, &ps, &mut outs)?;
            Ok::<_, ModelError>((kv_head, rows, head_values, finite))
        });
        out.clear();
        out.resize(h.n_embd(), 0.0);
        let mut finite = true;
        for result in results {
            let (kv_head, rows, head_values, stored_finite) = result?;
            finite &= stored_finite;
            for (i, v) in head_values.chunks_exact(rows.len()).enumerate() {
                let at = (kv_head * group + i) * hd + rows.start;
                out[at..at + rows.len()].copy_from_slice(v);
            }
        }
        Ok(finite)
    }

    /// The attention output of the query heads of KV head `kv_head` for the tokens of `block`
    /// (positions `n_past + block`), over at most the first `n_kv` cells: `head_dim` values per
    /// head and token, head-major, on the calling thread.
    fn group_output(
        &self,
        kernels: &CpuKernels,
        layer: usize,
        kv_head: usize,
        (n_past, n_kv): (usize, usize),
        block: Range<usize>,
        q: &[f32],
    ) -> Result<Vec<f32>, ModelError> {
        let h = self.heads;
        let (hd, tokens) = (h.head_dim, block.len());
        let group = h.n_head / h.n_head_kv;
        // One token takes the vector product, whose split between vectors and tail depends on the
        // length: it keeps all `n_kv` cells. A block of a batch attends the cells up to its last
        // position, rounded up to whole vectors of 16 so that every sum keeps its lanes.
        let width = match self.v_finite[layer] && tokens >= 2 {
            true => (n_past + block.end).next_multiple_of(16).min(n_kv),
            false => n_kv,
        };
        // The per-head queries are a strided view, which `ggml_mul_mat` converts to the cache
        // type and never hands to tinyBLAS: every token takes the vector dot product (which
        // rounds them to f16 for an F16 cache). The probabilities are contiguous and stay f32,
        // so a batch's `V·p` is a batched product.
        let q = &q[block.start * h.n_embd()..block.end * h.n_embd()];
        if tokens == 1 {
            self.prefetch(layer, kv_head, width);
        }
        let mut queries = Vec::with_capacity(group * tokens * hd);
        for head in kv_head * group..(kv_head + 1) * group {
            for token in q.chunks_exact(h.n_embd()) {
                queries.extend_from_slice(&token[head * hd..(head + 1) * hd]);
            }
        }
        let pos = n_past + block.start;
        let mut scores = self.scores(layer, kv_head, kernels, pos, &queries, width)?;
        let scale = 1.0 / (hd as f32).sqrt();
        for (i, row) in scores.chunks_exact_mut(width).enumerate() {
            masked_softmax(row, scale, pos + i % tokens + 1, kernels.numerics().width);
        }
        let mut out = vec![0f32; group * tokens * hd];
        let head_scores = scores.chunks_exact(tokens * width);
        for (probs, head_out) in head_scores.zip(out.chunks_exact_mut(tokens * hd)) {
            self.values_product(layer, kv_head, width, kernels, probs, head_out)?;
        }
        Ok(out)
    }

    /// The raw scores `K·q` of `queries` (`head_dim` values per token, the tokens at positions
    /// `pos..` of one head after another) in rows `width` cells wide, one row per head and token,
    /// head-major: each row's cells up to its own position (the rest stay masked).
    fn scores(
        &self,
        layer: usize,
        kv_head: usize,
        kernels: &CpuKernels,
        pos: usize,
        queries: &[f32],
        width: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let hd = self.heads.head_dim;
        let group = self.heads.n_head / self.heads.n_head_kv;
        let tokens = queries.len() / (group * hd);
        let first_key = kv_head * self.capacity * hd;
        let mut scores = vec![0f32; group * tokens * width];
        // The keys token `t` sees: cells `0..pos + t + 1` of this KV head.
        let seen = |t: usize| pos + t + 1;
        match &self.k[layer] {
            Cells::F16(c) => {
                let rounded = round_to_f16(queries);
                for t in 0..tokens {
                    let keys = visible_keys(c, first_key, seen(t), hd)?;
                    let ys: Vec<&[f16]> = rounded
                        .chunks_exact(tokens * hd)
                        .map(|q| &q[t * hd..(t + 1) * hd])
                        .collect();
                    let mut rows: Vec<&mut [f32]> = scores
                        .chunks_exact_mut(tokens * width)
                        .map(|s| &mut s[t * width..t * width + seen(t)])
                        .collect();
                    kernels.f16_vec_rows_each(&keys, &ys, &mut rows)?;
                }
            }
            Cells::F32(c) => {
                let head_scores = scores.chunks_exact_mut(tokens * width);
                for (head_scores, query) in head_scores.zip(queries.chunks_exact(tokens * hd)) {
                    for (t, q_token) in query.chunks_exact(hd).enumerate() {
                        let keys = visible_keys(c, first_key, seen(t), hd)?;
                        let row = &mut head_scores[t * width..t * width + seen(t)];
                        kernels.f32_gemm(&keys, q_token, row)?;
                    }
                }
            }
        }
        Ok(scores)
    }

    /// [`prefetch_group`] of KV head `kv_head` over the first `n_kv` cells.
    fn prefetch(&self, layer: usize, kv_head: usize, n_kv: usize) {
        let (hd, capacity) = (self.heads.head_dim, self.capacity);
        let keys = kv_head * capacity * hd..(kv_head * capacity + n_kv) * hd;
        let (values, _) = self.value_rows(kv_head, n_kv, 0..hd);
        match (&self.k[layer], &self.v[layer]) {
            (Cells::F16(k), Cells::F16(v)) => prefetch_group(&k[keys], &v[values], capacity, n_kv),
            (Cells::F32(k), Cells::F32(v)) => prefetch_group(&k[keys], &v[values], capacity, n_kv),
            _ => {}
        }
    }

    /// Asks for the cache lines that storing one token at cell `cell` of layer `layer` writes, in
    /// an F32 cache: a value row's cell lies on a line of its own for each of the `head_dim` rows
    /// of every KV head, and the layer's products have pushed them out since the last token
    /// wrote beside them, so their misses are taken while the products stream instead of one by
    /// one after. (One token's attention over an F16 cache stores the cell as it asks for the
    /// group's lines.)
    pub fn prefetch_cell(&self, layer: usize, cell: usize) {
        let (h, capacity) = (self.heads, self.capacity);
        if cell >= capacity {
            return;
        }
        if let (Cells::F32(k), Cells::F32(v)) = (&self.k[layer], &self.v[layer]) {
            for kv_head in 0..h.n_head_kv {
                let at = (kv_head * capacity + cell) * h.head_dim;
                prefetch_all(&k[at..at + h.head_dim]);
            }
            for row in v[cell..].iter().step_by(capacity) {
                prefetch(row);
            }
        }
    }

    /// Stores the keys and values of the tokens of `k` and `v` at the cells from `n_past` on.
    fn store(&mut self, layer: usize, n_past: usize, k: &[f32], v: &[f32]) {
        let (h, capacity) = (self.heads, self.capacity);
        let hd = h.head_dim;
        for (t, (keys, values)) in k
            .chunks_exact(h.n_embd_kv())
            .zip(v.chunks_exact(h.n_embd_kv()))
            .enumerate()
        {
            let cell = n_past + t;
            for (kv_head, (key, value)) in keys
                .chunks_exact(hd)
                .zip(values.chunks_exact(hd))
                .enumerate()
            {
                self.k[layer].set_run((kv_head * capacity + cell) * hd, key);
                let finite =
                    self.v[layer].set_strided(kv_head * hd * capacity + cell, capacity, value);
                self.v_finite[layer] &= finite;
            }
        }
    }

    /// `out = V · p` of one KV head: its `head_dim` rows of the first `n_kv` cached values
    /// times each token's probabilities in `probs`.
    fn values_product(
        &self,
        layer: usize,
        kv_head: usize,
        n_kv: usize,
        kernels: &CpuKernels,
        probs: &[f32],
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let (span, shape) = self.value_rows(kv_head, n_kv, 0..self.heads.head_dim);
        multiply(
            &self.v[layer],
            span,
            (shape, self.capacity),
            kernels,
            probs,
            out,
        )
    }

    /// Where the value rows `rows` (of `head_dim`) of KV head `kv_head` lie in a layer's cells,
    /// rows `capacity` apart, and their shape over the first `n_kv` cells.
    fn value_rows(&self, kv_head: usize, n_kv: usize, rows: Range<usize>) -> (Range<usize>, Shape) {
        let (hd, capacity) = (self.heads.head_dim, self.capacity);
        let start = (kv_head * hd + rows.start) * capacity;
        (
            start..start + (rows.len().max(1) - 1) * capacity + n_kv,
            Shape::new(n_kv, rows.len()),
        )
    }
}

/// How one token's attention reaches the keys of a group: its thread stores the new key, or the
/// caller has stored it (a group split over the threads, whose keys they all read).
enum GroupKeys<'a> {
    Store(&'a mut [f16]),
    Stored(&'a [f16]),
}

impl<'a> GroupKeys<'a> {
    /// The group's cached keys.
    fn cells(&self) -> &[f16] {
        match self {
            GroupKeys::Store(cells) => cells,
            GroupKeys::Stored(cells) => cells,
        }
    }

    /// The cached keys with `key` at `cell` (stored here where this thread stores it).
    fn stored(self, cell: Range<usize>, key: &[f32]) -> &'a [f16] {
        match self {
            GroupKeys::Store(cells) => {
                cells[cell].convert_from_f32_slice(key);
                cells
            }
            GroupKeys::Stored(cells) => cells,
        }
    }
}

/// Stores `values` rounded to f16 at the starts of `cells`' runs of `stride` (one cell of each
/// of consecutive value rows); whether every stored value is finite.
fn store_column(cells: &mut [f16], stride: usize, values: &[f32]) -> bool {
    let rounded = round_to_f16(values);
    for (row, &value) in cells.chunks_mut(stride).zip(&rounded) {
        row[0] = value;
    }
    rounded.iter().all(|v| v.is_finite())
}

/// Where thread `t` of `threads` starts on the value rows of a group split over them: each a
/// share of whole quads, the last the rest.
fn row_start(t: usize, threads: usize, hd: usize) -> usize {
    match t == threads {
        true => hd,
        false => 4 * (t * (hd / 4) / threads),
    }
}

/// The `hd` value rows of one KV head (`capacity` cells each) cut into the threads' shares
/// ([`row_start`]), in thread order.
fn split_rows<T>(mut head: &mut [T], capacity: usize, threads: usize, hd: usize) -> Vec<&mut [T]> {
    (0..threads)
        .map(|t| {
            let rows = row_start(t + 1, threads, hd) - row_start(t, threads, hd);
            let (part, rest) = std::mem::take(&mut head).split_at_mut(rows * capacity);
            head = rest;
            part
        })
        .collect()
}

/// Asks for a group's keys (one run) and value rows (`capacity` apart, the first `n_kv` cells
/// of each): at one token per step they are rarely still in the caches after a layer's worth of
/// weights, and the lines of a whole group arrive sooner together than one miss at a time. The
/// values first: the keys are read at once, and in one run that the hardware follows.
fn prefetch_group<T>(keys: &[T], value_rows: &[T], capacity: usize, n_kv: usize) {
    for row in value_rows.chunks(capacity) {
        prefetch_all(&row[..n_kv.min(row.len())]);
    }
    prefetch_all(keys);
}

/// The batch's tokens `0..tokens` in runs of `block`; a batch's products are batched (tinyBLAS)
/// from two tokens on, so a last run of one token joins the run before it.
fn token_blocks(tokens: usize, block: usize) -> Vec<Range<usize>> {
    let mut blocks = Vec::new();
    let mut first = 0;
    while first < tokens {
        let end = match (first + block).min(tokens) {
            end if tokens - end == 1 => tokens,
            end => end,
        };
        blocks.push(first..end);
        first = end;
    }
    blocks
}

/// The cells in `span` as a matrix of `shape` whose rows start `stride` apart, times each token
/// of `x`.
fn multiply(
    cells: &Cells,
    span: Range<usize>,
    (shape, stride): (Shape, usize),
    kernels: &CpuKernels,
    x: &[f32],
    out: &mut [f32],
) -> Result<(), ModelError> {
    match cells {
        Cells::F16(c) => {
            kernels.f16_gemm(&DenseMatrix::strided(&c[span], shape, stride)?, x, out)?
        }
        Cells::F32(c) => {
            kernels.f32_gemm(&DenseMatrix::strided(&c[span], shape, stride)?, x, out)?
        }
    }
    Ok(())
}

/// The first `cells` keys of the head whose keys start at `first`, one row each.
fn visible_keys<T>(
    c: &[T],
    first: usize,
    cells: usize,
    head_dim: usize,
) -> Result<DenseMatrix<'_, T>, ModelError> {
    let keys = &c[first..first + cells * head_dim];
    Ok(DenseMatrix::strided(
        keys,
        Shape::new(head_dim, cells),
        head_dim,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::SplitMix64;

    fn values(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.next_normal() as f32).collect()
    }

    /// Causal attention in f64 of every query of `q` (positions `first..`) over the keys and
    /// values of positions `0..=position`, heads of a group sharing one KV head.
    fn attention_f64(
        h: HeadLayout,
        first: usize,
        q: &[f32],
        keys: &[f32],
        vals: &[f32],
    ) -> Vec<f64> {
        let (hd, n_embd, n_embd_kv) = (h.head_dim, h.n_embd(), h.n_embd_kv());
        let group = h.n_head / h.n_head_kv;
        let mut out = Vec::new();
        for (t, query) in q.chunks(n_embd).enumerate() {
            let seen = first + t + 1;
            for head in 0..h.n_head {
                let kv = (head / group) * hd;
                let qh = &query[head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..seen)
                    .map(|p| {
                        let k = &keys[p * n_embd_kv + kv..][..hd];
                        let dot: f64 = qh
                            .iter()
                            .zip(k)
                            .map(|(&a, &b)| f64::from(a) * f64::from(b))
                            .sum();
                        dot / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::MIN, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for d in 0..hd {
                    let value: f64 = (0..seen)
                        .map(|p| weights[p] * f64::from(vals[p * n_embd_kv + kv + d]))
                        .sum();
                    out.push(value / total);
                }
            }
        }
        out
    }

    #[test]
    fn causal_grouped_attention_matches_the_f64_formula() {
        let h = HeadLayout {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 8,
        };
        let kernels = CpuKernels::best(1).unwrap();
        let mut rng = SplitMix64::new(11);
        let positions = 7;
        let keys = values(&mut rng, positions * h.n_embd_kv());
        let vals = values(&mut rng, positions * h.n_embd_kv());
        let q = values(&mut rng, positions * h.n_embd());
        for (f16, tol) in [(false, 1e-5), (true, 5e-3)] {
            let mut cache = KvCache::new(h, 1, 40, f16);
            // A batch of four positions, then three single positions.
            for (first, len) in [(0, 4), (4, 1), (5, 1), (6, 1)] {
                let kv = first * h.n_embd_kv()..(first + len) * h.n_embd_kv();
                let qs = &q[first * h.n_embd()..(first + len) * h.n_embd()];
                let actual = attended(
                    &mut cache,
                    &kernels,
                    first,
                    [qs, &keys[kv.clone()], &vals[kv]],
                );
                let expected = attention_f64(h, first, qs, &keys, &vals);
                for (i, (&a, &e)) in actual.iter().zip(&expected).enumerate() {
                    assert!(
                        (f64::from(a) - e).abs() <= tol * e.abs().max(1.0),
                        "f16 {f16}, first {first} [{i}]: {a} vs {e}"
                    );
                }
            }
            let cells = 64 * h.n_embd_kv() * 2;
            assert_eq!(cache.bytes(), cells * if f16 { 2 } else { 4 });
        }
    }

    /// Each token's keys (or values) with every KV head repeated for the `group` query heads
    /// that share it.
    fn repeat_kv_heads(kv: &[f32], h: HeadLayout, group: usize) -> Vec<f32> {
        kv.chunks_exact(h.n_embd_kv())
            .flat_map(|token| token.chunks_exact(h.head_dim))
            .flat_map(|head| std::iter::repeat_n(head, group).flatten())
            .copied()
            .collect()
    }

    #[test]
    fn grouped_query_heads_have_the_bits_of_heads_with_their_own_kv_head() {
        // Groups of four, three (a pair and a single) and one head per KV head; a head width
        // and cell counts with tails past the 64-wide vectors; a batch of blocks, then one token.
        for (n_head, n_head_kv) in [(8, 2), (6, 2), (3, 3)] {
            let grouped = HeadLayout {
                n_head,
                n_head_kv,
                head_dim: 80,
            };
            let own = HeadLayout {
                n_head_kv: n_head,
                ..grouped
            };
            let group = n_head / n_head_kv;
            let kernels = CpuKernels::best(2).unwrap();
            let mut rng = SplitMix64::new(23);
            let (prefix, capacity) = (69, 128);
            let keys = values(&mut rng, (prefix + 1) * grouped.n_embd_kv());
            let vals = values(&mut rng, (prefix + 1) * grouped.n_embd_kv());
            let q = values(&mut rng, (prefix + 1) * grouped.n_embd());
            let (own_keys, own_vals) = (
                repeat_kv_heads(&keys, grouped, group),
                repeat_kv_heads(&vals, grouped, group),
            );
            for f16 in [true, false] {
                let mut a = KvCache::new(grouped, 1, capacity, f16);
                let mut b = KvCache::new(own, 1, capacity, f16);
                for span in [0..prefix, prefix..prefix + 1] {
                    let qs = &q[span.start * grouped.n_embd()..span.end * grouped.n_embd()];
                    let kv = |h: HeadLayout| span.start * h.n_embd_kv()..span.end * h.n_embd_kv();
                    let (ka, va) = (&keys[kv(grouped)], &vals[kv(grouped)]);
                    let (kb, vb) = (&own_keys[kv(own)], &own_vals[kv(own)]);
                    let got = attended(&mut a, &kernels, span.start, [qs, ka, va]);
                    let want = attended(&mut b, &kernels, span.start, [qs, kb, vb]);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{n_head}/{n_head_kv} f16 {f16}, tokens {span:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn blocked_batches_equal_one_block_and_a_non_finite_value_reaches_every_token() {
        let h = HeadLayout {
            n_head: 2,
            n_head_kv: 1,
            head_dim: 16,
        };
        let kernels = CpuKernels::best(1).unwrap();
        let mut rng = SplitMix64::new(5);
        let tokens = 3 * ATTENTION_BLOCK + 1;
        let keys = values(&mut rng, tokens * h.n_embd_kv());
        let mut vals = values(&mut rng, tokens * h.n_embd_kv());
        let q = values(&mut rng, tokens * h.n_embd());
        // Blocks of the batch over their own cells give the bits of one block over all cells.
        let mut blocked = KvCache::new(h, 1, 128, true);
        let mut whole = blocked.clone();
        whole.v_finite[0] = false;
        let out = attended(&mut blocked, &kernels, 0, [&q, &keys, &vals]);
        whole.store(0, 0, &keys, &vals);
        let expected = whole
            .group_output(&kernels, 0, 0, (0, 128), 0..tokens, &q)
            .unwrap();
        for (head, values) in expected.chunks_exact(tokens * h.head_dim).enumerate() {
            for (t, v) in values.chunks_exact(h.head_dim).enumerate() {
                let at = t * h.n_embd() + head * h.head_dim;
                let got: Vec<u32> = out[at..at + h.head_dim]
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                let want: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "head {head}, token {t}");
            }
        }
        // A value too large for f16 is infinite in the cache: as in the reference, its product
        // with the zero probability of every earlier token makes their outputs NaN.
        vals[(tokens - 2) * h.n_embd_kv()] = 1e6;
        let mut cache = KvCache::new(h, 1, 128, true);
        let out = attended(&mut cache, &kernels, 0, [&q, &keys, &vals]);
        assert!(out[0].is_nan(), "token 0 gives {}", out[0]);
    }

    /// Twenty query heads over five KV heads: on two or three threads some groups' value rows
    /// are split between them.
    const FIVE_GROUPS: HeadLayout = HeadLayout {
        n_head: 20,
        n_head_kv: 5,
        head_dim: 36,
    };

    /// Random queries, keys and values of [`FIVE_GROUPS`] for `positions` positions.
    fn five_group_inputs(seed: u64, positions: usize) -> [Vec<f32>; 3] {
        let h = FIVE_GROUPS;
        let mut rng = SplitMix64::new(seed);
        let keys = values(&mut rng, positions * h.n_embd_kv());
        let vals = values(&mut rng, positions * h.n_embd_kv());
        [values(&mut rng, positions * h.n_embd()), keys, vals]
    }

    /// Attends every position of `keys` one token at a time, calling `after(position, cache)`
    /// after each; the bits of every output.
    fn one_token_steps(
        cache: &mut KvCache,
        kernels: &CpuKernels,
        [q, keys, vals]: [&[f32]; 3],
        mut after: impl FnMut(usize, &KvCache),
    ) -> Vec<u32> {
        let h = cache.heads;
        let mut bits = Vec::new();
        for pos in 0..keys.len() / h.n_embd_kv() {
            let kv = pos * h.n_embd_kv()..(pos + 1) * h.n_embd_kv();
            let qs = &q[pos * h.n_embd()..(pos + 1) * h.n_embd()];
            let out = attended(cache, kernels, pos, [qs, &keys[kv.clone()], &vals[kv]]);
            bits.extend(out.iter().map(|v| v.to_bits()));
            after(pos, cache);
        }
        bits
    }

    #[test]
    fn one_token_attention_has_the_same_bits_on_any_thread_count() {
        let [q, keys, vals] = five_group_inputs(29, 40);
        let run = |threads: usize| {
            let kernels = CpuKernels::best(threads).unwrap();
            let mut cache = KvCache::new(FIVE_GROUPS, 1, 64, true);
            one_token_steps(&mut cache, &kernels, [&q, &keys, &vals], |_, _| {})
        };
        let one = run(1);
        for threads in [2, 3, 4] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }

    #[test]
    fn one_token_steps_store_the_cells_a_batch_stores() {
        let (h, positions) = (FIVE_GROUPS, 40);
        let [q, keys, mut vals] = five_group_inputs(31, positions);
        // Too large for f16: infinite in the cache, which the batch path must then know.
        vals[(positions - 3) * h.n_embd_kv() + 2 * h.head_dim + 7] = 1e6;
        let bits = |cells: &[Cells]| match &cells[0] {
            Cells::F16(c) => c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            Cells::F32(_) => unreachable!("an F16 cache"),
        };
        let mut batch = KvCache::new(h, 1, 64, true);
        batch.store(0, 0, &keys, &vals);
        for threads in [1, 2, 3] {
            let kernels = CpuKernels::best(threads).unwrap();
            let mut steps = KvCache::new(h, 1, 64, true);
            one_token_steps(&mut steps, &kernels, [&q, &keys, &vals], |pos, cache| {
                let finite = pos < positions - 3;
                assert_eq!(cache.v_finite[0], finite, "{threads} threads, {pos}");
            });
            assert!(bits(&steps.k) == bits(&batch.k), "keys, {threads} threads");
            assert!(
                bits(&steps.v) == bits(&batch.v),
                "values, {threads} threads"
            );
        }
    }

    /// The attention output of layer 0 after storing the new keys and values.
    fn attended(
        cache: &mut KvCache,
        kernels: &CpuKernels,
        n_past: usize,
        qkv: [&[f32]; 3],
    ) -> Vec<f32> {
        let mut out = Vec::new();
        cache.attend(kernels, 0, n_past, qkv, &mut out).unwrap();
        out
    }
}
