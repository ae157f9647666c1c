// Quantization, dequantization and dot-product kernels of the reference.
#include "bnref_internal.hpp"

#include "ggml-quants.h"
#include "ggml.h"

#include <climits>
#include <cstring>

namespace {

std::string type_name(int32_t type) {
    bnref_type_info info;
    if (bnref_type_info_get(type, &info) == BNREF_OK) {
        return info.name;
    }
    return "type " + std::to_string(type);
}

// Types whose type-table entries do not describe their real layout (bitnet's own formats).
bool is_bitnet_type(int32_t type) {
    return type == GGML_TYPE_I2_S || type == GGML_TYPE_I8_S || type == GGML_TYPE_TL1 ||
           type == GGML_TYPE_TL2;
}

// Looks up the traits of a valid, non-removed type.
bnref_status traits_of(int32_t type, const ggml_type_traits **out) {
    bnref_type_info info;
    const bnref_status status = bnref_type_info_get(type, &info);
    if (status != BNREF_OK) {
        return status;
    }
    *out = ggml_get_type_traits(static_cast<ggml_type>(type));
    return BNREF_OK;
}

// Bytes of one row of `n` elements, after checking `n` against the block size.
bnref_status row_bytes(int32_t type, int64_t n, size_t *out) {
    BNREF_REQUIRE_ARG(n >= 1, "the row must have at least one element");
    const ggml_type_traits *traits = nullptr;
    const bnref_status status = traits_of(type, &traits);
    if (status != BNREF_OK) {
        return status;
    }
    BNREF_REQUIRE_ARG(n % traits->blck_size == 0,
                      std::to_string(n) + " elements are not a multiple of the " + traits->type_name +
                          " block size " + std::to_string(traits->blck_size));
    *out = ggml_row_size(static_cast<ggml_type>(type), n);
    return BNREF_OK;
}

/* ggml_vec_dot_i2_i8_s over `rows` consecutive packed rows of `n` weights, each followed by the
 * epilogue of the reference's I2_S matmul in its order and precision. `raw` (optional) receives
 * the last row's kernel result. */
bnref_status i2_rows(int64_t rows, int64_t n, const void *weights, size_t weights_len, const int8_t *q,
                     size_t q_len, int32_t act_sum, float act_scale, float weight_scale, float *raw,
                     float *scaled, size_t scaled_len) {
    BNREF_REQUIRE_ARG(weights != nullptr && q != nullptr && scaled != nullptr, "an argument pointer is NULL");
    BNREF_REQUIRE_ARG(n >= 128 && n % 128 == 0 && n <= INT_MAX,
                      "the row length must be a positive multiple of 128, got " + std::to_string(n));
    BNREF_REQUIRE_ARG(rows >= 1 && scaled_len >= static_cast<size_t>(rows), "the output needs one value per row");
    const size_t row_bytes = static_cast<size_t>(n / 4);
    BNREF_REQUIRE_ARG(weights_len / row_bytes >= static_cast<size_t>(rows),
                      "the packed rows need " + std::to_string(rows) + " x " + std::to_string(row_bytes) + " bytes");
    BNREF_REQUIRE_ARG(q_len >= static_cast<size_t>(n), "the activations need " + std::to_string(n) + " values");
#if defined(__AVX2__) || defined(__ARM_NEON)
    const char *w = static_cast<const char *>(weights);
    for (int64_t r = 0; r < rows; ++r) {
        float result = 0.0f;
        ggml_vec_dot_i2_i8_s(static_cast<int>(n), &result, 0, w + r * row_bytes, 0, q, 0, 1);
        if (raw != nullptr) {
            *raw = result;
        }
        scaled[r] = (result - act_sum) / act_scale * weight_scale;
    }
    return BNREF_OK;
#else
    (void)act_sum;
    (void)act_scale;
    (void)weight_scale;
    (void)raw;
    return bnref::fail(BNREF_ERR_UNSUPPORTED,
                       "ggml_vec_dot_i2_i8_s has only AVX2 and NEON bodies; this build has neither");
#endif
}

} // namespace

