// Kernels of the engine's CUDA backend, compiled at run time by NVRTC with `--fmad=false`: a
// multiply-add that the CPU engine fuses is written `__fmaf_rn` here, every other one rounds twice,
// so the integer cores and the quantizers return the CPU engine's bits. Each kernel's CPU twin is
// named in its comment.

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;

#define FULL_MASK 0xffffffffu
// Tokens that one warp multiplies against each weight row it loads.
#define TOKEN_TILE 8
#define INFINITY __int_as_float(0x7f800000)
// Values per thread that rms_norm_quantize keeps in registers.
#define ROW_CACHE 8
// Steps of a warp's vector dot whose loads are issued together.
#define VEC_DOT_CHUNK 8

__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float round_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

// formats::FpContract::nearest_int_of_product.
__device__ __forceinline__ int nearest_int_of_product(float a, float b, int fused) {
    const float magic = 12582912.0f;
    float s = fused ? __fmaf_rn(a, b, magic) : __fadd_rn(__fmul_rn(a, b), magic);
    return (__float_as_int(s) & 0x007fffff) - 0x00400000;
}

struct Add {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};

struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

struct Min {
    __device__ int operator()(int a, int b) const { return min(a, b); }
};

template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

__device__ __forceinline__ int warp_sum_int(int v) { return warp_reduce(v, Add()); }

// A block-wide reduction over at most 32 warps; every thread gets the result.
template <typename T, typename Op> __device__ T block_reduce(T v, Op op, T identity) {
    __shared__ T partial[32];
    __shared__ T total;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_reduce(v, op);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        T w = lane < (int)((blockDim.x + 31) >> 5) ? partial[lane] : identity;
        w = warp_reduce(w, op);
        if (lane == 0) total = w;
    }
    __syncthreads();
    return total;
}

__device__ double block_sum_double(double v) { return block_reduce(v, Add(), 0.0); }
__device__ int block_sum_int(int v) { return block_reduce(v, Add(), 0); }
__device__ float block_max_float(float v) { return block_reduce(v, Max(), -INFINITY); }

// model::ops::vec_expf: one lane of the reference's vectorized expf; `lanes` is 8 or 16.
__device__ float vec_expf(float x, int lanes) {
    const float round = 12582912.0f;
    const float log2_e = __uint_as_float(0x3fb8aa3bu);
    const float ln2_hi = __uint_as_float(0x3f317200u);
    const float ln2_lo = __uint_as_float(0x35bfbe8eu);
    const float p5 = __uint_as_float(0x3c072010u);
    const float p4 = __uint_as_float(0x3d2b9f17u);
    const float p3 = __uint_as_float(0x3e2aaf33u);
    const float p2 = __uint_as_float(0x3efffedbu);
    const float p1 = __uint_as_float(0x3f7ffff6u);
    float z = __fmaf_rn(x, log2_e, round);
    float n = __fsub_rn(z, round);
    float b = __fmaf_rn(-n, ln2_lo, __fmaf_rn(-n, ln2_hi, x));
    float u = __fmul_rn(b, b);
    float poly = __fmaf_rn(__fmaf_rn(p5, b, p4), u, __fmaf_rn(p3, b, p2));
    if (lanes == 16) {
        float j = __fmaf_rn(poly, u, __fmaf_rn(p1, b, 1.0f));
        if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
        return __double2float_rn((double)j * ldexp(1.0, (int)n));
    }
    float j = __fmaf_rn(poly, u, __fmul_rn(p1, b));
    u32 e = __float_as_uint(z) << 23;
    float k = __uint_as_float(e + __float_as_uint(1.0f));
    if (fabsf(n) <= 126.0f) return __fmaf_rn(j, k, k);
    u32 g = n <= 0.0f ? 0x82000000u : 0u;
    float s1 = __uint_as_float(g + 0x7f000000u);
    float s2 = __uint_as_float(e - g);
    if (fabsf(n) > 192.0f) return __fmul_rn(s1, s1);
    return __fmul_rn(__fmaf_rn(s2, j, s2), s1);
}

// model::ops::lane_sum of `lanes` values (missing values count as zero).
__device__ float lane_sum(const float* x, int count, int lanes) {
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = i < count && i < lanes ? x[i] : 0.0f;
    if (lanes == 16) {
        for (int i = 0; i < 8; i++) v[i] = __fadd_rn(v[i], v[i + 8]);
    }
    return __fadd_rn(__fadd_rn(__fadd_rn(v[0], v[4]), __fadd_rn(v[2], v[6])),
                     __fadd_rn(__fadd_rn(v[1], v[5]), __fadd_rn(v[3], v[7])));
}

// Linear::row_f32 for a batch of tokens: out[t] = table[tokens[t]].
extern "C" __global__ void embed_f16(const u16* table, const u32* tokens, float* out, int n_embd) {
    const u16* row = table + (size_t)tokens[blockIdx.x] * n_embd;
    float* o = out + (size_t)blockIdx.x * n_embd;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) o[i] = f16_to_f32(row[i]);
}

extern "C" __global__ void embed_f32(const float* table, const u32* tokens, float* out, int n_embd) {
    const float* row = table + (size_t)tokens[blockIdx.x] * n_embd;
    float* o = out + (size_t)blockIdx.x * n_embd;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) o[i] = row[i];
}

// model::ops::rms_norm of one row per block, `out` may be `x`.
extern "C" __global__ void rms_norm(const float* x, const float* weight, float* out, int width,
                                    float eps) {
    const float* row = x + (size_t)blockIdx.x * width;
    float* o = out + (size_t)blockIdx.x * width;
    double sum = 0.0;
    for (int i = threadIdx.x; i < width; i += blockDim.x) sum += (double)__fmul_rn(row[i], row[i]);
    sum = block_sum_double(sum);
    float mean = __double2float_rn(sum / (double)width);
    float scale = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
    for (int i = threadIdx.x; i < width; i += blockDim.x)
        o[i] = __fmul_rn(__fmul_rn(row[i], scale), weight[i]);
}

