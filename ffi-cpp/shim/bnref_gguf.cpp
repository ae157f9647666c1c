// GGUF reading through the reference's gguf API, a structural pre-check, and model quantization.
#include "bnref_internal.hpp"

#include "ggml.h"
#include "llama.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <memory>

namespace {

constexpr uint32_t GGUF_VALUE_TYPES = 13; // uint8 .. float64 of enum gguf_type
constexpr uint64_t MIN_KV_BYTES = 8 + 4 + 1;         // key length, type, smallest value
constexpr uint64_t MIN_TENSOR_BYTES = 8 + 4 + 4 + 8; // name length, n_dims, type, offset

struct FileCloser {
    void operator()(std::FILE *file) const { std::fclose(file); }
};

// Sequential reader that never reads or allocates beyond the file's size.
class Cursor {
public:
    Cursor(std::FILE *file, uint64_t size) : file_(file), size_(size) {}

    uint64_t remaining() const { return size_ - pos_; }

    template <typename T>
    bool read(T *value) {
        if (remaining() < sizeof(T) || std::fread(value, sizeof(T), 1, file_) != 1) {
            return false;
        }
        pos_ += sizeof(T);
        return true;
    }

    bool skip(uint64_t bytes) {
        if (bytes > remaining() || std::fseek(file_, static_cast<long>(bytes), SEEK_CUR) != 0) {
            return false;
        }
        pos_ += bytes;
        return true;
    }

    bool read_string(std::string *out) {
        uint64_t len = 0;
        if (!read(&len) || len > remaining()) {
            return false;
        }
        out->resize(len);
        if (len != 0 && std::fread(&(*out)[0], 1, len, file_) != len) {
            return false;
        }
        pos_ += len;
        return true;
    }

    bool skip_string() {
        uint64_t len = 0;
        return read(&len) && skip(len);
    }

private:
    std::FILE *file_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

uint64_t scalar_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

bnref_status malformed(const char *path, const std::string &what) {
    return bnref::fail(BNREF_ERR_FORMAT, std::string(path) + ": " + what);
}

bnref_status truncated(const char *path, const std::string &what) {
    return malformed(path, what + " runs past the end of the file");
}

bnref_status check_value(Cursor &cursor, const char *path, const std::string &key, uint32_t type) {
    if (type == GGUF_TYPE_STRING) {
        return cursor.skip_string() ? BNREF_OK : truncated(path, "string value of '" + key + "'");
    }
    if (type == GGUF_TYPE_ARRAY) {
        uint32_t element_type = 0;
        uint64_t n = 0;
        if (!cursor.read(&element_type) || !cursor.read(&n)) {
            return truncated(path, "array header of '" + key + "'");
        }
        if (element_type == GGUF_TYPE_STRING) {
            if (n > cursor.remaining() / 8) {
                return truncated(path, "string array '" + key + "'");
            }
            for (uint64_t i = 0; i < n; ++i) {
                if (!cursor.skip_string()) {
                    return truncated(path, "string array '" + key + "'");
                }
            }
            return BNREF_OK;
        }
        const uint64_t size = scalar_size(element_type);
        if (size == 0) {
            return malformed(path, "array '" + key + "' has element type " + std::to_string(element_type) +
                                       " (nested arrays and unknown types are not readable)");
        }
        if (n > cursor.remaining() / size || !cursor.skip(n * size)) {
            return truncated(path, "array '" + key + "'");
        }
        return BNREF_OK;
    }
    const uint64_t size = scalar_size(type);
    if (size == 0) {
        return malformed(path, "key '" + key + "' has unknown value type " + std::to_string(type));
    }
    return cursor.skip(size) ? BNREF_OK : truncated(path, "value of '" + key + "'");
}

bnref_status check_tensor_info(Cursor &cursor, const char *path, uint64_t index) {
    std::string name;
    uint32_t n_dims = 0;
    if (!cursor.read_string(&name) || !cursor.read(&n_dims)) {
        return truncated(path, "tensor info " + std::to_string(index));
    }
    if (n_dims == 0 || n_dims > GGML_MAX_DIMS) {
        return malformed(path, "tensor '" + name + "' has " + std::to_string(n_dims) + " dimensions (need 1 to 4)");
    }
    int64_t total = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
        int64_t ne = 0;
        if (!cursor.read(&ne)) {
            return truncated(path, "shape of tensor '" + name + "'");
        }
        if (ne <= 0 || !bnref::mul_fits(total, ne, &total)) {
            return malformed(path, "tensor '" + name + "' has dimension " + std::to_string(ne) +
                                       " (must be positive, product within int64)");
        }
    }
    uint32_t type = 0;
    uint64_t offset = 0;
    if (!cursor.read(&type) || !cursor.read(&offset)) {
        return truncated(path, "tensor info of '" + name + "'");
    }
    if (type >= GGML_TYPE_COUNT) {
        return malformed(path, "tensor '" + name + "' has ggml type " + std::to_string(type) +
                                   ", unknown to this reference (types 0.." +
                                   std::to_string(GGML_TYPE_COUNT - 1) + ")");
    }
    return BNREF_OK;
}

// Limits compiled into the reference's llama.cpp (LLAMA_MAX_EXPERTS, LLAMA_MAX_LAYERS).
constexpr uint32_t MAX_EXPERTS = 160;
constexpr uint32_t MAX_LAYERS = 512;

// A metadata-only gguf_context, freed on scope exit.
class GgufMeta {
public:
    explicit GgufMeta(const char *path) {
        gguf_init_params params;
        params.no_alloc = true;
        params.ctx = nullptr;
        ctx_ = gguf_init_from_file(path, params);
    }
    ~GgufMeta() {
        if (ctx_ != nullptr) {
            gguf_free(ctx_);
        }
    }
    GgufMeta(const GgufMeta &) = delete;
    GgufMeta &operator=(const GgufMeta &) = delete;

