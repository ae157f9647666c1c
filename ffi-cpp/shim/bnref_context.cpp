// Evaluation contexts: logits for every position, greedy generation and captured tensors.
#include "bnref_handles.hpp"

#include "ggml-backend.h"
#include "ggml.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace {

std::vector<std::string> split_patterns(const char *capture) {
    std::vector<std::string> patterns;
    std::string current;
    for (const char *c = capture; *c != '\0'; ++c) {
        if (*c == '\n') {
            if (!current.empty()) {
                patterns.push_back(current);
            }
            current.clear();
        } else {
            current += *c;
        }
    }
    if (!current.empty()) {
        patterns.push_back(current);
    }
    return patterns;
}

bool matches(const std::vector<std::string> &patterns, const char *name) {
    for (const std::string &pattern : patterns) {
        if (!pattern.empty() && pattern.back() == '*') {
            if (std::strncmp(name, pattern.data(), pattern.size() - 1) == 0) {
                return true;
            }
        } else if (pattern == name) {
            return true;
        }
    }
    return false;
}

float element_as_float(const char *p, ggml_type type) {
    if (type == GGML_TYPE_F32) {
        float value;
        std::memcpy(&value, p, sizeof(value));
        return value;
    }
    ggml_fp16_t value;
    std::memcpy(&value, p, sizeof(value));
    return ggml_fp16_to_fp32(value);
}

// Copies a computed tensor into f32 following its strides, so views are read correctly.
bnref::CapturedTensor copy_tensor(const ggml_tensor *t, uint32_t eval_index) {
    bnref::CapturedTensor out;
    out.name = ggml_get_name(t);
    out.source_type = t->type;
    for (int d = 0; d < 4; ++d) {
        out.ne[d] = t->ne[d];
    }
    out.eval_index = eval_index;
    out.converted = false;
    const bool host = t->buffer != nullptr && ggml_backend_buffer_is_host(t->buffer) && t->data != nullptr;
    if (!host) {
        return out;
    }
    const char *base = static_cast<const char *>(t->data);
    const ggml_type_traits *traits = ggml_get_type_traits(t->type);
    const bool elementwise = t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_F16;
    const bool row_wise = traits->to_float != nullptr && t->nb[0] == traits->type_size;
    if (!elementwise && !row_wise) {
        return out;
    }
    out.data.resize(static_cast<size_t>(ggml_nelements(t)));
    float *dst = out.data.data();
    for (int64_t i3 = 0; i3 < t->ne[3]; ++i3) {
        for (int64_t i2 = 0; i2 < t->ne[2]; ++i2) {
            for (int64_t i1 = 0; i1 < t->ne[1]; ++i1) {
                const char *row = base + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
                if (elementwise) {
                    for (int64_t i0 = 0; i0 < t->ne[0]; ++i0) {
                        *dst++ = element_as_float(row + i0 * t->nb[0], t->type);
                    }
                } else {
                    traits->to_float(row, dst, t->ne[0]);
                    dst += t->ne[0];
                }
            }
        }
    }
    out.converted = true;
    return out;
}

// The scheduler's eval callback: asks for tensors whose names match, then copies them.
bool capture_callback(ggml_tensor *t, bool ask, void *user_data) {
    auto *ctx = static_cast<bnref_context *>(user_data);
    if (ask) {
        return matches(ctx->capture_patterns, ggml_get_name(t));
    }
    ctx->captures.push_back(copy_tensor(t, ctx->eval_count));
    return true;
}

bnref_status require_room(const bnref_context *ctx, size_t n_tokens) {
    const uint32_t n_ctx = llama_n_ctx(ctx->ctx);
    BNREF_REQUIRE_ARG(n_tokens <= n_ctx - ctx->n_past,
                      std::to_string(n_tokens) + " more tokens do not fit: " + std::to_string(ctx->n_past) +
                          " of " + std::to_string(n_ctx) + " positions are used");
    return BNREF_OK;
}

} // namespace

namespace bnref {

bnref_status decode(bnref_context *ctx, const Batch &batch) {
    const int32_t rc = llama_decode(ctx->ctx, batch.get());
    ++ctx->eval_count;
    if (rc != 0) {
        llama_kv_cache_clear(ctx->ctx);
        ctx->n_past = 0;
        return fail(BNREF_ERR_REFERENCE,
                    "llama_decode returned " + std::to_string(rc) + "; the context was reset");
    }
    ctx->n_past += static_cast<uint32_t>(batch.get().n_tokens);
    return BNREF_OK;
}

} // namespace bnref