// model::ops::rms_norm followed by formats::I8sActivations::quantize of the normalized row, one
// row per block: `out` gets the normalized values and `codes`, `scales`, `sums` their I8_S
// quantization, as the two kernels give them one after the other.
extern "C" __global__ void rms_norm_quantize(const float* x, const float* weight, float* out,
                                             int width, float eps, int fused, i8* codes,
                                             float* scales, int* sums) {
    const float* row = x + (size_t)blockIdx.x * width;
    float* o = out + (size_t)blockIdx.x * width;
    i8* q = codes + (size_t)blockIdx.x * width;
    // Each thread keeps its values in registers between the passes (rows of up to
    // ROW_CACHE · blockDim values; longer rows are read again).
    // The norm's weights are loaded with the row, ahead of the reduction that needs the row.
    float v[ROW_CACHE], wt[ROW_CACHE];
    double sum = 0.0;
#pragma unroll
    for (int c = 0; c < ROW_CACHE; c++) {
        int i = threadIdx.x + c * blockDim.x;
        v[c] = i < width ? row[i] : 0.0f;
        wt[c] = i < width ? weight[i] : 0.0f;
        sum += (double)__fmul_rn(v[c], v[c]);
    }
    for (int i = threadIdx.x + ROW_CACHE * blockDim.x; i < width; i += blockDim.x)
        sum += (double)__fmul_rn(row[i], row[i]);
    sum = block_sum_double(sum);
    float scale = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__double2float_rn(sum / (double)width), eps)));
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < ROW_CACHE; c++) {
        int i = threadIdx.x + c * blockDim.x;
        if (i < width) {
            v[c] = __fmul_rn(__fmul_rn(v[c], scale), wt[c]);
            o[i] = v[c];
            amax = fmaxf(amax, fabsf(v[c]));
        }
    }
    for (int i = threadIdx.x + ROW_CACHE * blockDim.x; i < width; i += blockDim.x) {
        float y = __fmul_rn(__fmul_rn(row[i], scale), weight[i]);
        o[i] = y;
        amax = fmaxf(amax, fabsf(y));
    }
    amax = block_max_float(amax);
    float qscale = __double2float_rn(127.0 / fmax(1e-5, (double)amax));
    int total = 0;
#pragma unroll
    for (int c = 0; c < ROW_CACHE; c++) {
        int i = threadIdx.x + c * blockDim.x;
        if (i < width) {
            int r = min(max(nearest_int_of_product(v[c], qscale, fused), -128), 127);
            q[i] = (i8)r;
            total += r;
        }
    }
    for (int i = threadIdx.x + ROW_CACHE * blockDim.x; i < width; i += blockDim.x) {
        float y = __fmul_rn(__fmul_rn(row[i], scale), weight[i]);
        int r = min(max(nearest_int_of_product(y, qscale, fused), -128), 127);
        q[i] = (i8)r;
        total += r;
    }
    total = block_sum_int(total);
    if (threadIdx.x == 0) {
        scales[blockIdx.x] = qscale;
        sums[blockIdx.x] = total;
    }
}

// formats::I8sActivations::quantize, one token per block.
extern "C" __global__ void quantize_i8s(const float* x, int k, int fused, i8* codes, float* scales,
                                        int* sums) {
    const float* row = x + (size_t)blockIdx.x * k;
    i8* q = codes + (size_t)blockIdx.x * k;
    float amax = 0.0f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) amax = fmaxf(amax, fabsf(row[i]));
    amax = block_max_float(amax);
    float scale = __double2float_rn(127.0 / fmax(1e-5, (double)amax));
    int sum = 0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        int r = min(max(nearest_int_of_product(row[i], scale, fused), -128), 127);
        q[i] = (i8)r;
        sum += r;
    }
    sum = block_sum_int(sum);
    if (threadIdx.x == 0) {
        scales[blockIdx.x] = scale;
        sums[blockIdx.x] = sum;
    }
}

// formats::BlockQ8K::quantize: block (b, t) of 256 threads quantizes block b of token t.
extern "C" __global__ void quantize_q8k(const float* x, int k, int fused, i8* codes, float* d) {
    __shared__ float best_abs[8];
    __shared__ int best_at[8];
    __shared__ float block_max;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    size_t at = (size_t)blockIdx.y * k + (size_t)blockIdx.x * 256 + threadIdx.x;
    float v = x[at];
    float a = fabsf(v);
    int i = threadIdx.x;
    // The largest |v|, the first on ties, as the CPU's strict `>` scan keeps it.
    for (int o = 16; o > 0; o >>= 1) {
        float oa = __shfl_xor_sync(FULL_MASK, a, o);
        int oi = __shfl_xor_sync(FULL_MASK, i, o);
        if (oa > a || (oa == a && oi < i)) {
            a = oa;
            i = oi;
        }
    }
    if (lane == 0) {
        best_abs[warp] = a;
        best_at[warp] = i;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float ba = best_abs[0];
        int bi = best_at[0];
        for (int w = 1; w < 8; w++) {
            if (best_abs[w] > ba) {
                ba = best_abs[w];
                bi = best_at[w];
            }
        }
        block_max = ba == 0.0f ? 0.0f : x[at - threadIdx.x + bi];
    }
    __syncthreads();
    float max = block_max;
    size_t block = (size_t)blockIdx.y * (k / 256) + blockIdx.x;
    if (max == 0.0f) {
        codes[at] = 0;
        if (threadIdx.x == 0) d[block] = 0.0f;
        return;
    }
    float iscale = __fdiv_rn(-127.0f, max);
    codes[at] = (i8)min(nearest_int_of_product(iscale, v, fused), 127);
    if (threadIdx.x == 0) d[block] = __fdiv_rn(1.0f, iscale);
}

// Rows of an I2_S product per warp (the kernel is written for two), and the most tokens per
// block (grid.y walks the token tiles of `tile` tokens).
#define I2S_ROWS_PER_WARP 2
#define I2S_TOKEN_TILE 16

// kernels::i2s_epilogue of the integer dot `s` of a row with a token's codes (their sum `sum`,
// their scale `act_scale`), and the optional output scale.
__device__ __forceinline__ float i2s_epilogue(int s, int sum, float act_scale, float w_scale,
                                              float out_scale, int has_out_scale) {
    float r = __fmul_rn(__fdiv_rn(__fsub_rn(__int2float_rn(s), __int2float_rn(sum)), act_scale),
                        w_scale);
    return has_out_scale ? __fmul_rn(r, out_scale) : r;
}

