/*
 * bnref: a small C interface over the bitnet.cpp reference (its llama.cpp fork and ggml).
 *
 * Conventions:
 * - Every fallible function returns a bnref_status; BNREF_OK is 0. On failure the calling
 *   thread's message is available from bnref_last_error() until its next bnref_ call.
 * - Handles are opaque; each *_open / *_load / *_new has a matching *_free.
 * - Output buffers are passed with their capacity; functions never write past it. When a
 *   capacity is too small they return BNREF_ERR_BUFFER_TOO_SMALL and report the size needed.
 * - Strings returned as `const char *` stay valid for the lifetime of the handle they came from.
 */
#ifndef BNREF_H
#define BNREF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bnref_status {
    BNREF_OK = 0,
    /* An argument is out of range, inconsistent, or a required pointer is NULL. */
    BNREF_ERR_INVALID_ARGUMENT = 1,
    /* The reference has no implementation for the request (type, ISA, vocab kind). */
    BNREF_ERR_UNSUPPORTED = 2,
    /* A file could not be opened, read or written. */
    BNREF_ERR_IO = 3,
    /* A file is not a GGUF the reference can read safely. */
    BNREF_ERR_FORMAT = 4,
    /* The reference refused the model, context or quantization job. */
    BNREF_ERR_REFERENCE = 5,
    /* An output buffer is too small; the needed size was reported. */
    BNREF_ERR_BUFFER_TOO_SMALL = 6,
    /* The reference threw or failed in an unexpected way. */
    BNREF_ERR_INTERNAL = 7
} bnref_status;

/* The message describing the calling thread's last failure ("" if none). */
const char *bnref_last_error(void);

/* Initialises the reference backend once per process; later calls do nothing. */
bnref_status bnref_init(void);

/* The reference's own report of the CPU features it was compiled with. */
const char *bnref_system_info(void);

/* ---- ggml types ------------------------------------------------------------------------- */

typedef struct bnref_type_info {
    const char *name;     /* static string, e.g. "i2_s" */
    int64_t block_size;   /* elements per block */
    uint64_t type_size;   /* bytes per block */
    bool is_quantized;
    bool has_to_float;    /* the reference can dequantize this type */
    bool has_from_float;  /* the reference can quantize one row into this type */
    bool has_vec_dot;     /* the reference has a dot product for this type */
    int32_t vec_dot_type; /* activation type the dot product expects */
} bnref_type_info;

/* Describes ggml type `type`; fails for ids outside the table or removed types. */
bnref_status bnref_type_info_get(int32_t type, bnref_type_info *out);

/* Bytes a tensor of `type` with shape ne[0..4) occupies, as the reference computes it
 * (ggml_nbytes, including the I2_S / TL special cases). */
bnref_status bnref_tensor_nbytes(int32_t type, const int64_t ne[4], uint64_t *out);

/* ---- kernels ---------------------------------------------------------------------------- */

/* Quantizes `nrows` rows of `n_per_row` floats as one tensor with ggml_quantize_chunk.
 * Supported types: I2_S (one scale for the whole tensor), TQ1_0, TQ2_0, Q8_0, Q6_K. Writes
 * *written bytes (= bnref_tensor_nbytes of the shape). */
bnref_status bnref_quantize(int32_t type, const float *src, int64_t nrows, int64_t n_per_row,
                            void *dst, size_t dst_cap, size_t *written);

/* Quantizes one row of `n` floats with the from_float function of `type`
 * (e.g. Q8_K, the activation format of the TQ dot products). */
bnref_status bnref_quantize_row(int32_t type, const float *src, int64_t n, void *dst,
                                size_t dst_cap);

/* Dequantizes `n` elements of `type` with the reference's to_float. I2_S has none. */
bnref_status bnref_dequantize(int32_t type, const void *src, size_t src_len, int64_t n,
                              float *dst, size_t dst_cap);

/* The per-row int8 activation quantization the reference applies before an I2_S matmul
 * (quantize_row_i8_s): q[i] = clamp(round(x[i]*scale)), scale = 127/max|x|, sum = Σq. */
bnref_status bnref_quantize_i8_s(const float *x, int64_t n, int8_t *q, size_t q_cap,
                                 float *scale, int32_t *sum);

/* ggml_vec_dot_i2_i8_s over one packed I2_S row of `n` weights (n % 128 == 0) and `n` int8
 * activations. *raw is the kernel's result (Σ code·q with codes 0,1,2); *scaled applies the
 * matmul's epilogue in the reference's order: (raw - act_sum) / act_scale * weight_scale. */
bnref_status bnref_vec_dot_i2_i8_s(int64_t n, const void *weights, size_t weights_len,
                                   const int8_t *q, size_t q_len, int32_t act_sum,
                                   float act_scale, float weight_scale, float *raw,
                                   float *scaled);

