// Perplexity with the protocol of the reference's llama-perplexity tool (one sequence at a time).
#include "bnref_handles.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace {

// -log p(token) from one row of logits, with the reference tool's precision: a float maximum,
// a double sum of float exponentials.
double negative_log_likelihood(const float *logits, size_t n_vocab, int32_t token) {
    float max_logit = logits[0];
    for (size_t i = 1; i < n_vocab; ++i) {
        max_logit = std::max(max_logit, logits[i]);
    }
    double sum_exp = 0.0;
    for (size_t i = 0; i < n_vocab; ++i) {
        sum_exp += expf(logits[i] - max_logit);
    }
    return -(logits[token] - max_logit - log(sum_exp));
}

} // namespace

extern "C" {

bnref_status bnref_context_perplexity(bnref_context *ctx, const int32_t *tokens, size_t n_tokens, int64_t max_chunks,
                                      double *nll, size_t nll_cap, bnref_perplexity_result *out) {
    return bnref::guarded(__func__, [&] {
        BNREF_REQUIRE_ARG(ctx != nullptr && tokens != nullptr && out != nullptr, "ctx, tokens or out is NULL");
        BNREF_REQUIRE_ARG(nll != nullptr || nll_cap == 0, "nll is NULL");
        const llama_model *model = ctx->model->model;
        const size_t n_ctx = llama_n_ctx(ctx->ctx);
        BNREF_REQUIRE_ARG(n_ctx >= 4, "the context is too small for perplexity");
        BNREF_REQUIRE_ARG(n_tokens >= 2 * n_ctx, "perplexity needs at least " + std::to_string(2 * n_ctx) +
                                                     " tokens with a context of " + std::to_string(n_ctx) + ", got " +
                                                     std::to_string(n_tokens));
        bnref_status status = bnref::check_tokens(ctx->model, tokens, n_tokens);
        if (status != BNREF_OK) {
            return status;
        }
        const size_t chunks_available = n_tokens / n_ctx;
        const size_t n_chunks =
            max_chunks < 0 ? chunks_available : std::min(chunks_available, static_cast<size_t>(max_chunks));
        BNREF_REQUIRE_ARG(n_chunks >= 1, "max_chunks is 0");
        const size_t first = n_ctx / 2;
        const size_t scored_per_chunk = n_ctx - 1 - first;
        const size_t n_scored = n_chunks * scored_per_chunk;
        BNREF_REQUIRE(nll_cap >= n_scored, BNREF_ERR_BUFFER_TOO_SMALL,
                      "the NLL output needs " + std::to_string(n_scored) + " values");

        const bool add_bos = llama_add_bos_token(model);
        const llama_token bos = llama_token_bos(model);
        const size_t n_vocab = static_cast<size_t>(llama_n_vocab(model));
        const size_t n_batch = std::min<size_t>(ctx->n_batch, n_ctx);
        std::vector<float> logits((n_ctx - first) * n_vocab);
        bnref::Batch batch(static_cast<int32_t>(n_batch));

        double nll_sum = 0.0;
        double nll2_sum = 0.0;
        size_t written = 0;
        for (size_t chunk = 0; chunk < n_chunks; ++chunk) {
            const size_t start = chunk * n_ctx;
            bnref_context_reset(ctx);
            for (size_t batch_start = 0; batch_start < n_ctx; batch_start += n_batch) {
                const size_t count = std::min(n_batch, n_ctx - batch_start);
                batch.clear();
                for (size_t k = 0; k < count; ++k) {
                    const size_t pos = batch_start + k;
                    const llama_token token = (pos == 0 && add_bos) ? bos : tokens[start + pos];
                    batch.add(token, static_cast<llama_pos>(pos), pos >= first);
                }
                status = bnref::decode(ctx, batch);
                if (status != BNREF_OK) {
                    return status;
                }
                for (size_t k = 0; k < count; ++k) {
                    const size_t pos = batch_start + k;
                    if (pos < first) {
                        continue;
                    }
                    const float *row = llama_get_logits_ith(ctx->ctx, static_cast<int32_t>(k));
                    BNREF_REQUIRE(row != nullptr, BNREF_ERR_REFERENCE, "the reference returned no logits");
                    std::memcpy(logits.data() + (pos - first) * n_vocab, row, n_vocab * sizeof(float));
                }
            }
            for (size_t i = 0; i < scored_per_chunk; ++i) {
                const int32_t target = tokens[start + first + i + 1];
                const double v = negative_log_likelihood(logits.data() + i * n_vocab, n_vocab, target);
                nll_sum += v;
                nll2_sum += v * v;
                nll[written++] = v;
            }
        }
        bnref_context_reset(ctx);

        const double count = static_cast<double>(n_scored);
        const double mean = nll_sum / count;
        const double variance = nll2_sum / count - mean * mean;
        out->ppl = std::exp(mean);
        out->ppl_err = (variance > 0 && n_scored > 1) ? std::sqrt(variance / (count - 1)) * out->ppl : 0.0;
        out->n_chunks = n_chunks;
        out->n_scored = n_scored;
        return BNREF_OK;
    });
}

} // extern "C"