// kernels::scalar::i2s_dot_ref with kernels::i2s_epilogue. A block of 8 warps stages the int8
// activations of `tile` (at most I2S_TOKEN_TILE) tokens in shared memory (dynamic: tile × k
// bytes) and each
// warp multiplies I2S_ROWS_PER_WARP rows against all of them. Rows are repacked at upload to one
// u32 per 16 weights, weight 16q + 4s + b at bits 8b + 2s of word q, so `(word >> 2s) & 0x03030303`
// holds four consecutive codes and lane q reads the 16 activation bytes of word q. `accumulate`
// adds each result to what `out` holds (a residual connection).
extern "C" __global__ void i2s_matmul(const u32* w, float w_scale, const i8* act,
                                      const float* act_scale, const int* act_sum, float out_scale,
                                      int has_out_scale, int accumulate, float* out, int rows,
                                      int k, int tokens, int tile) {
    extern __shared__ int4 staged[];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int t0 = blockIdx.y * tile;
    int nt = min(tile, tokens - t0);
    int words = k / 16;
    const int4* src = (const int4*)(act + (size_t)t0 * k);
    for (int i = threadIdx.x; i < nt * words; i += blockDim.x) staged[i] = __ldg(src + i);
    __syncthreads();
    int row0 = (blockIdx.x * (blockDim.x >> 5) + warp) * I2S_ROWS_PER_WARP;
    if (row0 >= rows) return;
    // The warp's two rows advance together, so that their weight loads are in flight at once; a
    // missing second row repeats the first and is not written.
    int row1 = min(row0 + 1, rows - 1);
    const u32* w0 = w + (size_t)row0 * words;
    const u32* w1 = w + (size_t)row1 * words;
    int acc0[I2S_TOKEN_TILE], acc1[I2S_TOKEN_TILE];
#pragma unroll
    for (int tt = 0; tt < I2S_TOKEN_TILE; tt++) acc0[tt] = acc1[tt] = 0;
#pragma unroll 2
    for (int q = lane; q < words; q += 32) {
        u32 v0 = __ldg(w0 + q), v1 = __ldg(w1 + q);
        int a0 = (int)(v0 & 0x03030303u), a1 = (int)((v0 >> 2) & 0x03030303u);
        int a2 = (int)((v0 >> 4) & 0x03030303u), a3 = (int)((v0 >> 6) & 0x03030303u);
        int b0 = (int)(v1 & 0x03030303u), b1 = (int)((v1 >> 2) & 0x03030303u);
        int b2 = (int)((v1 >> 4) & 0x03030303u), b3 = (int)((v1 >> 6) & 0x03030303u);
#pragma unroll
        for (int tt = 0; tt < I2S_TOKEN_TILE; tt++) {
            if (tt < nt) {
                int4 x = staged[tt * words + q];
                acc0[tt] = __dp4a(a3, x.w, __dp4a(a2, x.z, __dp4a(a1, x.y, __dp4a(a0, x.x, acc0[tt]))));
                acc1[tt] = __dp4a(b3, x.w, __dp4a(b2, x.z, __dp4a(b1, x.y, __dp4a(b0, x.x, acc1[tt]))));
            }
        }
    }
#pragma unroll
    for (int tt = 0; tt < I2S_TOKEN_TILE; tt++) {
        if (tt < nt) {
            int s0 = warp_sum_int(acc0[tt]), s1 = warp_sum_int(acc1[tt]);
            int t = t0 + tt;
            if (lane < 2 && (lane == 0 || row0 + 1 < rows)) {
                int row = row0 + lane;
                float r = i2s_epilogue(lane == 0 ? s0 : s1, act_sum[t], act_scale[t], w_scale,
                                       out_scale, has_out_scale);
                size_t at = (size_t)t * rows + row;
                out[at] = accumulate ? __fadd_rn(out[at], r) : r;
            }
        }
    }
}

// Weights an I2_S lane of a one-token product reads per load: one uint4 of repacked words.
#define I2S_GEMV_WEIGHTS 64
// Loads of each row a lane issues before it multiplies.
#define I2S_GEMV_UNROLL 4

// The dp4a of one repacked word (16 weights) with its 16 activation bytes.
__device__ __forceinline__ int i2s_word_dot(u32 word, int4 x, int acc) {
    acc = __dp4a((int)(word & 0x03030303u), x.x, acc);
    acc = __dp4a((int)((word >> 2) & 0x03030303u), x.y, acc);
    acc = __dp4a((int)((word >> 4) & 0x03030303u), x.z, acc);
    return __dp4a((int)((word >> 6) & 0x03030303u), x.w, acc);
}

// The integer dots of R rows of `k` weights (k a multiple of I2S_GEMV_WEIGHTS) with one token's
// codes, computed by one warp: lane l reads uint4s l, l + 32, ... of each row, I2S_GEMV_UNROLL of
// them per row before any product, so that every row's loads are in flight together. Every lane
// gets the sums (integer sums do not depend on the order).
template <int R>
__device__ __forceinline__ void i2s_rows_dot(const u32* const* w, const i8* act, int k, int* dot) {
    int lane = threadIdx.x & 31;
    int n = k / I2S_GEMV_WEIGHTS;
    const int4* x = (const int4*)act;
    int acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0;
    for (int p0 = 0; p0 < n; p0 += 32 * I2S_GEMV_UNROLL) {
        uint4 v[R][I2S_GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < I2S_GEMV_UNROLL; u++) {
            int p = p0 + 32 * u + lane;
#pragma unroll
            for (int r = 0; r < R; r++)
                v[r][u] = p < n ? __ldg((const uint4*)w[r] + p) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < I2S_GEMV_UNROLL; u++) {
            int p = p0 + 32 * u + lane;
            if (p < n) {
                int4 x0 = __ldg(x + 4 * p), x1 = __ldg(x + 4 * p + 1);
                int4 x2 = __ldg(x + 4 * p + 2), x3 = __ldg(x + 4 * p + 3);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    int a = i2s_word_dot(v[r][u].x, x0, acc[r]);
                    a = i2s_word_dot(v[r][u].y, x1, a);
                    a = i2s_word_dot(v[r][u].z, x2, a);
                    acc[r] = i2s_word_dot(v[r][u].w, x3, a);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) dot[r] = warp_sum_int(acc[r]);
}

// kernels::CpuKernels::i2s_gemm of one token (a decode step), one warp per row, for the rows of
// up to three matrices of `k` weights that read the same activations (a layer's query, key and
// value projections) in one launch: part i has `rows_i` rows, its codes `w_i`, scale `ws_i`,
// optional output scale (`os_i`, `has_os_i`) and output `out_i`. Parts of no rows are skipped.
// With `accumulate` every result is added to what its output holds (a residual connection).
extern "C" __global__ void i2s_gemv(const i8* act, const float* act_scale, const int* act_sum,
                                    int k, int accumulate, const u32* w0, float ws0, float os0,
                                    int has_os0, float* out0, int rows0, const u32* w1, float ws1,
                                    float os1, int has_os1, float* out1, int rows1, const u32* w2,
                                    float ws2, float os2, int has_os2, float* out2, int rows2) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const u32* w = w0;
    float ws = ws0, os = os0;
    int has_os = has_os0;
    float* out = out0;
    if (row >= rows0) {
        row -= rows0;
        w = w1, ws = ws1, os = os1, has_os = has_os1, out = out1;
        if (row >= rows1) {
            row -= rows1;
            w = w2, ws = ws2, os = os2, has_os = has_os2, out = out2;
            if (row >= rows2) return;
        }
    }
    const u32* rw[1] = {w + (size_t)row * (k / 16)};
    int dot[1];
    i2s_rows_dot<1>(rw, act, k, dot);
    if ((threadIdx.x & 31) == 0) {
        float r = i2s_epilogue(dot[0], act_sum[0], act_scale[0], ws, os, has_os);
        out[row] = accumulate ? __fadd_rn(out[row], r) : r;
    }
}

// model::ops::silu_mul of one value at index `i` of a row of `width`: vec_expf on the whole
// vectors of `lanes` values of the row, expf on the tail.
__device__ __forceinline__ float silu_gate(float g, float u, int i, int width, int lanes) {
    float e = i < width / lanes * lanes ? vec_expf(-g, lanes) : expf(-g);
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, e)), u);
}

// model::ops::relu_sqr_mul of one value.
__device__ __forceinline__ float relu_sqr_gate(float g, float u) {
    float r = fmaxf(g, 0.0f);
    return __fmul_rn(__fmul_rn(r, r), u);
}