/* The reference's I2_S matmul for one token over `rows` consecutive packed rows of `n` weights
 * (`weights` holds rows * n / 4 bytes): out[r] = the scaled result of bnref_vec_dot_i2_i8_s on
 * row r. Single-threaded; callers split rows across threads as ggml does. */
bnref_status bnref_gemv_i2_i8_s(int64_t rows, int64_t n, const void *weights, size_t weights_len,
                                const int8_t *q, size_t q_len, int32_t act_sum, float act_scale,
                                float weight_scale, float *out, size_t out_len);

/* The reference's dot product of one row of `type` (n elements) with one row already in
 * that type's vec_dot_type (e.g. TQ1_0 / TQ2_0 with Q8_K). Not for I2_S. */
bnref_status bnref_vec_dot(int32_t type, int64_t n, const void *x, size_t x_len, const void *y,
                           size_t y_len, float *out);

/* ---- TL2 (x86 LUT) kernels -------------------------------------------------------------- */

/* A weight shape the TL2 kernels were generated for: m rows (ggml ne[1]) of k columns
 * (ne[0]), in tiles of bm rows; columns go three at a time in blocks of bk, the last k % bk
 * two at a time. */
typedef struct bnref_tl2_shape {
    int64_t m;
    int64_t k;
    int64_t bm;
    int64_t bk;
} bnref_tl2_shape;

/* Whether the TL2 kernels were generated (by the reference's utils/codegen_tl2.py) and built. */
bool bnref_tl2_available(void);

/* A static line saying for which shapes the kernels were generated, or why they were not. */
const char *bnref_tl2_status(void);

/* The number of shapes with TL2 kernels (0 when they were not built). */
size_t bnref_tl2_n_shapes(void);

/* The index-th shape with TL2 kernels. */
bnref_status bnref_tl2_shape_get(size_t index, bnref_tl2_shape *out);

/* The reference's TL2 matmul, as ggml runs it for one token, applied to each of `n_tokens`
 * tokens in turn: out[t*m + r] = row r of the m x k weights `packed` times token t of `x`
 * (n_tokens x k floats). `packed` is a TL2 tensor as ggml stores it: the reference
 * converter's codes, zeros up to a multiple of 32 bytes, then the f32 weight scale in a
 * 32-byte block; packed_len must be its ggml_nbytes. Fails with BNREF_ERR_UNSUPPORTED when
 * the kernels were not built or not generated for (m, k). */
bnref_status bnref_tl2_gemm(const void *packed, size_t packed_len, int64_t m, int64_t k,
                            const float *x, size_t n_tokens, float *out, size_t out_cap);

/* ---- GGUF files ------------------------------------------------------------------------- */

typedef struct bnref_gguf bnref_gguf;

typedef struct bnref_gguf_summary {
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset; /* file offset of the tensor data section */
    int64_t n_kv;
    int64_t n_tensors;
} bnref_gguf_summary;

typedef struct bnref_gguf_tensor {
    const char *name;
    int32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t offset; /* relative to the data section */
    uint64_t nbytes; /* ggml_nbytes of the tensor */
} bnref_gguf_tensor;

typedef struct bnref_gguf_kv {
    const char *key;
    int32_t value_type;  /* gguf_type */
    int32_t array_type;  /* element gguf_type for arrays, -1 otherwise */
    int64_t array_len;   /* element count for arrays, -1 otherwise */
    const char *str_value; /* the value for strings, NULL otherwise */
} bnref_gguf_kv;

/* Parses the header of a GGUF file with the reference's gguf reader (no tensor data read).
 * The file is checked first so that malformed input fails instead of aborting. */
bnref_status bnref_gguf_open(const char *path, bnref_gguf **out);
void bnref_gguf_free(bnref_gguf *gguf);
bnref_status bnref_gguf_summary_get(const bnref_gguf *gguf, bnref_gguf_summary *out);
bnref_status bnref_gguf_tensor_get(const bnref_gguf *gguf, int64_t index, bnref_gguf_tensor *out);
bnref_status bnref_gguf_kv_get(const bnref_gguf *gguf, int64_t index, bnref_gguf_kv *out);

typedef struct bnref_quantize_params {
    int32_t ftype;                /* llama_ftype, e.g. 40 = MOSTLY_I2_S */
    int32_t token_embedding_type; /* ggml type, or -1 for the reference's choice */
    int32_t output_tensor_type;   /* ggml type, or -1 for the reference's choice */
    bool pure;                    /* quantize every tensor to the ftype's default type */
} bnref_quantize_params;

/* llama_model_quantize with one thread (more threads corrupt I2_S output). */
bnref_status bnref_model_quantize(const char *input_path, const char *output_path,
                                  const bnref_quantize_params *params);

/* ---- models ----------------------------------------------------------------------------- */

typedef struct bnref_model bnref_model;

typedef struct bnref_model_params {
    bool vocab_only;
    bool use_mmap;
} bnref_model_params;