    bool ok() const { return ctx_ != nullptr; }

    const char *string(const std::string &key) const {
        const int id = gguf_find_key(ctx_, key.c_str());
        return id >= 0 && gguf_get_kv_type(ctx_, id) == GGUF_TYPE_STRING ? gguf_get_val_str(ctx_, id) : nullptr;
    }

    bool u32(const std::string &key, uint32_t *out) const {
        const int id = gguf_find_key(ctx_, key.c_str());
        if (id < 0 || gguf_get_kv_type(ctx_, id) != GGUF_TYPE_UINT32) {
            return false;
        }
        *out = gguf_get_val_u32(ctx_, id);
        return true;
    }

    // Layers among the first n_layer whose per-layer count under `key` is zero, or -1 if the
    // key is absent or not a 32-bit integer (array).
    int64_t zero_layers(const std::string &key, uint32_t n_layer) const {
        const int id = gguf_find_key(ctx_, key.c_str());
        if (id < 0) {
            return -1;
        }
        if (gguf_get_kv_type(ctx_, id) == GGUF_TYPE_UINT32) {
            return gguf_get_val_u32(ctx_, id) == 0 ? n_layer : 0;
        }
        if (gguf_get_kv_type(ctx_, id) != GGUF_TYPE_ARRAY || gguf_get_arr_n(ctx_, id) < static_cast<int>(n_layer)) {
            return -1;
        }
        const gguf_type type = gguf_get_arr_type(ctx_, id);
        if (type != GGUF_TYPE_UINT32 && type != GGUF_TYPE_INT32) {
            return -1;
        }
        const auto *values = static_cast<const int32_t *>(gguf_get_arr_data(ctx_, id));
        return std::count(values, values + n_layer, 0);
    }

    int64_t count_tensors_containing(std::initializer_list<const char *> fragments) const {
        int64_t count = 0;
        for (int i = 0; i < gguf_get_n_tensors(ctx_); ++i) {
            const std::string name = gguf_get_tensor_name(ctx_, i);
            for (const char *fragment : fragments) {
                if (name.find(fragment) != std::string::npos) {
                    ++count;
                    break;
                }
            }
        }
        return count;
    }

private:
    gguf_context *ctx_ = nullptr;
};

} // namespace

struct bnref_gguf {
    gguf_context *gguf = nullptr;
    ggml_context *meta = nullptr;

    ~bnref_gguf() {
        if (meta != nullptr) {
            ggml_free(meta);
        }
        if (gguf != nullptr) {
            gguf_free(gguf);
        }
    }
};