// The gate and up projections of one token and their gating in one launch: warp i computes row i
// of both matrices (codes `wg`/`wu`, scales, optional output scales) as i2s_gemv does, and writes
// silu(gate) · up (`silu`) or relu(gate)² · up to `out[i]`.
extern "C" __global__ void i2s_gemv_glu(const i8* act, const float* act_scale,
                                        const int* act_sum, int k, const u32* wg, float wsg,
                                        float osg, int has_osg, const u32* wu, float wsu, float osu,
                                        int has_osu, float* out, int rows, int silu, int lanes) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    size_t at = (size_t)row * (k / 16);
    const u32* rw[2] = {wg + at, wu + at};
    int dot[2];
    i2s_rows_dot<2>(rw, act, k, dot);
    if ((threadIdx.x & 31) == 0) {
        float g = i2s_epilogue(dot[0], act_sum[0], act_scale[0], wsg, osg, has_osg);
        float u = i2s_epilogue(dot[1], act_sum[0], act_scale[0], wsu, osu, has_osu);
        out[row] = silu ? silu_gate(g, u, row, rows, lanes) : relu_sqr_gate(g, u);
    }
}

// kernels::scalar::tq2_dot_ref (TQ1_0 rows are repacked to this layout at upload): one warp per
// row, lane m reads bytes m and 32 + m of each block; the eight integer lanes of the CPU kernel are
// the sums of lanes 4l..4l+3, scaled into eight float lanes and summed by hsum_float_8.
extern "C" __global__ void tq_matmul(const u8* codes, const float* w_d, const i8* act,
                                     const float* act_d, float out_scale, int has_out_scale,
                                     int accumulate, int fused, float* out, int rows, int k,
                                     int tokens) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int t0 = blockIdx.y * TOKEN_TILE;
    if (row >= rows) return;
    int nt = min(TOKEN_TILE, tokens - t0);
    int nb = k / 256;
    float acc[TOKEN_TILE];
#pragma unroll
    for (int tt = 0; tt < TOKEN_TILE; tt++) acc[tt] = 0.0f;
    for (int b = 0; b < nb; b++) {
        const u8* block = codes + ((size_t)row * nb + b) * 64;
        u32 c0 = block[lane], c1 = block[32 + lane];
        float dw = w_d[(size_t)row * nb + b];
#pragma unroll
        for (int tt = 0; tt < TOKEN_TILE; tt++) {
            if (tt < nt) {
                const i8* q = act + (size_t)(t0 + tt) * k + (size_t)b * 256;
                int s = 0;
#pragma unroll
                for (int l = 0; l < 4; l++) {
                    s += (int)((c0 >> (2 * l)) & 3) * q[32 * l + lane];
                    s += (int)((c1 >> (2 * l)) & 3) * q[128 + 32 * l + lane];
                }
                int qs = 0;
#pragma unroll
                for (int i = 0; i < 8; i++) qs += q[8 * lane + i];
                int v = s - qs;
                v += __shfl_xor_sync(FULL_MASK, v, 1);
                v += __shfl_xor_sync(FULL_MASK, v, 2);
                float d = __fmul_rn(act_d[(size_t)(t0 + tt) * nb + b], dw);
                float fv = __int2float_rn(v);
                acc[tt] = fused ? __fmaf_rn(fv, d, acc[tt]) : __fadd_rn(__fmul_rn(fv, d), acc[tt]);
            }
        }
    }
#pragma unroll
    for (int tt = 0; tt < TOKEN_TILE; tt++) {
        float x[8];
#pragma unroll
        for (int l = 0; l < 8; l++) x[l] = __shfl_sync(FULL_MASK, acc[tt], 4 * l);
        if (lane == 0 && tt < nt) {
            float r0 = __fadd_rn(x[4], x[0]), r1 = __fadd_rn(x[5], x[1]);
            float r2 = __fadd_rn(x[6], x[2]), r3 = __fadd_rn(x[7], x[3]);
            float r = __fadd_rn(__fadd_rn(r0, r2), __fadd_rn(r1, r3));
            if (has_out_scale) r = __fmul_rn(r, out_scale);
            size_t at = (size_t)(t0 + tt) * rows + row;
            out[at] = accumulate ? __fadd_rn(out[at], r) : r;
        }
    }
}

__device__ __forceinline__ float load_value(const u16* p, size_t i) { return f16_to_f32(p[i]); }
__device__ __forceinline__ float load_value(const float* p, size_t i) { return p[i]; }

// hsum8_pairs of the values held by lanes 0..7 of each group of `width` lanes; the group's
// lane 0 gets the result.
__device__ __forceinline__ float lanes_hsum8_pairs(float h, int width) {
    float r = __fadd_rn(__shfl_down_sync(FULL_MASK, h, 4, width), h);
    float u = __fadd_rn(r, __shfl_down_sync(FULL_MASK, r, 2, width));
    return __fadd_rn(u, __shfl_down_sync(FULL_MASK, u, 1, width));
}

// kernels::reduce's reduce_vec_dot of the four accumulators of `lanes` lanes, chain c (lane
// c % lanes of accumulator c / lanes) held by warp lane c (`a0`) or, for c >= 32, by lane c - 32
// (`a1`); lane 0 gets the result.
__device__ __forceinline__ float lanes_reduce_vec_dot(float a0, float a1, int lanes) {
    if (lanes == 8) {
        float c1 = __shfl_down_sync(FULL_MASK, a0, 8);
        float c2 = __shfl_down_sync(FULL_MASK, a0, 16);
        float c3 = __shfl_down_sync(FULL_MASK, a0, 24);
        float x = __fadd_rn(__fadd_rn(a0, c2), __fadd_rn(c1, c3));
        // ggml's hadd tail: ((x0 + x4) + (x1 + x5)) + ((x2 + x6) + (x3 + x7)).
        float t = __fadd_rn(x, __shfl_down_sync(FULL_MASK, x, 4));
        float u = __fadd_rn(t, __shfl_down_sync(FULL_MASK, t, 1));
        return __fadd_rn(u, __shfl_down_sync(FULL_MASK, u, 2));
    }
    float b0 = __shfl_down_sync(FULL_MASK, a0, 16), b1 = __shfl_down_sync(FULL_MASK, a1, 16);
    float x = __fadd_rn(__fadd_rn(a0, a1), __fadd_rn(b0, b1));
    float h = __fadd_rn(__shfl_down_sync(FULL_MASK, x, 8), x);
    return lanes_hsum8_pairs(h, 32);
}