typedef struct bnref_model_info {
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t vocab_type; /* llama_vocab_type */
    int32_t bos;        /* -1 if none */
    int32_t eos;        /* -1 if none */
    bool add_bos;
    bool vocab_only;
} bnref_model_info;

bnref_status bnref_model_load(const char *path, const bnref_model_params *params,
                              bnref_model **out);
void bnref_model_free(bnref_model *model);
bnref_status bnref_model_info_get(const bnref_model *model, bnref_model_info *out);

/* Copies the metadata value of `key` as NUL-terminated text; *len is its length without the
 * terminator, or the buffer size needed (with it) when `cap` is too small. */
bnref_status bnref_model_meta(const bnref_model *model, const char *key, char *buf, size_t cap,
                              size_t *len);

/* Tokenizes text[0..text_len); *n_tokens is the count written, or needed when too small. */
bnref_status bnref_tokenize(const bnref_model *model, const char *text, size_t text_len,
                            bool add_special, bool parse_special, int32_t *tokens, size_t cap,
                            size_t *n_tokens);

/* The bytes of one token; *len is written, or needed when too small. */
bnref_status bnref_token_to_piece(const bnref_model *model, int32_t token, bool special,
                                  char *buf, size_t cap, size_t *len);

/* The text of a token sequence; *len is written, or needed when too small. */
bnref_status bnref_detokenize(const bnref_model *model, const int32_t *tokens, size_t n_tokens,
                              bool remove_special, bool unparse_special, char *buf, size_t cap,
                              size_t *len);

/* ---- contexts --------------------------------------------------------------------------- */

typedef struct bnref_context bnref_context;

typedef struct bnref_context_params {
    uint32_t n_ctx;     /* 0 = the model's training context */
    uint32_t n_batch;   /* tokens per llama_decode call (also the micro-batch) */
    int32_t n_threads;
    /* Intermediate tensors to capture during evaluation: patterns separated by '\n'; a
     * pattern matches a tensor name exactly, or as a prefix when it ends in '*'.
     * NULL or "" installs no eval callback at all. */
    const char *capture;
} bnref_context_params;

/* Creates an evaluation context; several may share one model concurrently. */
bnref_status bnref_context_new(const bnref_model *model, const bnref_context_params *params,
                               bnref_context **out);
void bnref_context_free(bnref_context *ctx);
uint32_t bnref_context_n_ctx(const bnref_context *ctx);
/* Tokens already in the context's cache (position of the next token). */
uint32_t bnref_context_n_past(const bnref_context *ctx);
bnref_status bnref_context_set_threads(bnref_context *ctx, int32_t n_threads);
/* Empties the KV cache; the next token is at position 0. Keeps captured tensors. */
void bnref_context_reset(bnref_context *ctx);

/* Appends tokens to the sequence and writes the logits of every one of them
 * (n_tokens × n_vocab floats, row per position). */
bnref_status bnref_context_eval(bnref_context *ctx, const int32_t *tokens, size_t n_tokens,
                                float *logits, size_t logits_cap);

/* Resets the context, evaluates the prompt, then picks and feeds back `n_generate` tokens
 * with the reference's greedy sampler. Stops early after an end-of-generation token when
 * `stop_at_eog`. *n_written is the number of generated tokens. */
bnref_status bnref_context_generate_greedy(bnref_context *ctx, const int32_t *prompt,
                                           size_t n_prompt, size_t n_generate, bool stop_at_eog,
                                           int32_t *out, size_t out_cap, size_t *n_written);

typedef struct bnref_perplexity_result {
    double ppl;
    double ppl_err;    /* one standard error, as llama-perplexity prints it */
    size_t n_chunks;
    size_t n_scored;   /* NLL values written */
} bnref_perplexity_result;

/* llama-perplexity over `tokens` (tokenized with add_special): chunks of n_ctx, each chunk's
 * first token replaced by BOS when the model adds one, positions n_ctx/2 .. n_ctx-2 scored.
 * `max_chunks` < 0 means all chunks. Per-token NLLs go to nll (n_chunks × (n_ctx - 1 - n_ctx/2)). */
bnref_status bnref_context_perplexity(bnref_context *ctx, const int32_t *tokens, size_t n_tokens,
                                      int64_t max_chunks, double *nll, size_t nll_cap,
                                      bnref_perplexity_result *out);

typedef struct bnref_capture {
    const char *name;
    int32_t source_type; /* ggml type of the tensor in the graph */
    int64_t ne[4];
    const float *data;   /* ne[0]*ne[1]*ne[2]*ne[3] floats, NULL if the type cannot be converted */
    size_t len;
    uint32_t eval_index; /* which llama_decode call of this context produced it */
} bnref_capture;

size_t bnref_context_n_captures(const bnref_context *ctx);
/* A captured tensor; valid until the next eval, clear or free of the context. */
bnref_status bnref_context_capture_get(const bnref_context *ctx, size_t index, bnref_capture *out);
void bnref_context_clear_captures(bnref_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* BNREF_H */
