// Model loading, metadata and tokenization.
#include "bnref_handles.hpp"

#include <climits>
#include <memory>

namespace {

bnref_status require_vocab(const bnref_model *model) {
    BNREF_REQUIRE(llama_vocab_type(model->model) != LLAMA_VOCAB_TYPE_NONE, BNREF_ERR_UNSUPPORTED,
                  "the model has no vocabulary");
    return BNREF_OK;
}

// Turns the reference's "negative means this many were needed" convention into a status.
bnref_status sized_result(int32_t result, size_t *len, const char *what) {
    if (result < 0) {
        BNREF_REQUIRE(result != INT32_MIN, BNREF_ERR_INVALID_ARGUMENT, std::string(what) + " is too long");
        *len = static_cast<size_t>(-static_cast<int64_t>(result));
        return bnref::fail(BNREF_ERR_BUFFER_TOO_SMALL,
                           std::string(what) + " needs " + std::to_string(*len) + " elements");
    }
    *len = static_cast<size_t>(result);
    return BNREF_OK;
}

int32_t clamp_capacity(size_t cap) {
    return cap > static_cast<size_t>(INT32_MAX) ? INT32_MAX : static_cast<int32_t>(cap);
}

} // namespace

namespace bnref {

bnref_status check_tokens(const bnref_model *model, const int32_t *tokens, size_t n_tokens) {
    const int32_t n_vocab = llama_n_vocab(model->model);
    for (size_t i = 0; i < n_tokens; ++i) {
        BNREF_REQUIRE_ARG(tokens[i] >= 0 && tokens[i] < n_vocab,
                          "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                              " is outside the vocabulary (size " + std::to_string(n_vocab) + ")");
    }
    return BNREF_OK;
}

} // namespace bnref

extern "C" {

bnref_status bnref_model_load(const char *path, const bnref_model_params *params, bnref_model **out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(path != nullptr && params != nullptr && out != nullptr, "path, params or out is NULL");
        *out = nullptr;
        const bnref_status status =
            params->vocab_only ? bnref::preflight_gguf(path) : bnref::preflight_model(path, false);
        if (status != BNREF_OK) {
            return status;
        }
        llama_model_params mparams = llama_model_default_params();
        mparams.n_gpu_layers = 0;
        mparams.vocab_only = params->vocab_only;
        mparams.use_mmap = params->use_mmap;
        auto handle = std::make_unique<bnref_model>();
        handle->model = llama_load_model_from_file(path, mparams);
        if (handle->model == nullptr) {
            return bnref::fail(BNREF_ERR_REFERENCE, std::string("the reference could not load ") + path);
        }
        handle->vocab_only = params->vocab_only;
        *out = handle.release();
        return BNREF_OK;
    });
}

void bnref_model_free(bnref_model *model) {
    delete model;
}

bnref_status bnref_model_info_get(const bnref_model *model, bnref_model_info *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(model != nullptr && out != nullptr, "model or out is NULL");
        const llama_model *m = model->model;
        out->n_vocab = llama_n_vocab(m);
        out->n_ctx_train = llama_n_ctx_train(m);
        out->n_embd = llama_n_embd(m);
        out->n_layer = llama_n_layer(m);
        out->vocab_type = llama_vocab_type(m);
        out->bos = llama_token_bos(m);
        out->eos = llama_token_eos(m);
        out->add_bos = llama_add_bos_token(m);
        out->vocab_only = model->vocab_only;
        return BNREF_OK;
    });
}

bnref_status bnref_model_meta(const bnref_model *model, const char *key, char *buf, size_t cap, size_t *len) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(model != nullptr && key != nullptr && len != nullptr, "model, key or len is NULL");
        BNREF_REQUIRE_ARG(buf != nullptr || cap == 0, "buf is NULL");
        const int32_t result = llama_model_meta_val_str(model->model, key, buf, cap);
        BNREF_REQUIRE_ARG(result >= 0, std::string("the model has no metadata key '") + key + "'");
        if (static_cast<size_t>(result) >= cap) {
            *len = static_cast<size_t>(result) + 1;
            return bnref::fail(BNREF_ERR_BUFFER_TOO_SMALL, "the value needs " + std::to_string(*len) + " bytes");
        }
        *len = static_cast<size_t>(result);
        return BNREF_OK;
    });
}

bnref_status bnref_tokenize(const bnref_model *model, const char *text, size_t text_len, bool add_special,
                            bool parse_special, int32_t *tokens, size_t cap, size_t *n_tokens) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(model != nullptr && n_tokens != nullptr, "model or n_tokens is NULL");
        BNREF_REQUIRE_ARG(text != nullptr || text_len == 0, "text is NULL");
        BNREF_REQUIRE_ARG(tokens != nullptr || cap == 0, "tokens is NULL");
        BNREF_REQUIRE_ARG(text_len <= static_cast<size_t>(INT32_MAX), "the text is too long");
        bnref_status status = require_vocab(model);
        if (status != BNREF_OK) {
            return status;
        }
        const llama_model *m = model->model;
        if (add_special) {
            BNREF_REQUIRE(!llama_add_bos_token(m) || llama_token_bos(m) != LLAMA_TOKEN_NULL, BNREF_ERR_UNSUPPORTED,
                          "the vocabulary asks for a BOS token but defines none");
            BNREF_REQUIRE(!llama_add_eos_token(m) || llama_token_eos(m) != LLAMA_TOKEN_NULL, BNREF_ERR_UNSUPPORTED,
                          "the vocabulary asks for an EOS token but defines none");
        }
        const int32_t result = llama_tokenize(m, text == nullptr ? "" : text, static_cast<int32_t>(text_len), tokens,
                                              clamp_capacity(cap), add_special, parse_special);
        return sized_result(result, n_tokens, "the token list");
    });
}

bnref_status bnref_token_to_piece(const bnref_model *model, int32_t token, bool special, char *buf, size_t cap,
                                  size_t *len) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(model != nullptr && len != nullptr, "model or len is NULL");
        BNREF_REQUIRE_ARG(buf != nullptr || cap == 0, "buf is NULL");
        bnref_status status = require_vocab(model);
        if (status != BNREF_OK) {
            return status;
        }
        status = bnref::check_tokens(model, &token, 1);
        if (status != BNREF_OK) {
            return status;
        }
        const int32_t result = llama_token_to_piece(model->model, token, buf, clamp_capacity(cap), 0, special);
        return sized_result(result, len, "the piece");
    });
}

bnref_status bnref_detokenize(const bnref_model *model, const int32_t *tokens, size_t n_tokens, bool remove_special,
                              bool unparse_special, char *buf, size_t cap, size_t *len) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(model != nullptr && len != nullptr, "model or len is NULL");
        BNREF_REQUIRE_ARG(tokens != nullptr || n_tokens == 0, "tokens is NULL");
        BNREF_REQUIRE_ARG(buf != nullptr || cap == 0, "buf is NULL");
        BNREF_REQUIRE_ARG(n_tokens <= static_cast<size_t>(INT32_MAX), "too many tokens");
        bnref_status status = require_vocab(model);
        if (status != BNREF_OK) {
            return status;
        }
        status = bnref::check_tokens(model, tokens, n_tokens);
        if (status != BNREF_OK) {
            return status;
        }
        const int32_t result = llama_detokenize(model->model, tokens, static_cast<int32_t>(n_tokens), buf,
                                                clamp_capacity(cap), remove_special, unparse_special);
        return sized_result(result, len, "the text");
    });
}

} // extern "C"