// kernels::scalar::f16_vec_dot_ref / f32_vec_dot_ref over `n` values, computed by one warp: lane
// L runs the chains L and L + 32 (when there are 4 · lanes = 64), each accumulating its values
// in order with fused multiply-adds; the chains are reduced in the CPU's tree and the tail added
// as the CPU does (in f64 of rounded f32 products for f16 operands, in f32 for f32 ones).
// `x_f16` rounds the second operand to f16 first. Returns the dot in lane 0.
template <typename W, typename X>
__device__ float warp_vec_dot(const W* w, const X* x, int n, int lanes, int x_f16, int f64_tail) {
    int lane = threadIdx.x & 31;
    int step = 4 * lanes;
    int whole = n - n % step;
    float a0 = 0.0f, a1 = 0.0f;
    int i = 0;
    // Whole steps VEC_DOT_CHUNK at a time, every load of a chunk issued before its products.
    for (; i + VEC_DOT_CHUNK * step <= whole; i += VEC_DOT_CHUNK * step) {
        float wv[VEC_DOT_CHUNK], xv[VEC_DOT_CHUNK], wv1[VEC_DOT_CHUNK], xv1[VEC_DOT_CHUNK];
#pragma unroll
        for (int u = 0; u < VEC_DOT_CHUNK; u++) {
            wv[u] = load_value(w, i + u * step + lane);
            xv[u] = load_value(x, i + u * step + lane);
            if (step == 64) {
                wv1[u] = load_value(w, i + u * step + 32 + lane);
                xv1[u] = load_value(x, i + u * step + 32 + lane);
            }
        }
#pragma unroll
        for (int u = 0; u < VEC_DOT_CHUNK; u++) {
            a0 = __fmaf_rn(wv[u], x_f16 ? round_f16(xv[u]) : xv[u], a0);
            if (step == 64) a1 = __fmaf_rn(wv1[u], x_f16 ? round_f16(xv1[u]) : xv1[u], a1);
        }
    }
    for (; i < whole; i += step) {
        float xv = load_value(x, i + lane);
        a0 = __fmaf_rn(load_value(w, i + lane), x_f16 ? round_f16(xv) : xv, a0);
        if (step == 64) {
            float xv1 = load_value(x, i + 32 + lane);
            a1 = __fmaf_rn(load_value(w, i + 32 + lane), x_f16 ? round_f16(xv1) : xv1, a1);
        }
    }
    float v = lanes_reduce_vec_dot(a0, a1, lanes);
    int tail = n - whole;
    if (tail == 0) return v;
    // Tail products in parallel (lane i takes value whole + i, and whole + 32 + i), summed in
    // order by lane 0.
    float p0 = 0.0f, p1 = 0.0f;
    if (lane < tail) {
        float xv = load_value(x, whole + lane);
        p0 = __fmul_rn(load_value(w, whole + lane), x_f16 ? round_f16(xv) : xv);
    }
    if (32 + lane < tail) {
        float xv = load_value(x, whole + 32 + lane);
        p1 = __fmul_rn(load_value(w, whole + 32 + lane), x_f16 ? round_f16(xv) : xv);
    }
    double sum = (double)v;
    for (int i = 0; i < tail; i++) {
        float p = __shfl_sync(FULL_MASK, i < 32 ? p0 : p1, i & 31);
        if (f64_tail) {
            sum += (double)p;
        } else {
            v = __fadd_rn(v, p);
        }
    }
    return f64_tail ? __double2float_rn(sum) : v;
}

// kernels::scalar::f16_tiled_dot_ref / f32_tiled_dot_ref over `n` values (a multiple of
// `lanes`), computed by the `lanes` consecutive lanes of one group: lane l accumulates values
// l, l + lanes, ... in order, then kernels::reduce's reduce_tiled; the group's first lane gets
// the dot.
template <typename W, typename X>
__device__ float group_tiled_dot(const W* w, const X* x, int n, int lanes) {
    int l = (threadIdx.x & 31) % lanes;
    float acc = 0.0f;
#pragma unroll 4
    for (int i = l; i < n; i += lanes) acc = __fmaf_rn(load_value(w, i), load_value(x, i), acc);
    if (lanes == 8) return lanes_hsum8_pairs(acc, 8);
    float h = __fadd_rn(__shfl_down_sync(FULL_MASK, acc, 8, 16), acc);
    return lanes_hsum8_pairs(h, 16);
}

// kernels::CpuKernels::f16_gemm / f32_gemm: dense rows times f32 tokens in the CPU's order. With
// `tiled` (two or more tokens, rows a multiple of `lanes`) each group of `lanes` lanes of a warp
// takes one token (tinyBLAS's order); otherwise the warp computes one token at a time
// (ggml_vec_dot's order, activations rounded to f16 for f16 weights). One warp per row. With
// `accumulate` every product is added to what `out` holds (a residual connection).
template <typename W>
__device__ void dense_matmul(const W* w, const float* x, int tiled, int lanes, int f16_weights,
                             float out_scale, int has_out_scale, int accumulate, float* out,
                             int rows, int k, int tokens) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int row = blockIdx.x * (blockDim.x >> 5) + warp;
    if (row >= rows) return;
    const W* wr = w + (size_t)row * k;
    if (tiled) {
        int groups = 32 / lanes, g = lane / lanes;
        for (int t0 = 0; t0 < tokens; t0 += groups) {
            int t = min(t0 + g, tokens - 1);
            float s = group_tiled_dot(wr, x + (size_t)t * k, k, lanes);
            if (lane % lanes == 0 && t0 + g < tokens) {
                if (has_out_scale) s = __fmul_rn(s, out_scale);
                size_t at = (size_t)t * rows + row;
                out[at] = accumulate ? __fadd_rn(out[at], s) : s;
            }
        }
        return;
    }
    for (int t = 0; t < tokens; t++) {
        float s = warp_vec_dot(wr, x + (size_t)t * k, k, lanes, f16_weights, f16_weights);
        if (lane == 0) {
            if (has_out_scale) s = __fmul_rn(s, out_scale);
            size_t at = (size_t)t * rows + row;
            out[at] = accumulate ? __fadd_rn(out[at], s) : s;
        }
    }
}

extern "C" __global__ void f16_matmul(const u16* w, const float* x, int tiled, int lanes,
                                      float out_scale, int has_out_scale, int accumulate,
                                      float* out, int rows, int k, int tokens) {
    dense_matmul(w, x, tiled, lanes, 1, out_scale, has_out_scale, accumulate, out, rows, k,
                 tokens);
}

extern "C" __global__ void f32_matmul(const float* w, const float* x, int tiled, int lanes,
                                      float out_scale, int has_out_scale, int accumulate,
                                      float* out, int rows, int k, int tokens) {
    dense_matmul(w, x, tiled, lanes, 0, out_scale, has_out_scale, accumulate, out, rows, k,
                 tokens);
}

