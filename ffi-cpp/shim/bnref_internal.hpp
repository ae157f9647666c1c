// Shared plumbing of the shim: per-thread error messages and the exception barrier.
#pragma once

#include "bnref.h"

#include <cstdint>
#include <exception>
#include <string>
#include <utility>

namespace bnref {

// Records `message` (plus any error the reference logged during this call) as the calling
// thread's last error and returns `status`.
bnref_status fail(bnref_status status, std::string message);

// Forgets the calling thread's last error and the reference errors logged so far.
void clear_errors();

// Runs the process-wide initialisation once.
void ensure_init();

// Checks a GGUF file's structure so that the reference's reader, which aborts the process on
// some malformed input, only ever sees files it handles gracefully.
bnref_status preflight_gguf(const char *path);

// preflight_gguf plus the model-level conditions the reference asserts instead of reporting
// (expert counts; for quantization, one attention value tensor per attention layer).
bnref_status preflight_model(const char *path, bool quantizing);

// Runs `body` with errors cleared and the backend initialised, turning C++ exceptions into
// BNREF_ERR_INTERNAL so that none crosses the C boundary.
template <typename Body>
bnref_status guarded(const char *function, Body &&body) noexcept {
    try {
        clear_errors();
        ensure_init();
        return std::forward<Body>(body)();
    } catch (const std::exception &e) {
        return fail(BNREF_ERR_INTERNAL, std::string(function) + ": " + e.what());
    } catch (...) {
        return fail(BNREF_ERR_INTERNAL, std::string(function) + ": unknown C++ exception");
    }
}

// a * b for non-negative operands, or false when it does not fit in int64_t.
inline bool mul_fits(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

} // namespace bnref

#define BNREF_REQUIRE(cond, status, message)                                                    \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            return ::bnref::fail((status), (message));                                         \
        }                                                                                      \
    } while (0)

#define BNREF_REQUIRE_ARG(cond, message) BNREF_REQUIRE(cond, BNREF_ERR_INVALID_ARGUMENT, message)