extern "C" {

bnref_status bnref_context_new(const bnref_model *model, const bnref_context_params *params, bnref_context **out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(model != nullptr && params != nullptr && out != nullptr, "model, params or out is NULL");
        *out = nullptr;
        BNREF_REQUIRE_ARG(!model->vocab_only, "the model was loaded vocab-only and cannot be evaluated");
        BNREF_REQUIRE_ARG(params->n_batch >= 1, "n_batch must be at least 1");
        BNREF_REQUIRE_ARG(params->n_threads >= 1, "n_threads must be at least 1");
        auto handle = std::make_unique<bnref_context>();
        handle->model = model;
        handle->capture_patterns = split_patterns(params->capture == nullptr ? "" : params->capture);
        llama_context_params cparams = llama_context_default_params();
        cparams.n_ctx = params->n_ctx;
        cparams.n_batch = params->n_batch;
        cparams.n_ubatch = params->n_batch;
        cparams.n_seq_max = 1;
        cparams.n_threads = params->n_threads;
        cparams.n_threads_batch = params->n_threads;
        cparams.no_perf = true;
        if (!handle->capture_patterns.empty()) {
            cparams.cb_eval = capture_callback;
            cparams.cb_eval_user_data = handle.get();
        }
        handle->ctx = llama_new_context_with_model(model->model, cparams);
        if (handle->ctx == nullptr) {
            return bnref::fail(BNREF_ERR_REFERENCE, "llama_new_context_with_model failed");
        }
        handle->n_batch = llama_n_batch(handle->ctx);
        *out = handle.release();
        return BNREF_OK;
    });
}

void bnref_context_free(bnref_context *ctx) {
    delete ctx;
}

uint32_t bnref_context_n_ctx(const bnref_context *ctx) {
    return ctx == nullptr ? 0 : llama_n_ctx(ctx->ctx);
}

uint32_t bnref_context_n_past(const bnref_context *ctx) {
    return ctx == nullptr ? 0 : ctx->n_past;
}

bnref_status bnref_context_set_threads(bnref_context *ctx, int32_t n_threads) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(ctx != nullptr, "ctx is NULL");
        BNREF_REQUIRE_ARG(n_threads >= 1, "n_threads must be at least 1");
        llama_set_n_threads(ctx->ctx, n_threads, n_threads);
        return BNREF_OK;
    });
}

void bnref_context_reset(bnref_context *ctx) {
    if (ctx != nullptr) {
        llama_kv_cache_clear(ctx->ctx);
        ctx->n_past = 0;
    }
}

bnref_status bnref_context_eval(bnref_context *ctx, const int32_t *tokens, size_t n_tokens, float *logits,
                                size_t logits_cap) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(ctx != nullptr && tokens != nullptr && logits != nullptr, "ctx, tokens or logits is NULL");
        BNREF_REQUIRE_ARG(n_tokens >= 1, "no tokens to evaluate");
        bnref_status status = require_room(ctx, n_tokens);
        if (status != BNREF_OK) {
            return status;
        }
        status = bnref::check_tokens(ctx->model, tokens, n_tokens);
        if (status != BNREF_OK) {
            return status;
        }
        const size_t n_vocab = static_cast<size_t>(llama_n_vocab(ctx->model->model));
        BNREF_REQUIRE(n_vocab >= 1, BNREF_ERR_UNSUPPORTED, "the model has an empty vocabulary");
        BNREF_REQUIRE(logits_cap / n_vocab >= n_tokens, BNREF_ERR_BUFFER_TOO_SMALL,
                      "the logits need " + std::to_string(n_tokens) + " x " + std::to_string(n_vocab) + " floats");
        bnref::Batch batch(static_cast<int32_t>(ctx->n_batch));
        for (size_t start = 0; start < n_tokens; start += ctx->n_batch) {
            const size_t count = std::min<size_t>(ctx->n_batch, n_tokens - start);
            batch.clear();
            for (size_t i = 0; i < count; ++i) {
                batch.add(tokens[start + i], static_cast<llama_pos>(ctx->n_past + i), true);
            }
            status = bnref::decode(ctx, batch);
            if (status != BNREF_OK) {
                return status;
            }
            for (size_t i = 0; i < count; ++i) {
                const float *row = llama_get_logits_ith(ctx->ctx, static_cast<int32_t>(i));
                BNREF_REQUIRE(row != nullptr, BNREF_ERR_REFERENCE, "the reference returned no logits");
                std::memcpy(logits + (start + i) * n_vocab, row, n_vocab * sizeof(float));
            }
        }
        return BNREF_OK;
    });
}