// model::ops::rope on the queries and keys of token blockIdx.x (at position *n_past + blockIdx.x),
// with angles from the host's table `cos_sin[pos][i] = (cos, sin)`, then the keys and values of
// that token stored in the F16 cache of one layer: keys `[kv_head][cell][head_dim]`, values
// transposed, `[kv_head][head_dim][cell]`, so both products of attention read along a row.
extern "C" __global__ void rope_store(float* q, float* k, const float* v, const float* cos_sin,
                                      u16* k_cache, u16* v_cache, int n_head, int n_head_kv,
                                      int head_dim, int n_rot, int neox, int fused,
                                      const int* n_past, int capacity) {
    int t = blockIdx.x;
    int pos = *n_past + t;
    int half = n_rot / 2;
    int n_embd = n_head * head_dim, n_embd_kv = n_head_kv * head_dim;
    const float* angles = cos_sin + (size_t)pos * n_rot;
    for (int idx = threadIdx.x; idx < (n_head + n_head_kv) * half; idx += blockDim.x) {
        int head = idx / half, i = idx % half;
        float* x = head < n_head ? q + (size_t)t * n_embd + head * head_dim
                                 : k + (size_t)t * n_embd_kv + (head - n_head) * head_dim;
        int a = neox ? i : 2 * i;
        int b = neox ? i + half : 2 * i + 1;
        float c = angles[2 * i], s = angles[2 * i + 1];
        float x0 = x[a], x1 = x[b];
        if (fused) {
            x[a] = __fmaf_rn(x0, c, -__fmul_rn(x1, s));
            x[b] = __fmaf_rn(x0, s, __fmul_rn(x1, c));
        } else {
            x[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
            x[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < n_embd_kv; idx += blockDim.x) {
        int kv_head = idx / head_dim, d = idx % head_dim;
        k_cache[((size_t)kv_head * capacity + pos) * head_dim + d] =
            f32_to_f16(k[(size_t)t * n_embd_kv + idx]);
        v_cache[((size_t)kv_head * head_dim + d) * capacity + pos] =
            f32_to_f16(v[(size_t)t * n_embd_kv + idx]);
    }
}

// The softmax of model::attention::KvCache::attend over `probs[..n_kv]`, whose first `valid`
// entries hold the scaled scores and the rest zeros: the reference's expf, lane sums added in
// f64 in order, then the probabilities, rounded to f16 with `round_probs`. Dynamic shared memory
// after `probs` holds the `n_kv / lanes` lane sums. Every thread of the block takes part.
__device__ void attention_softmax(float* probs, int valid, int n_kv, int lanes, int round_probs) {
    __shared__ float inverse;
    float* group_sums = probs + n_kv;
    int groups = n_kv / lanes;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < valid; j += blockDim.x) m = fmaxf(m, probs[j]);
    m = block_max_float(m);
    for (int j = threadIdx.x; j < valid; j += blockDim.x) probs[j] = vec_expf(__fsub_rn(probs[j], m), lanes);
    __syncthreads();
    for (int g = threadIdx.x; g < groups; g += blockDim.x)
        group_sums[g] = lane_sum(probs + g * lanes, lanes, lanes);
    __syncthreads();
    if (threadIdx.x == 0) {
        double sum = 0.0;
        for (int g = 0; g < groups; g++) sum += (double)group_sums[g];
        inverse = __double2float_rn(1.0 / sum);
    }
    __syncthreads();
    for (int j = threadIdx.x; j < valid; j += blockDim.x) {
        float p = __fmul_rn(probs[j], inverse);
        probs[j] = round_probs ? round_f16(p) : p;
    }
    __syncthreads();
}

// Query `head` of token `t`, f16-rounded, into `query` (shared; the caller synchronizes).
__device__ __forceinline__ void load_query(const float* q, float* query, int t, int head,
                                           int n_head, int head_dim) {
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
        query[d] = round_f16(q[((size_t)t * n_head + head) * head_dim + d]);
}

// The scaled score of cell j of one head: ggml_vec_dot_f16 of the key and the f16-rounded query,
// one warp per cell.
__device__ __forceinline__ float attention_score(const u16* keys, const float* query, int j,
                                                 int head_dim, int lanes, float scale) {
    return __fmul_rn(warp_vec_dot(keys + (size_t)j * head_dim, query, head_dim, lanes, 0, 1), scale);
}

// Cells the CPU attends after `end` positions: `end` rounded up to 32, at most `capacity`.
__device__ __forceinline__ int attended_cells(int end, int capacity) {
    return min((end + 31) / 32 * 32, capacity);
}

// model::attention::KvCache::attend for head blockIdx.x and token blockIdx.y of a batch of
// `tokens` over the F16 cache, in the CPU's order: each score is ggml_vec_dot_f16 of the key and
// the f16-rounded query (one warp per cell), the masked softmax uses the reference's expf with
// lane sums added in f64, and each output is the CPU's product of the transposed values with the
// probabilities over the `n_kv` cells the CPU attends (the batch's end rounded up to 32): the
// vector dot on f16-rounded probabilities for one token, the tiled dot otherwise. `n_past` is
// read from device memory, so that one captured launch serves every decode step. Dynamic shared
// memory: `n_kv` probabilities and their lane sums.
extern "C" __global__ void attention(const float* q, const u16* k_cache, const u16* v_cache,
                                     float* out, int n_head, int n_head_kv, int head_dim,
                                     int capacity, const int* n_past_at, int tokens, float scale,
                                     int lanes) {
    extern __shared__ float shared[];
    int n_past = *n_past_at;
    int n_kv = attended_cells(n_past + tokens, capacity);
    __shared__ float query[256];
    int head = blockIdx.x, t = blockIdx.y;
    int kv_head = head / (n_head / n_head_kv);
    int n_embd = n_head * head_dim;
    int valid = n_past + t + 1;
    float* probs = shared;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    load_query(q, query, t, head, n_head, head_dim);
    for (int j = valid + threadIdx.x; j < n_kv; j += blockDim.x) probs[j] = 0.0f;
    __syncthreads();
    const u16* keys = k_cache + (size_t)kv_head * capacity * head_dim;
    for (int j = warp; j < valid; j += warps) {
        float s = attention_score(keys, query, j, head_dim, lanes, scale);
        if (lane == 0) probs[j] = s;
    }
    __syncthreads();
    attention_softmax(probs, valid, n_kv, lanes, tokens == 1);
    const u16* values = v_cache + (size_t)kv_head * head_dim * capacity;
    float* o = out + (size_t)t * n_embd + head * head_dim;
    if (tokens == 1) {
        for (int d = warp; d < head_dim; d += warps) {
            float s = warp_vec_dot(values + (size_t)d * capacity, probs, n_kv, lanes, 0, 1);
            if (lane == 0) o[d] = s;
        }
    } else {
        int per_warp = 32 / lanes, g = lane / lanes;
        for (int d0 = warp * per_warp; d0 < head_dim; d0 += warps * per_warp) {
            int d = min(d0 + g, head_dim - 1);
            float s = group_tiled_dot(values + (size_t)d * capacity, probs, n_kv, lanes);
            if (lane % lanes == 0 && d0 + g < head_dim) o[d] = s;
        }
    }
}

// The first half of a decode step's attention split across the context (flash-decoding): the
// scaled scores of head blockIdx.x for the cells that the blocks blockIdx.y of gridDim.y take in
// turn, one warp per cell, into `scores[head][cell]` (`capacity` cells per head).
extern "C" __global__ void attention_scores(const float* q, const u16* k_cache, float* scores,
                                            int n_head, int n_head_kv, int head_dim,
                                            int capacity, const int* n_past_at, float scale,
                                            int lanes) {
    __shared__ float query[256];
    int head = blockIdx.x;
    int kv_head = head / (n_head / n_head_kv);
    int valid = *n_past_at + 1;
    int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    load_query(q, query, 0, head, n_head, head_dim);
    __syncthreads();
    const u16* keys = k_cache + (size_t)kv_head * capacity * head_dim;
    float* row = scores + (size_t)head * capacity;
    for (int j = blockIdx.y * warps + (threadIdx.x >> 5); j < valid; j += gridDim.y * warps) {
        float s = attention_score(keys, query, j, head_dim, lanes, scale);
        if (lane == 0) row[j] = s;
    }
}

// The second half: every block of head blockIdx.x takes the softmax of the head's scores, as
// `attention` does for one token, then its warps write the outputs blockIdx.y · warps + warp.
// Dynamic shared memory as `attention`'s.
extern "C" __global__ void attention_values(const float* scores, const u16* v_cache, float* out,
                                            int n_head, int n_head_kv, int head_dim,
                                            int capacity, const int* n_past_at, int lanes) {
    extern __shared__ float shared[];
    int valid = *n_past_at + 1;
    int n_kv = attended_cells(valid, capacity);
    int head = blockIdx.x;
    int kv_head = head / (n_head / n_head_kv);
    const float* row = scores + (size_t)head * capacity;
    float* probs = shared;
    for (int j = threadIdx.x; j < n_kv; j += blockDim.x) probs[j] = j < valid ? row[j] : 0.0f;
    __syncthreads();
    attention_softmax(probs, valid, n_kv, lanes, 1);
    int d = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (d >= head_dim) return;
    const u16* values = v_cache + ((size_t)kv_head * head_dim + d) * capacity;
    float s = warp_vec_dot(values, probs, n_kv, lanes, 0, 1);
    if ((threadIdx.x & 31) == 0) out[(size_t)head * head_dim + d] = s;
}

// model::ops::silu_mul: `gate = silu(gate) · up` on rows of `width`.
extern "C" __global__ void silu_mul(float* gate, const float* up, int width, int lanes, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    gate[i] = silu_gate(gate[i], up[i], i % width, width, lanes);
}

// model::ops::relu_sqr_mul.
extern "C" __global__ void relu_sqr_mul(float* gate, const float* up, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    gate[i] = relu_sqr_gate(gate[i], up[i]);
}

// model::argmax of one row: every block reduces a stride of the row and folds its best into
// `*best` with atomicMax on a key that orders by value, then by the lower index (`*best` must
// start at 0). NaN never wins, as in the CPU's strict comparisons.
extern "C" __global__ void argmax(const float* row, int n, unsigned long long* best) {
    unsigned long long key = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float x = row[i];
        if (x != x) continue;
        u32 bits = x == 0.0f ? 0u : __float_as_uint(x);
        u32 ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
        unsigned long long k = ((unsigned long long)ordered << 32) | (0xffffffffu - (u32)i);
        key = k > key ? k : key;
    }
    for (int o = 16; o > 0; o >>= 1) {
        unsigned long long other = __shfl_xor_sync(FULL_MASK, key, o);
        key = other > key ? other : key;
    }
    if ((threadIdx.x & 31) == 0 && key != 0) atomicMax(best, key);
}

// Weights of a mass added in one run (model::pick::MASS_BLOCK), and the most runs `pick` keeps.
#define MASS_BLOCK 256
#define MAX_MASS_BLOCKS 2048
// model::pick::Narrowing, as `pick` takes it.
#define PICK_TOP_K 0
#define PICK_TOP_P 1
#define PICK_AT_LEAST 2
#define PICK_DRAW 3
// model::pick::Picked, as `pick` reports it in result[0].
#define PICKED_ROW 0
#define PICKED_TOKEN 1
#define PICKED_CANDIDATES 2

// Values of a row one thread of `pick` loads before it uses any, to keep loads in flight.
#define PICK_UNROLL 8

// Calls f(i, x[i]) for the values of `x[..n]` this thread takes in the block's stride.
template <typename F> __device__ __forceinline__ void for_each_value(const float* x, int n, F f) {
    for (int base = threadIdx.x; base < n; base += PICK_UNROLL * blockDim.x) {
        float v[PICK_UNROLL];
#pragma unroll
        for (int u = 0; u < PICK_UNROLL; u++) {
            int i = base + u * blockDim.x;
            v[u] = i < n ? x[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < PICK_UNROLL; u++) {
            int i = base + u * blockDim.x;
            if (i < n) f(i, v[u]);
        }
    }
}

// Calls f(i, x[i], keep) for i in [first, last) in this warp's order, 32 values a step, where
// `keep(x)` decides; returns how many were kept. `f` also gets the ballot of its step.
template <typename K, typename F>
__device__ __forceinline__ int warp_keep(const float* x, int first, int last, K keep, F f) {
    int lane = threadIdx.x & 31, kept = 0;
    for (int base = first; base < last; base += 32 * PICK_UNROLL) {
        float v[PICK_UNROLL];
#pragma unroll
        for (int u = 0; u < PICK_UNROLL; u++) {
            int i = base + 32 * u + lane;
            v[u] = i < last ? x[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < PICK_UNROLL; u++) {
            int i = base + 32 * u + lane;
            int kept_here = i < last && keep(v[u]);
            u32 ballot = __ballot_sync(FULL_MASK, kept_here);
            if (kept_here) f(i, v[u], kept + __popc(ballot & ((1u << lane) - 1)));
            kept += __popc(ballot);
        }
    }
    return kept;
}

// model::pick::pick_weight.
__device__ __forceinline__ float pick_weight(float logit, float max) {
    return vec_expf(__fsub_rn(logit, max), 8);
}

// A key that orders floats as f32::total_cmp does.
__device__ __forceinline__ u32 order_key(float x) {
    u32 u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// model::pick::block_masses of the weights of `work` divided by `temperature` against `max`
// into `masses` (thread b adds run b in order), and their total, added in order, to every
// thread.
__device__ double pick_masses(const float* work, int n, float temperature, float max,
                              double* masses) {
    __shared__ double total;
    int runs = (n + MASS_BLOCK - 1) / MASS_BLOCK;
    for (int b = threadIdx.x; b < runs; b += blockDim.x) {
        double s = 0.0;
        for (int i = b * MASS_BLOCK; i < min(n, (b + 1) * MASS_BLOCK); i++)
            s = __dadd_rn(s, (double)pick_weight(__fdiv_rn(work[i], temperature), max));
        masses[b] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int b = 0; b < runs; b++) t = __dadd_rn(t, masses[b]);
        total = t;
    }
    __syncthreads();
    return total;
}

// generation::sampling::draw over the whole row, on one thread.
__device__ int pick_draw(const float* work, int n, float temperature, float max,
                         const double* masses, double total, double unit) {
    double target = __dmul_rn(unit, total);
    int runs = (n + MASS_BLOCK - 1) / MASS_BLOCK;
    for (int b = 0; b < runs; b++) {
        if (target < masses[b]) {
            int last = -1;
            for (int i = b * MASS_BLOCK; i < min(n, (b + 1) * MASS_BLOCK); i++) {
                double w = (double)pick_weight(__fdiv_rn(work[i], temperature), max);
                if (w > 0.0) last = i;
                if (target < w) return i;
                target = __dsub_rn(target, w);
            }
            return last;
        }
        target = __dsub_rn(target, masses[b]);
    }
    for (int i = n - 1; i > 0; i--)
        if (pick_weight(__fdiv_rn(work[i], temperature), max) > 0.0f) return i;
    return 0;
}

// The largest key v such that the values of `work` with order keys at least v weigh at least
// `goal`, each weighing 1 (a count) or, with `by_mass`, its softmax weight times `scale`,
// rounded down (sums of them are exact and never exceed the true mass times `scale`). A radix
// descent over the key's bytes; where the goal is out of reach, 0.
__device__ u32 pick_threshold(const float* work, int n, int by_mass, float max, double scale,
                              u32 goal) {
    __shared__ u32 hist[256];
    __shared__ u32 prefix;
    __shared__ u32 above;
    __shared__ int done;
    if (threadIdx.x == 0) {
        prefix = 0;
        above = 0;
        done = 0;
    }
    u32 mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0;
        __syncthreads();
        // Each thread adds a run of values in one bucket before it touches shared memory: most
        // values share the leading bytes of their keys.
        u32 want = prefix;
        int bucket = -1;
        u32 run = 0;
        for_each_value(work, n, [&](int, float x) {
            u32 key = order_key(x);
            if ((key & mask) != want) return;
            int b = (key >> shift) & 255;
            if (b != bucket) {
                if (bucket >= 0) atomicAdd(&hist[bucket], run);
                bucket = b;
                run = 0;
            }
            run += by_mass ? (u32)__dmul_rz((double)pick_weight(x, max), scale) : (u32)1;
        });
        if (bucket >= 0) atomicAdd(&hist[bucket], run);
        __syncthreads();
        if (threadIdx.x == 0) {
            int digit = -1;
            u32 a = above;
            for (int d = 255; d >= 0; d--) {
                if (a + hist[d] >= goal) {
                    digit = d;
                    break;
                }
                a += hist[d];
            }
            if (digit < 0) {
                done = 1;
            } else {
                above = a;
                prefix |= (u32)digit << shift;
            }
        }
        __syncthreads();
        if (done) return 0;
        mask |= 255u << shift;
    }
    return prefix;
}

// The device's share of generation::Sampler's pick (model::pick::PickRequest) from a row of
// `n` logits, in one block: the row copied into `work` with the repetition penalty applied to
// the distinct tokens `penalized`, then by `mode` the whole draw (PICK_DRAW, at `unit` of the
// mass, after dividing by `temperature`) or the candidates of the first filter in token order:
// order keys at least the k-th largest (PICK_TOP_K), order keys whose softmax mass exceeds `p`
// by a margin, with the row's mass (PICK_TOP_P), or logits at least the largest plus `offset`
// (PICK_AT_LEAST). `result` = (picked, token, candidates, unused, mass as a double), and
// `candidates` holds (token, logit bits) pairs. A row with NaN, +∞ or −∞ logits, or with more
// than `cap` candidates, is left to the host (PICKED_ROW).
extern "C" __global__ void __launch_bounds__(1024)
    pick(const float* row, int n, float* work, const u32* penalized, int n_penalized, float penalty,
         int mode, int k, float p, float offset, float temperature, double unit, u32* candidates,
         int cap, int* result) {
    __shared__ double masses[MAX_MASS_BLOCKS];
    __shared__ int warp_offsets[32];
    __shared__ int count;
    int bad = n;
    for_each_value(row, n, [&](int i, float x) {
        if (x != x || x == INFINITY) bad = min(bad, i);
        work[i] = x;
    });
    bad = block_reduce(bad, Min(), n);
    if (bad < n) {
        if (threadIdx.x == 0) result[0] = PICKED_ROW;
        return;
    }
    for (int j = threadIdx.x; j < n_penalized; j += blockDim.x) {
        u32 t = penalized[j];
        if (t < (u32)n) {
            float l = work[t];
            work[t] = l <= 0.0f ? __fmul_rn(l, penalty) : __fdiv_rn(l, penalty);
        }
    }
    __syncthreads();
    float m = -INFINITY;
    int infinite = 0;
    for_each_value(work, n, [&](int, float x) {
        m = fmaxf(m, x);
        infinite |= x == -INFINITY;
    });
    m = block_max_float(m);
    infinite = block_sum_int(infinite);
    int runs = (n + MASS_BLOCK - 1) / MASS_BLOCK;
    if (infinite || ((mode == PICK_DRAW || mode == PICK_TOP_P) && runs > MAX_MASS_BLOCKS)) {
        if (threadIdx.x == 0) result[0] = PICKED_ROW;
        return;
    }
    if (mode == PICK_DRAW) {
        float max = __fdiv_rn(m, temperature);
        double total = pick_masses(work, n, temperature, max, masses);
        if (threadIdx.x == 0) {
            result[0] = PICKED_TOKEN;
            result[1] = pick_draw(work, n, temperature, max, masses, total, unit);
        }
        return;
    }
    double mass = 0.0;
    u32 key_min = 0;
    float at_least = __fadd_rn(m, offset);
    if (mode == PICK_TOP_K) {
        key_min = pick_threshold(work, n, 0, m, 0.0, (u32)k);
    } else if (mode == PICK_TOP_P) {
        mass = pick_masses(work, n, 1.0f, m, masses);
        // Weights in units of the mass over 2^32 − 1 − n, so that their sum fits 32 bits; the
        // goal, rounded up, may be out of reach only for p within 2n / 2^32 of 1.
        double scale = (4294967295.0 - n) / mass;
        double goal = ceil(__dmul_rn(__dmul_rn(__dadd_rn((double)p, 1e-6), mass), scale));
        key_min = pick_threshold(work, n, 1, m, scale, goal >= 4294967295.0 ? 0xffffffffu : (u32)goal);
    }
    // Warps take contiguous segments of the row in order, 32 values a step; a ballot orders
    // each step, and a scan over the warps places each segment.
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    int per_warp = ((n + 31) / 32 + warps - 1) / warps * 32;
    int first = warp * per_warp, last = min(n, first + per_warp);
    auto keep = [&](float x) {
        return mode == PICK_AT_LEAST ? x >= at_least : order_key(x) >= key_min;
    };
    int mine = warp_keep(work, first, last, keep, [](int, float, int) {});
    if (lane == 0) warp_offsets[warp] = mine;
    __syncthreads();
    if (warp == 0) {
        int total = lane < warps ? warp_offsets[lane] : 0;
        int scanned = total;
        for (int o = 1; o < 32; o <<= 1) {
            int y = __shfl_up_sync(FULL_MASK, scanned, o);
            if (lane >= o) scanned += y;
        }
        warp_offsets[lane] = scanned - total;
        if (lane == 31) count = scanned;
    }
    __syncthreads();
    if (count > cap) {
        if (threadIdx.x == 0) result[0] = PICKED_ROW;
        return;
    }
    int at = warp_offsets[warp];
    warp_keep(work, first, last, keep, [&](int i, float x, int pos) {
        candidates[2 * (at + pos)] = i;
        candidates[2 * (at + pos) + 1] = __float_as_uint(x);
    });
    if (threadIdx.x == 0) {
        result[0] = PICKED_CANDIDATES;
        result[2] = count;
        *(double*)(result + 4) = mass;
    }
}