namespace bnref {

bnref_status preflight_gguf(const char *path) {
    std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path, "rb"));
    if (!file) {
        return fail(BNREF_ERR_IO, std::string("cannot open ") + path + ": " + std::strerror(errno));
    }
    if (std::fseek(file.get(), 0, SEEK_END) != 0) {
        return fail(BNREF_ERR_IO, std::string("cannot seek in ") + path);
    }
    const long size = std::ftell(file.get());
    if (size < 0 || std::fseek(file.get(), 0, SEEK_SET) != 0) {
        return fail(BNREF_ERR_IO, std::string("cannot size ") + path);
    }
    Cursor cursor(file.get(), static_cast<uint64_t>(size));

    char magic[4];
    uint32_t version = 0;
    uint64_t n_tensors = 0;
    uint64_t n_kv = 0;
    if (!cursor.read(&magic) || std::memcmp(magic, "GGUF", 4) != 0) {
        return malformed(path, "does not start with the GGUF magic");
    }
    if (!cursor.read(&version) || !cursor.read(&n_tensors) || !cursor.read(&n_kv)) {
        return truncated(path, "the header");
    }
    if (version < 2) {
        return malformed(path, "GGUF version " + std::to_string(version) + " is not readable (need 2 or 3)");
    }
    if (n_kv > cursor.remaining() / MIN_KV_BYTES || n_tensors > cursor.remaining() / MIN_TENSOR_BYTES) {
        return malformed(path, "declares more entries than the file can hold");
    }
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key;
        uint32_t type = 0;
        if (!cursor.read_string(&key) || !cursor.read(&type)) {
            return truncated(path, "metadata entry " + std::to_string(i));
        }
        if (key == "general.alignment") {
            uint32_t alignment = 0;
            if (type != GGUF_TYPE_UINT32 || !cursor.read(&alignment) || alignment == 0) {
                return malformed(path, "general.alignment must be a non-zero uint32");
            }
            continue;
        }
        if (type >= GGUF_VALUE_TYPES) {
            return malformed(path, "key '" + key + "' has unknown value type " + std::to_string(type));
        }
        const bnref_status status = check_value(cursor, path, key, type);
        if (status != BNREF_OK) {
            return status;
        }
    }
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const bnref_status status = check_tensor_info(cursor, path, i);
        if (status != BNREF_OK) {
            return status;
        }
    }
    return BNREF_OK;
}

bnref_status preflight_model(const char *path, bool quantizing) {
    const bnref_status status = preflight_gguf(path);
    if (status != BNREF_OK) {
        return status;
    }
    const GgufMeta meta(path);
    if (!meta.ok()) {
        return fail(BNREF_ERR_FORMAT, std::string("the reference's gguf reader rejected ") + path);
    }
    const char *arch = meta.string("general.architecture");
    if (arch == nullptr) {
        return BNREF_OK; // the reference reports the missing architecture itself
    }
    const std::string prefix = std::string(arch) + ".";
    uint32_t experts = 0;
    uint32_t experts_used = 0;
    meta.u32(prefix + "expert_count", &experts);
    meta.u32(prefix + "expert_used_count", &experts_used);
    if (experts > MAX_EXPERTS || experts_used > experts || (experts > 0) != (experts_used > 0)) {
        return malformed(path, "expert counts " + std::to_string(experts) + " / " + std::to_string(experts_used) +
                                   " used are inconsistent or above the reference's limit of " +
                                   std::to_string(MAX_EXPERTS));
    }
    uint32_t n_layer = 0;
    if (!quantizing || !meta.u32(prefix + "block_count", &n_layer) || n_layer > MAX_LAYERS) {
        return BNREF_OK;
    }
    int64_t without_attention = meta.zero_layers(prefix + "attention.head_count_kv", n_layer);
    if (without_attention < 0) {
        without_attention = meta.zero_layers(prefix + "attention.head_count", n_layer);
    }
    if (without_attention < 0) {
        return BNREF_OK;
    }
    int64_t attention_layers = n_layer - without_attention;
    if (std::strcmp(arch, "t5") == 0 || std::strcmp(arch, "t5encoder") == 0) {
        attention_layers *= 3;
    }
    const int64_t value_tensors = meta.count_tensors_containing({"attn_v.weight", "attn_qkv.weight", "attn_kv_b.weight"});
    if (value_tensors != attention_layers) {
        return malformed(path, "has " + std::to_string(value_tensors) + " attention value tensors for " +
                                   std::to_string(attention_layers) +
                                   " attention layers; the reference's quantizer needs one per layer");
    }
    return BNREF_OK;
}

} // namespace bnref

extern "C" {

bnref_status bnref_gguf_open(const char *path, bnref_gguf **out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(path != nullptr && out != nullptr, "path or out is NULL");
        *out = nullptr;
        const bnref_status status = bnref::preflight_gguf(path);
        if (status != BNREF_OK) {
            return status;
        }
        auto handle = std::make_unique<bnref_gguf>();
        gguf_init_params params;
        params.no_alloc = true;
        params.ctx = &handle->meta;
        handle->gguf = gguf_init_from_file(path, params);
        if (handle->gguf == nullptr) {
            return bnref::fail(BNREF_ERR_FORMAT, std::string("the reference's gguf reader rejected ") + path);
        }
        *out = handle.release();
        return BNREF_OK;
    });
}