bnref_status bnref_context_generate_greedy(bnref_context *ctx, const int32_t *prompt, size_t n_prompt,
                                           size_t n_generate, bool stop_at_eog, int32_t *out, size_t out_cap,
                                           size_t *n_written) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(ctx != nullptr && prompt != nullptr && n_written != nullptr,
                          "ctx, prompt or n_written is NULL");
        BNREF_REQUIRE_ARG(out != nullptr || out_cap == 0, "out is NULL");
        BNREF_REQUIRE_ARG(n_prompt >= 1, "the prompt is empty");
        *n_written = 0;
        BNREF_REQUIRE(out_cap >= n_generate, BNREF_ERR_BUFFER_TOO_SMALL,
                      "the output needs " + std::to_string(n_generate) + " tokens");
        bnref_context_reset(ctx);
        // The last generated token is returned but never fed back.
        bnref_status status = require_room(ctx, n_prompt + (n_generate == 0 ? 0 : n_generate - 1));
        if (status != BNREF_OK) {
            return status;
        }
        status = bnref::check_tokens(ctx->model, prompt, n_prompt);
        if (status != BNREF_OK) {
            return status;
        }
        bnref::Batch batch(static_cast<int32_t>(ctx->n_batch));
        for (size_t start = 0; start < n_prompt; start += ctx->n_batch) {
            const size_t count = std::min<size_t>(ctx->n_batch, n_prompt - start);
            batch.clear();
            for (size_t i = 0; i < count; ++i) {
                batch.add(prompt[start + i], static_cast<llama_pos>(ctx->n_past + i), start + i + 1 == n_prompt);
            }
            status = bnref::decode(ctx, batch);
            if (status != BNREF_OK) {
                return status;
            }
        }
        std::unique_ptr<llama_sampler, decltype(&llama_sampler_free)> sampler(
            llama_sampler_chain_init(llama_sampler_chain_default_params()), llama_sampler_free);
        llama_sampler_chain_add(sampler.get(), llama_sampler_init_greedy());
        for (size_t k = 0; k < n_generate; ++k) {
            const llama_token token = llama_sampler_sample(sampler.get(), ctx->ctx, -1);
            out[k] = token;
            *n_written = k + 1;
            if ((stop_at_eog && llama_token_is_eog(ctx->model->model, token)) || k + 1 == n_generate) {
                break;
            }
            batch.clear();
            batch.add(token, static_cast<llama_pos>(ctx->n_past), true);
            status = bnref::decode(ctx, batch);
            if (status != BNREF_OK) {
                return status;
            }
        }
        return BNREF_OK;
    });
}

size_t bnref_context_n_captures(const bnref_context *ctx) {
    return ctx == nullptr ? 0 : ctx->captures.size();
}

bnref_status bnref_context_capture_get(const bnref_context *ctx, size_t index, bnref_capture *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(ctx != nullptr && out != nullptr, "ctx or out is NULL");
        BNREF_REQUIRE_ARG(index < ctx->captures.size(), "capture index " + std::to_string(index) + " is out of range");
        const bnref::CapturedTensor &capture = ctx->captures[index];
        out->name = capture.name.c_str();
        out->source_type = capture.source_type;
        for (int d = 0; d < 4; ++d) {
            out->ne[d] = capture.ne[d];
        }
        out->data = capture.converted ? capture.data.data() : nullptr;
        out->len = capture.data.size();
        out->eval_index = capture.eval_index;
        return BNREF_OK;
    });
}

void bnref_context_clear_captures(bnref_context *ctx) {
    if (ctx != nullptr) {
        ctx->captures.clear();
    }
}

} // extern "C"
