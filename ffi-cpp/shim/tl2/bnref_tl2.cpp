// The reference's TL2 (x86 LUT) kernels, generated per shape by utils/codegen_tl2.py.
//
// This unit is compiled with GGML_BITNET_X86_TL2 when the kernels were generated; ggml and
// llama.cpp never are, so TL2 exists here as kernels only, driven the way ggml.c drives them.
#include "bnref_internal.hpp"
#include "bnref_tl2_shapes.h"

#include "ggml.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#if defined(GGML_BITNET_X86_TL2)
#include "ggml-bitnet.h"
#endif
#if defined(_WIN32)
#include <malloc.h>
#endif

namespace {

#define BNREF_TL2_SHAPE_ENTRY(m, k, bm, bk) bnref_tl2_shape{m, k, bm, bk},

const std::vector<bnref_tl2_shape> &shapes() {
    static const std::vector<bnref_tl2_shape> table = {BNREF_TL2_SHAPES(BNREF_TL2_SHAPE_ENTRY)};
    return table;
}

#undef BNREF_TL2_SHAPE_ENTRY

#if defined(GGML_BITNET_X86_TL2)

const bnref_tl2_shape *find_shape(int64_t m, int64_t k) {
    for (const bnref_tl2_shape &shape : shapes()) {
        if (shape.m == m && shape.k == k) {
            return &shape;
        }
    }
    return nullptr;
}

std::string shape_list() {
    std::string list;
    for (const bnref_tl2_shape &shape : shapes()) {
        list += (list.empty() ? "" : ", ") + std::to_string(shape.m) + "x" + std::to_string(shape.k);
    }
    return list;
}

// The LUT unit keeps its transformed tensors in one global table of 8192 entries that only
// ggml_bitnet_free empties; every use brackets init and free under this lock.
std::mutex &lut_lock() {
    static std::mutex lock;
    return lock;
}

// One weight tensor registered with the LUT unit for the length of a call.
class TransformedWeights {
public:
    TransformedWeights(uint8_t *data, int64_t m, int64_t k) {
        ggml_bitnet_init();
        ggml_tensor tensor;
        std::memset(&tensor, 0, sizeof(tensor));
        tensor.type = GGML_TYPE_TL2;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        // The generated code still selects tensors by this field.
        tensor.backend = GGML_BACKEND_TYPE_CPU;
#pragma GCC diagnostic pop
        tensor.ne[0] = k;
        tensor.ne[1] = m;
        tensor.ne[2] = 1;
        tensor.ne[3] = 1;
        tensor.data = data;
        ggml_bitnet_transform_tensor(&tensor);
        extra_ = static_cast<bitnet_tensor_extra *>(tensor.extra);
    }

    ~TransformedWeights() {
        if (extra_ != nullptr) {
            // The transform allocates the scale with posix_memalign (_aligned_malloc on Windows).
#if defined(_WIN32)
            _aligned_free(extra_->scales);
#else
            std::free(extra_->scales);
#endif
        }
        ggml_bitnet_free();
    }

    TransformedWeights(const TransformedWeights &) = delete;
    TransformedWeights &operator=(const TransformedWeights &) = delete;

