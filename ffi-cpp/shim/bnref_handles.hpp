// The model and context handles behind the opaque C types.
#pragma once

#include "bnref_internal.hpp"

#include "llama.h"

#include <string>
#include <vector>

struct bnref_model {
    llama_model *model = nullptr;
    bool vocab_only = false;

    ~bnref_model() {
        if (model != nullptr) {
            llama_free_model(model);
        }
    }
};

namespace bnref {

struct CapturedTensor {
    std::string name;
    int32_t source_type;
    int64_t ne[4];
    std::vector<float> data;
    bool converted;
    uint32_t eval_index;
};

// Owns a llama_batch sized for `capacity` tokens of one sequence.
class Batch {
public:
    explicit Batch(int32_t capacity) : batch_(llama_batch_init(capacity, 0, 1)) {}
    ~Batch() { llama_batch_free(batch_); }
    Batch(const Batch &) = delete;
    Batch &operator=(const Batch &) = delete;

    void clear() { batch_.n_tokens = 0; }

    void add(llama_token token, llama_pos pos, bool wants_logits) {
        const int32_t i = batch_.n_tokens++;
        batch_.token[i] = token;
        batch_.pos[i] = pos;
        batch_.n_seq_id[i] = 1;
        batch_.seq_id[i][0] = 0;
        batch_.logits[i] = wants_logits ? 1 : 0;
    }

    const llama_batch &get() const { return batch_; }

private:
    llama_batch batch_;
};

} // namespace bnref

struct bnref_context {
    const bnref_model *model = nullptr;
    llama_context *ctx = nullptr;
    uint32_t n_batch = 0;
    uint32_t n_past = 0;
    uint32_t eval_count = 0;
    std::vector<std::string> capture_patterns;
    std::vector<bnref::CapturedTensor> captures;

    ~bnref_context() {
        if (ctx != nullptr) {
            llama_free(ctx);
        }
    }
};

namespace bnref {

// Checks that every token id is inside the model's vocabulary.
bnref_status check_tokens(const bnref_model *model, const int32_t *tokens, size_t n_tokens);

// Runs llama_decode on `batch`, counting evaluations for captured tensors. On failure the KV
// cache is cleared, because the reference may have kept part of the batch.
bnref_status decode(bnref_context *ctx, const Batch &batch);

} // namespace bnref
