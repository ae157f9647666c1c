// Errors, logging, initialisation and type information.
#include "bnref_internal.hpp"

#include "ggml.h"
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace {

thread_local std::string last_error;
thread_local std::string logged_errors;
thread_local ggml_log_level last_log_level = GGML_LOG_LEVEL_NONE;

bool forward_logs() {
    static const bool forward = std::getenv("BITNET_REF_LOG") != nullptr;
    return forward;
}

// Keeps what the reference logs as errors on this thread so that failures can explain
// themselves; everything is also printed when BITNET_REF_LOG is set.
void on_log(ggml_log_level level, const char *text, void *) {
    if (level != GGML_LOG_LEVEL_CONT) {
        last_log_level = level;
    }
    if (last_log_level == GGML_LOG_LEVEL_ERROR && text != nullptr) {
        logged_errors += text;
    }
    if (forward_logs() && text != nullptr) {
        std::fputs(text, stderr);
    }
}

std::string trimmed(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
        text.pop_back();
    }
    return text;
}

} // namespace

namespace bnref {

bnref_status fail(bnref_status status, std::string message) {
    const std::string logged = trimmed(logged_errors);
    if (!logged.empty()) {
        message += " (reference log: " + logged + ")";
    }
    last_error = std::move(message);
    return status;
}

void clear_errors() {
    last_error.clear();
    logged_errors.clear();
}

void ensure_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        llama_log_set(on_log, nullptr);
        llama_backend_init();
    });
}

} // namespace bnref

extern "C" {

const char *bnref_last_error(void) {
    return last_error.c_str();
}

bnref_status bnref_init(void) {
    return bnref::guarded(__func__, [] { return BNREF_OK; });
}

const char *bnref_system_info(void) {
    return llama_print_system_info();
}

bnref_status bnref_type_info_get(int32_t type, bnref_type_info *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(out != nullptr, "out is NULL");
        BNREF_REQUIRE_ARG(type >= 0 && type < GGML_TYPE_COUNT,
                          "ggml type " + std::to_string(type) + " is outside the reference's table (0.." +
                              std::to_string(GGML_TYPE_COUNT - 1) + ")");
        const ggml_type_traits *traits = ggml_get_type_traits(static_cast<ggml_type>(type));
        BNREF_REQUIRE(traits->blck_size > 0 && traits->type_name != nullptr, BNREF_ERR_UNSUPPORTED,
                      "ggml type " + std::to_string(type) + " was removed from the reference");
        out->name = traits->type_name;
        out->block_size = traits->blck_size;
        out->type_size = traits->type_size;
        out->is_quantized = traits->is_quantized;
        out->has_to_float = traits->to_float != nullptr;
        out->has_from_float = traits->from_float != nullptr;
        out->has_vec_dot = traits->vec_dot != nullptr;
        out->vec_dot_type = traits->vec_dot_type;
        return BNREF_OK;
    });
}

bnref_status bnref_tensor_nbytes(int32_t type, const int64_t ne[4], uint64_t *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(ne != nullptr && out != nullptr, "ne or out is NULL");
        bnref_type_info info;
        const bnref_status status = bnref_type_info_get(type, &info);
        if (status != BNREF_OK) {
            return status;
        }
        int64_t total = 1;
        for (int i = 0; i < 4; ++i) {
            BNREF_REQUIRE_ARG(ne[i] >= 1, "every dimension must be at least 1");
            BNREF_REQUIRE_ARG(bnref::mul_fits(total, ne[i], &total), "element count overflows");
        }
        BNREF_REQUIRE_ARG(ne[0] % info.block_size == 0,
                          "ne[0] = " + std::to_string(ne[0]) + " is not a multiple of the " +
                              info.name + " block size " + std::to_string(info.block_size));
        int64_t bytes = 0;
        BNREF_REQUIRE_ARG(bnref::mul_fits(total / info.block_size, static_cast<int64_t>(info.type_size), &bytes),
                          "byte count overflows");
        // The strides ggml_new_tensor gives a contiguous tensor; ggml_nbytes reads nothing else.
        ggml_tensor tensor;
        std::memset(&tensor, 0, sizeof(tensor));
        tensor.type = static_cast<ggml_type>(type);
        tensor.nb[0] = info.type_size;
        tensor.nb[1] = tensor.nb[0] * (ne[0] / info.block_size);
        for (int i = 0; i < 4; ++i) {
            tensor.ne[i] = ne[i];
        }
        for (int i = 2; i < 4; ++i) {
            tensor.nb[i] = tensor.nb[i - 1] * ne[i - 1];
        }
        *out = ggml_nbytes(&tensor);
        return BNREF_OK;
    });
}

} // extern "C"