    const bitnet_tensor_extra *extra() const { return extra_; }

private:
    bitnet_tensor_extra *extra_ = nullptr;
};

// ggml_compute_forward_mul_mat's TL2 path for one token (ne11 == 1) on one thread.
void gemv(const bitnet_tensor_extra &wt, int m, int k, float *token, float *out) {
    const int three_k = k / wt.BK * wt.BK;
    const int two_k = k - three_k;
    std::vector<int8_t> three_qlut(static_cast<size_t>(three_k / 3 * 32));
    std::vector<int8_t> two_qlut(static_cast<size_t>(two_k / 2 * 32));
    float lut_scales = 0.0f;
    ggml_preprocessor(1, m, three_k, two_k, token, &lut_scales, three_qlut.data(), two_qlut.data());

    const int n_tile_num = wt.n_tile_num;
    const int w_tile_size = three_k * m / (2 * 3) / n_tile_num;
    const int c_tile_size = m / n_tile_num;
    const int sign_tile_size = three_k * m / 24 / n_tile_num;
    uint8_t *sign = wt.qweights + three_k * m / 3 / 2;
    for (int tile = 0; tile < n_tile_num; ++tile) {
        ggml_qgemm_lut(1, m, k, three_k, wt.qweights + tile * w_tile_size, sign + tile * sign_tile_size,
                       three_qlut.data(), wt.scales, &lut_scales, out + tile * c_tile_size);
    }
    uint8_t *two_a = wt.qweights + three_k * m / 3 / 2 + three_k * m / 3 / 8;
    const int two_w_tile_size = m * two_k / (2 * 2) / n_tile_num;
    for (int tile = 0; tile < n_tile_num; ++tile) {
        ggml_qgemm_lut(1, m, k, two_k, two_a + tile * two_w_tile_size, nullptr, two_qlut.data(), wt.scales,
                       &lut_scales, out + tile * c_tile_size);
    }
}

// Checks a TL2 matmul request against the generated shapes and runs it token by token.
bnref_status multiply(const void *packed, size_t packed_len, int64_t m, int64_t k, const float *x, size_t n_tokens,
                      float *out, size_t out_cap) {
    // The kernels silently compute nothing for shapes they were not generated for.
    BNREF_REQUIRE(find_shape(m, k) != nullptr, BNREF_ERR_UNSUPPORTED,
                  "no TL2 kernel was generated for " + std::to_string(m) + "x" + std::to_string(k) +
                      "; generated: " + shape_list());
    BNREF_REQUIRE_ARG(n_tokens >= 1, "at least one token is needed");
    const int64_t ne[4] = {k, m, 1, 1};
    uint64_t nbytes = 0;
    const bnref_status status = bnref_tensor_nbytes(GGML_TYPE_TL2, ne, &nbytes);
    if (status != BNREF_OK) {
        return status;
    }
    BNREF_REQUIRE_ARG(packed_len == nbytes, "a " + std::to_string(m) + "x" + std::to_string(k) +
                                                " TL2 tensor has " + std::to_string(nbytes) +
                                                " bytes, got " + std::to_string(packed_len));
    BNREF_REQUIRE(out_cap / static_cast<size_t>(m) >= n_tokens, BNREF_ERR_BUFFER_TOO_SMALL,
                  "the output needs " + std::to_string(n_tokens) + " x " + std::to_string(m) + " floats");
    // The transform and the kernels take the weights through non-const pointers but only read
    // them (the transform reads the scale, the kernels load codes and signs), as in a model whose
    // weights are memory-mapped read-only.
    auto *weights = const_cast<uint8_t *>(static_cast<const uint8_t *>(packed));
    std::vector<float> token(static_cast<size_t>(k));
    std::lock_guard<std::mutex> guard(lut_lock());
    const TransformedWeights transformed(weights, m, k);
    BNREF_REQUIRE(transformed.extra() != nullptr, BNREF_ERR_INTERNAL,
                  "ggml_bitnet_transform_tensor did not register the weights");
    // Token by token: the generated batched kernels write every token's rows to the first.
    for (size_t t = 0; t < n_tokens; ++t) {
        std::memcpy(token.data(), x + t * static_cast<size_t>(k), token.size() * sizeof(float));
        gemv(*transformed.extra(), static_cast<int>(m), static_cast<int>(k), token.data(),
             out + t * static_cast<size_t>(m));
    }
    return BNREF_OK;
}

#endif

} // namespace

extern "C" {

bool bnref_tl2_available(void) {
#if defined(GGML_BITNET_X86_TL2)
    return true;
#else
    return false;
#endif
}

const char *bnref_tl2_status(void) {
    return BNREF_TL2_STATUS;
}

size_t bnref_tl2_n_shapes(void) {
    return shapes().size();
}

bnref_status bnref_tl2_shape_get(size_t index, bnref_tl2_shape *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(out != nullptr, "out is NULL");
        BNREF_REQUIRE_ARG(index < shapes().size(), "shape " + std::to_string(index) + " of " +
                                                       std::to_string(shapes().size()) + " requested");
        *out = shapes()[index];
        return BNREF_OK;
    });
}

bnref_status bnref_tl2_gemm(const void *packed, size_t packed_len, int64_t m, int64_t k, const float *x,
                            size_t n_tokens, float *out, size_t out_cap) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(packed != nullptr && x != nullptr && out != nullptr, "packed, x or out is NULL");
#if defined(GGML_BITNET_X86_TL2)
        return multiply(packed, packed_len, m, k, x, n_tokens, out, out_cap);
#else
        (void)packed_len;
        (void)m;
        (void)k;
        (void)n_tokens;
        (void)out_cap;
        return bnref::fail(BNREF_ERR_UNSUPPORTED, std::string("the TL2 kernels are ") + BNREF_TL2_STATUS);
#endif
    });
}

} // extern "C"