extern "C" {

bnref_status bnref_quantize(int32_t type, const float *src, int64_t nrows, int64_t n_per_row,
                            void *dst, size_t dst_cap, size_t *written) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(src != nullptr && dst != nullptr && written != nullptr,
                          "src, dst or written is NULL");
        BNREF_REQUIRE(type == GGML_TYPE_I2_S || type == GGML_TYPE_TQ1_0 || type == GGML_TYPE_TQ2_0 ||
                          type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q6_K,
                      BNREF_ERR_UNSUPPORTED,
                      "tensor quantization is offered for i2_s, tq1_0, tq2_0, q8_0 and q6_K, not " +
                          type_name(type));
        BNREF_REQUIRE_ARG(nrows >= 1 && n_per_row >= 1, "the tensor must have at least one row and column");
        int64_t n = 0;
        BNREF_REQUIRE_ARG(bnref::mul_fits(nrows, n_per_row, &n) && n <= INT_MAX,
                          "the tensor is larger than the reference's quantizers handle");
        if (type == GGML_TYPE_I2_S) {
            BNREF_REQUIRE_ARG(n % 128 == 0, "i2_s packs blocks of 128 weights; " + std::to_string(n) +
                                                " weights are not a multiple of 128");
        }
        const int64_t ne[4] = {n_per_row, nrows, 1, 1};
        uint64_t needed = 0;
        const bnref_status status = bnref_tensor_nbytes(type, ne, &needed);
        if (status != BNREF_OK) {
            return status;
        }
        *written = needed;
        BNREF_REQUIRE(dst_cap >= needed, BNREF_ERR_BUFFER_TOO_SMALL,
                      "the output needs " + std::to_string(needed) + " bytes");
        // I2_S leaves its padding after the scale untouched; zero it for reproducible bytes.
        std::memset(dst, 0, needed);
        const size_t produced =
            ggml_quantize_chunk(static_cast<ggml_type>(type), src, dst, 0, nrows, n_per_row, nullptr);
        BNREF_REQUIRE(produced == needed, BNREF_ERR_INTERNAL,
                      "ggml_quantize_chunk wrote " + std::to_string(produced) + " bytes, expected " +
                          std::to_string(needed));
        return BNREF_OK;
    });
}

bnref_status bnref_quantize_row(int32_t type, const float *src, int64_t n, void *dst, size_t dst_cap) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(src != nullptr && dst != nullptr, "src or dst is NULL");
        const ggml_type_traits *traits = nullptr;
        bnref_status status = traits_of(type, &traits);
        if (status != BNREF_OK) {
            return status;
        }
        BNREF_REQUIRE(traits->from_float != nullptr && !is_bitnet_type(type), BNREF_ERR_UNSUPPORTED,
                      "the reference has no row quantizer for " + type_name(type));
        size_t needed = 0;
        status = row_bytes(type, n, &needed);
        if (status != BNREF_OK) {
            return status;
        }
        BNREF_REQUIRE(dst_cap >= needed, BNREF_ERR_BUFFER_TOO_SMALL,
                      "the output needs " + std::to_string(needed) + " bytes");
        traits->from_float(src, dst, n);
        return BNREF_OK;
    });
}