void bnref_gguf_free(bnref_gguf *gguf) {
    delete gguf;
}

bnref_status bnref_gguf_summary_get(const bnref_gguf *gguf, bnref_gguf_summary *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(gguf != nullptr && out != nullptr, "gguf or out is NULL");
        out->version = static_cast<uint32_t>(gguf_get_version(gguf->gguf));
        out->alignment = gguf_get_alignment(gguf->gguf);
        out->data_offset = gguf_get_data_offset(gguf->gguf);
        out->n_kv = gguf_get_n_kv(gguf->gguf);
        out->n_tensors = gguf_get_n_tensors(gguf->gguf);
        return BNREF_OK;
    });
}

bnref_status bnref_gguf_tensor_get(const bnref_gguf *gguf, int64_t index, bnref_gguf_tensor *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(gguf != nullptr && out != nullptr, "gguf or out is NULL");
        BNREF_REQUIRE_ARG(index >= 0 && index < gguf_get_n_tensors(gguf->gguf),
                          "tensor index " + std::to_string(index) + " is out of range");
        const int i = static_cast<int>(index);
        const char *name = gguf_get_tensor_name(gguf->gguf, i);
        const ggml_tensor *tensor = ggml_get_tensor(gguf->meta, name);
        BNREF_REQUIRE(tensor != nullptr, BNREF_ERR_INTERNAL,
                      std::string("tensor '") + name + "' is missing from the metadata context");
        out->name = name;
        out->type = gguf_get_tensor_type(gguf->gguf, i);
        out->n_dims = static_cast<uint32_t>(ggml_n_dims(tensor));
        for (int d = 0; d < 4; ++d) {
            out->ne[d] = tensor->ne[d];
        }
        out->offset = gguf_get_tensor_offset(gguf->gguf, i);
        out->nbytes = ggml_nbytes(tensor);
        return BNREF_OK;
    });
}

bnref_status bnref_gguf_kv_get(const bnref_gguf *gguf, int64_t index, bnref_gguf_kv *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(gguf != nullptr && out != nullptr, "gguf or out is NULL");
        BNREF_REQUIRE_ARG(index >= 0 && index < gguf_get_n_kv(gguf->gguf),
                          "metadata index " + std::to_string(index) + " is out of range");
        const int i = static_cast<int>(index);
        const gguf_type type = gguf_get_kv_type(gguf->gguf, i);
        out->key = gguf_get_key(gguf->gguf, i);
        out->value_type = type;
        out->array_type = -1;
        out->array_len = -1;
        out->str_value = nullptr;
        if (type == GGUF_TYPE_ARRAY) {
            out->array_type = gguf_get_arr_type(gguf->gguf, i);
            out->array_len = gguf_get_arr_n(gguf->gguf, i);
        } else if (type == GGUF_TYPE_STRING) {
            out->str_value = gguf_get_val_str(gguf->gguf, i);
        }
        return BNREF_OK;
    });
}

bnref_status bnref_model_quantize(const char *input_path, const char *output_path,
                                  const bnref_quantize_params *params) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(input_path != nullptr && output_path != nullptr && params != nullptr,
                          "a path or params is NULL");
        for (const int32_t type : {params->token_embedding_type, params->output_tensor_type}) {
            BNREF_REQUIRE_ARG(type == -1 || (type >= 0 && type < GGML_TYPE_COUNT),
                              "tensor type override " + std::to_string(type) + " is out of range");
        }
        const bnref_status status = bnref::preflight_model(input_path, true);
        if (status != BNREF_OK) {
            return status;
        }
        llama_model_quantize_params qparams = llama_model_quantize_default_params();
        qparams.nthread = 1;
        qparams.ftype = static_cast<llama_ftype>(params->ftype);
        qparams.pure = params->pure;
        if (params->token_embedding_type >= 0) {
            qparams.token_embedding_type = static_cast<ggml_type>(params->token_embedding_type);
        }
        if (params->output_tensor_type >= 0) {
            qparams.output_tensor_type = static_cast<ggml_type>(params->output_tensor_type);
        }
        if (llama_model_quantize(input_path, output_path, &qparams) != 0) {
            return bnref::fail(BNREF_ERR_REFERENCE, std::string("llama_model_quantize failed for ") + input_path);
        }
        return BNREF_OK;
    });
}

} // extern "C"