bnref_status bnref_dequantize(int32_t type, const void *src, size_t src_len, int64_t n, float *dst,
                              size_t dst_cap) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(src != nullptr && dst != nullptr, "src or dst is NULL");
        const ggml_type_traits *traits = nullptr;
        bnref_status status = traits_of(type, &traits);
        if (status != BNREF_OK) {
            return status;
        }
        BNREF_REQUIRE(traits->to_float != nullptr && !is_bitnet_type(type), BNREF_ERR_UNSUPPORTED,
                      "the reference has no dequantizer for " + type_name(type));
        size_t needed = 0;
        status = row_bytes(type, n, &needed);
        if (status != BNREF_OK) {
            return status;
        }
        BNREF_REQUIRE_ARG(src_len >= needed, std::to_string(n) + " elements of " + type_name(type) +
                                                 " need " + std::to_string(needed) + " bytes, got " +
                                                 std::to_string(src_len));
        BNREF_REQUIRE(dst_cap >= static_cast<size_t>(n), BNREF_ERR_BUFFER_TOO_SMALL,
                      "the output needs " + std::to_string(n) + " floats");
        traits->to_float(src, dst, n);
        return BNREF_OK;
    });
}

bnref_status bnref_quantize_i8_s(const float *x, int64_t n, int8_t *q, size_t q_cap, float *scale,
                                 int32_t *sum) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(x != nullptr && q != nullptr && scale != nullptr && sum != nullptr,
                          "an argument pointer is NULL");
        BNREF_REQUIRE_ARG(n >= 1 && n <= INT_MAX, "the row length is out of range");
        BNREF_REQUIRE(q_cap >= static_cast<size_t>(n), BNREF_ERR_BUFFER_TOO_SMALL,
                      "the output needs " + std::to_string(n) + " bytes");
        quantize_row_i8_s(x, q, n, scale, sum);
        return BNREF_OK;
    });
}

bnref_status bnref_vec_dot_i2_i8_s(int64_t n, const void *weights, size_t weights_len, const int8_t *q,
                                   size_t q_len, int32_t act_sum, float act_scale, float weight_scale,
                                   float *raw, float *scaled) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(raw != nullptr, "raw is NULL");
        return i2_rows(1, n, weights, weights_len, q, q_len, act_sum, act_scale, weight_scale, raw, scaled, 1);
    });
}

bnref_status bnref_gemv_i2_i8_s(int64_t rows, int64_t n, const void *weights, size_t weights_len,
                                const int8_t *q, size_t q_len, int32_t act_sum, float act_scale,
                                float weight_scale, float *out, size_t out_len) {
    return bnref::guarded(__func__, [&] {
        return i2_rows(rows, n, weights, weights_len, q, q_len, act_sum, act_scale, weight_scale, nullptr, out,
                       out_len);
    });
}

bnref_status bnref_vec_dot(int32_t type, int64_t n, const void *x, size_t x_len, const void *y,
                           size_t y_len, float *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(x != nullptr && y != nullptr && out != nullptr, "x, y or out is NULL");
        const ggml_type_traits *traits = nullptr;
        bnref_status status = traits_of(type, &traits);
        if (status != BNREF_OK) {
            return status;
        }
        BNREF_REQUIRE(traits->vec_dot != nullptr && !is_bitnet_type(type), BNREF_ERR_UNSUPPORTED,
                      "no generic dot product for " + type_name(type) +
                          (type == GGML_TYPE_I2_S ? " (use bnref_vec_dot_i2_i8_s)" : ""));
        BNREF_REQUIRE_ARG(n <= INT_MAX, "the row length is out of range");
        size_t x_needed = 0;
        size_t y_needed = 0;
        status = row_bytes(type, n, &x_needed);
        if (status != BNREF_OK) {
            return status;
        }
        status = row_bytes(traits->vec_dot_type, n, &y_needed);
        if (status != BNREF_OK) {
            return status;
        }
        BNREF_REQUIRE_ARG(x_len >= x_needed, "the " + type_name(type) + " row needs " +
                                                 std::to_string(x_needed) + " bytes");
        BNREF_REQUIRE_ARG(y_len >= y_needed, "the " + type_name(traits->vec_dot_type) + " row needs " +
                                                 std::to_string(y_needed) + " bytes");
        traits->vec_dot(static_cast<int>(n), out, 0, x, 0, y, 0, 1);
        return BNREF_OK;
    });
}

} // extern "C"
