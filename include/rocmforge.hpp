/*
 * rocmforge.hpp: header-only C++17 wrappers over the C API of ROCmForge (rocmforge.h).
 *
 * - Owning handles (Model, Context, Batch, Sampler, ModelParams, ContextParams, QuantizeParams)
 *   are move-only and free their C handle in the destructor; get() returns the C handle for
 *   calls this header does not wrap. rocmforge::quantize() is llama_model_quantize.
 * - The two-call size protocol is hidden: text comes back as std::string, tokens as
 *   std::vector<int32_t>, saved state as std::vector<uint8_t>.
 * - Failures throw rocmforge::Error, which carries the rocmforge_status and the library's
 *   detailed message (rocmforge_last_error, copied at once). Exceptions rather than an
 *   expected-style result because constructors acquire the handles (RAII) and C++17 has no
 *   std::expected; what may simply be absent (a model's name, a metadata key, a special token)
 *   is a std::optional instead. Programs built without exceptions use rocmforge.h directly.
 * - Threads, as in C: a Model may be shared by any number of threads; a Context, Sampler or
 *   Batch is used by one thread at a time (concurrent use throws Error with
 *   ROCMFORGE_ERR_BUSY); Context::cancel may be called from any thread while the context lives.
 * - Callbacks given as std::function never let an exception into the library: a progress
 *   callback that throws cancels the load and Model's constructor rethrows it; a log callback's
 *   exception is dropped.
 *
 * Build with -std=c++17 (or later) against librocmforge (pkg-config: rocmforge; CMake:
 * rocmforge::rocmforge). See docs/C_API.md and tests/cpp/ for examples.
 */
#ifndef ROCMFORGE_HPP
#define ROCMFORGE_HPP

#include "rocmforge.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if !defined(__cpp_exceptions)
#error "rocmforge.hpp reports failures as exceptions; without exceptions use rocmforge.h"
#endif // !__cpp_exceptions

namespace rocmforge {

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/// A failed call: its status and the library's detailed message. what() is
/// "<status description>: <message>".
class Error : public std::runtime_error {
public:
    Error(rocmforge_status status, const std::string &message)
        : std::runtime_error(compose(status, message)), status_(status),
          message_offset_(message.empty() ? 0 : std::strlen(rocmforge_status_string(status)) + 2) {}

    /// The status the C API returned.
    rocmforge_status status() const noexcept { return status_; }

    /// The detailed message alone (rocmforge_last_error at the time of the failure).
    const char *message() const noexcept {
        return message_offset_ == 0 ? "" : what() + message_offset_;
    }

private:
    static std::string compose(rocmforge_status status, const std::string &message) {
        std::string text = rocmforge_status_string(status);
        if (!message.empty()) {
            text += ": ";
            text += message;
        }
        return text;
    }

    rocmforge_status status_;
    std::size_t message_offset_;
};

/// The static description of a status (total: any value gets a string).
inline const char *status_string(rocmforge_status status) noexcept {
    return rocmforge_status_string(status);
}

namespace detail {

/// Throws the failure `status` with the calling thread's last-error message.
[[noreturn]] inline void throw_status(rocmforge_status status) {
    throw Error(status, rocmforge_last_error());
}

inline void check(rocmforge_status status) {
    if (status != ROCMFORGE_OK) {
        throw_status(status);
    }
}

/// A string the C API reads up to its NUL: one with a NUL inside would be cut short there, so
/// it is refused instead.
inline const char *c_string(const std::string &s, const char *what) {
    if (s.find('\0') != std::string::npos) {
        throw Error(ROCMFORGE_ERR_INVALID_ARGUMENT, std::string(what) + " contains a NUL byte");
    }
    return s.c_str();
}

/// Runs a call of the two-call size protocol for tokens or bytes, growing `buf` (first tried
/// at its current size) until the result fits, then trimming it to the result.
template <typename T, typename Call> void fill(std::vector<T> &buf, Call &&call) {
    for (;;) {
        std::size_t needed = 0;
        rocmforge_status status = call(buf.empty() ? nullptr : buf.data(), buf.size(), &needed);
        if (status == ROCMFORGE_OK) {
            buf.resize(needed);
            return;
        }
        if (status != ROCMFORGE_ERR_BUFFER_TOO_SMALL || needed <= buf.size()) {
            throw_status(status);
        }
        buf.resize(needed);
    }
}

/// The same for text, into a std::string: the library writes a NUL after the text, so the
/// buffer needs one byte more than the length. The first try has `guess` bytes, so short
/// results cost one call.
template <typename Call> std::string text(std::size_t guess, Call &&call) {
    std::string out(guess, '\0');
    for (;;) {
        std::size_t needed = 0;
        rocmforge_status status = call(out.empty() ? nullptr : &out[0], out.size(), &needed);
        if (status == ROCMFORGE_OK) {
            out.resize(needed);
            return out;
        }
        if (status != ROCMFORGE_ERR_BUFFER_TOO_SMALL || needed + 1 <= out.size()) {
            throw_status(status);
        }
        out.resize(needed + 1);
    }
}

/// A unique owner of a C handle, freed with `Free` (which accepts NULL).
template <typename T, void (*Free)(T *)> class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *p) noexcept : p_(p) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.p_, nullptr));
        }
        return *this;
    }
    ~Handle() { Free(p_); }

    T *get() const noexcept { return p_; }
    T *release() noexcept { return std::exchange(p_, nullptr); }
    void reset(T *p = nullptr) noexcept { Free(std::exchange(p_, p)); }

private:
    T *p_ = nullptr;
};

} // namespace detail

/* ---------------------------------------------------------------------------------------- */
/* Library                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/// The version this header belongs to, as rocmforge_version() encodes it (major * 10000 +
/// minor * 100 + patch); compare with version() to check the loaded library.
inline constexpr std::uint32_t header_version =
    ROCMFORGE_VERSION_MAJOR * 10000u + ROCMFORGE_VERSION_MINOR * 100u + ROCMFORGE_VERSION_PATCH;

/// The loaded library's version (major * 10000 + minor * 100 + patch).
inline std::uint32_t version() noexcept { return rocmforge_version(); }

/// The loaded library's version as "MAJOR.MINOR.PATCH".
inline std::string version_string() { return rocmforge_version_string(); }

/// Whether this library has a GPU backend built in.
inline bool gpu_built_in() {
    bool out = false;
    detail::check(rocmforge_gpu_built_in(&out));
    return out;
}

/// The number of GPU devices present (0 without a GPU backend).
inline std::size_t device_count() {
    std::size_t out = 0;
    detail::check(rocmforge_device_count(&out));
    return out;
}

inline std::string device_name(std::size_t index) {
    return detail::text(64, [&](char *buf, std::size_t cap, std::size_t *n) {
        return rocmforge_device_name(index, buf, cap, n);
    });
}

inline std::string device_arch(std::size_t index) {
    return detail::text(32, [&](char *buf, std::size_t cap, std::size_t *n) {
        return rocmforge_device_arch(index, buf, cap, n);
    });
}

struct DeviceMemory {
    std::uint64_t total = 0;
    std::uint64_t free = 0;
};

inline DeviceMemory device_memory(std::size_t index) {
    DeviceMemory out;
    detail::check(rocmforge_device_memory(index, &out.total, &out.free));
    return out;
}

/// Sets (or with nullptr removes) the process-wide log callback: a plain C function, since it
/// may be called from any thread at any time (see rocmforge_set_log_callback).
inline void set_log_callback(rocmforge_log_callback callback, void *user_data = nullptr) {
    detail::check(rocmforge_set_log_callback(callback, user_data));
}

/// Sets the process-wide log level (ROCMFORGE_LOG_NONE to _DEBUG; _INFO by default): messages
/// not tied to a context and those of contexts without their own level. Any thread.
inline void set_log_level(std::int32_t level) { detail::check(rocmforge_set_log_level(level)); }

/* ---------------------------------------------------------------------------------------- */
/* Parameters                                                                                */
/* ---------------------------------------------------------------------------------------- */

/// Options for loading a model; the setters return *this for chaining.
class ModelParams {
public:
    ModelParams() {
        rocmforge_model_params *p = nullptr;
        detail::check(rocmforge_model_params_create(&p));
        handle_.reset(p);
    }
    ModelParams(ModelParams &&) noexcept = default;
    /// The old handle goes before the callback state it points at.
    ModelParams &operator=(ModelParams &&other) noexcept {
        handle_ = std::move(other.handle_);
        progress_ = std::move(other.progress_);
        return *this;
    }

    /// ROCMFORGE_BACKEND_AUTO, _CPU or _GPU.
    ModelParams &backend(std::int32_t backend) {
        detail::check(rocmforge_model_params_set_backend(get(), backend));
        return *this;
    }
    ModelParams &device(std::int32_t device) {
        detail::check(rocmforge_model_params_set_device(get(), device));
        return *this;
    }
    ModelParams &use_mmap(bool use_mmap) {
        detail::check(rocmforge_model_params_set_use_mmap(get(), use_mmap));
        return *this;
    }
    /// Called on the loading thread with the fraction done (0..1); return false to cancel the
    /// load. An exception it throws also cancels it and is rethrown by Model's constructor.
    /// An empty function removes the callback.
    ModelParams &progress(std::function<bool(float)> callback) {
        if (!callback) {
            detail::check(rocmforge_model_params_set_progress_callback(get(), nullptr, nullptr));
            progress_.reset();
            return *this;
        }
        auto holder = std::make_unique<Progress>();
        holder->callback = std::move(callback);
        detail::check(
            rocmforge_model_params_set_progress_callback(get(), &Progress::call, holder.get()));
        progress_ = std::move(holder);
        return *this;
    }

    rocmforge_model_params *get() const noexcept { return handle_.get(); }

private:
    friend class Model;

    struct Progress {
        std::function<bool(float)> callback;
        std::exception_ptr error;

        static bool call(float fraction, void *user_data) noexcept {
            auto *self = static_cast<Progress *>(user_data);
            try {
                return self->callback(fraction);
            } catch (...) {
                self->error = std::current_exception();
                return false;
            }
        }
    };

    /// Rethrows (once) what the progress callback threw during the last load.
    void rethrow_progress_error() const {
        if (progress_ && progress_->error) {
            std::rethrow_exception(std::exchange(progress_->error, nullptr));
        }
    }

    // The callback's state outlives the params handle that points at it (destroyed after it).
    std::unique_ptr<Progress> progress_;
    detail::Handle<rocmforge_model_params, rocmforge_model_params_free> handle_;
};

/// Options for quantize(); the defaults are the library's (llama.cpp's Q4_K_M mix, all cores,
/// no requantizing). The setters return *this for chaining.
class QuantizeParams {
public:
    QuantizeParams() {
        rocmforge_quantize_params *p = nullptr;
        detail::check(rocmforge_quantize_params_create(&p));
        handle_.reset(p);
    }
    QuantizeParams(QuantizeParams &&) noexcept = default;
    /// The old handle goes before the callback state it points at.
    QuantizeParams &operator=(QuantizeParams &&other) noexcept {
        handle_ = std::move(other.handle_);
        progress_ = std::move(other.progress_);
        return *this;
    }

    /// llama-quantize's name of the target, in any case ("Q4_K_M", "q8_0", "F16", ...) or a
    /// llama_ftype number ("15"); throws ROCMFORGE_ERR_UNSUPPORTED for a llama.cpp type this
    /// engine cannot write.
    QuantizeParams &type(const std::string &name) {
        detail::check(rocmforge_quantize_params_set_type(get(), detail::c_string(name, "type")));
        return *this;
    }
    /// Threads (0: all cores); the output does not depend on it.
    QuantizeParams &threads(std::int32_t threads) {
        detail::check(rocmforge_quantize_params_set_threads(get(), threads));
        return *this;
    }
    /// Accept an already quantized input (dequantized, then quantized again).
    QuantizeParams &allow_requantize(bool allow) {
        detail::check(rocmforge_quantize_params_set_allow_requantize(get(), allow));
        return *this;
    }
    /// Every quantizable tensor in the target's main type (llama-quantize's --pure).
    QuantizeParams &pure(bool pure) {
        detail::check(rocmforge_quantize_params_set_pure(get(), pure));
        return *this;
    }
    /// Called on the calling thread after each tensor is written with (tensors written,
    /// total); return false to cancel. An exception it throws also cancels and is rethrown by
    /// quantize(). An empty function removes the callback.
    QuantizeParams &progress(std::function<bool(std::size_t, std::size_t)> callback) {
        if (!callback) {
            detail::check(rocmforge_quantize_params_set_progress(get(), nullptr, nullptr));
            progress_.reset();
            return *this;
        }
        auto holder = std::make_unique<Progress>();
        holder->callback = std::move(callback);
        detail::check(rocmforge_quantize_params_set_progress(get(), &Progress::call, holder.get()));
        progress_ = std::move(holder);
        return *this;
    }

    rocmforge_quantize_params *get() const noexcept { return handle_.get(); }

private:
    friend void quantize(const std::string &, const std::string &, const QuantizeParams *);

    struct Progress {
        std::function<bool(std::size_t, std::size_t)> callback;
        std::exception_ptr error;

        static bool call(std::size_t done, std::size_t total, void *user_data) noexcept {
            auto *self = static_cast<Progress *>(user_data);
            try {
                return self->callback(done, total);
            } catch (...) {
                self->error = std::current_exception();
                return false;
            }
        }
    };

    /// Rethrows (once) what the progress callback threw during the last quantize.
    void rethrow_progress_error() const {
        if (progress_ && progress_->error) {
            std::rethrow_exception(std::exchange(progress_->error, nullptr));
        }
    }

    // The callback's state outlives the params handle that points at it (destroyed after it).
    std::unique_ptr<Progress> progress_;
    detail::Handle<rocmforge_quantize_params, rocmforge_quantize_params_free> handle_;
};

/// Writes the GGUF model at `input`, quantized as `params` say (nullptr: the defaults), to a
/// new file at `output` (replaced if it exists), as llama.cpp's llama_model_quantize does. The
/// same input and params give the same bytes. Throws Error on failure (ROCMFORGE_ERR_CANCELLED
/// when the progress callback returned false) or what the progress callback threw; in every
/// such case no file is left at `output` (an existing one is kept).
inline void quantize(const std::string &input, const std::string &output,
                     const QuantizeParams *params = nullptr) {
    rocmforge_status status = rocmforge_model_quantize(detail::c_string(input, "input"),
                                                       detail::c_string(output, "output"),
                                                       params ? params->get() : nullptr);
    if (params) {
        params->rethrow_progress_error();
    }
    detail::check(status);
}

inline void quantize(const std::string &input, const std::string &output,
                     const QuantizeParams &params) {
    quantize(input, output, &params);
}

/// Options for creating a context (0 = the model's or the library's default).
class ContextParams {
public:
    ContextParams() {
        rocmforge_context_params *p = nullptr;
        detail::check(rocmforge_context_params_create(&p));
        handle_.reset(p);
    }

    ContextParams &n_ctx(std::uint32_t value) {
        detail::check(rocmforge_context_params_set_n_ctx(get(), value));
        return *this;
    }
    ContextParams &n_batch(std::uint32_t value) {
        detail::check(rocmforge_context_params_set_n_batch(get(), value));
        return *this;
    }
    ContextParams &n_seq_max(std::uint32_t value) {
        detail::check(rocmforge_context_params_set_n_seq_max(get(), value));
        return *this;
    }
    ContextParams &n_threads(std::uint32_t value) {
        detail::check(rocmforge_context_params_set_n_threads(get(), value));
        return *this;
    }
    /// ROCMFORGE_CACHE_TYPE_F16 (default), ROCMFORGE_CACHE_TYPE_F32 or ROCMFORGE_CACHE_TYPE_Q8_0.
    ContextParams &cache_type(std::int32_t value) {
        detail::check(rocmforge_context_params_set_cache_type(get(), value));
        return *this;
    }
    /// Sliding-window layers keep every cell (true) instead of a ring of their window.
    ContextParams &swa_full(bool value) {
        detail::check(rocmforge_context_params_set_swa_full(get(), value));
        return *this;
    }

    rocmforge_context_params *get() const noexcept { return handle_.get(); }

private:
    detail::Handle<rocmforge_context_params, rocmforge_context_params_free> handle_;
};

/// The memory a model plus one context would take, before loading (rocmforge_estimate_memory).
inline rocmforge_memory_estimate estimate_memory(const std::string &path,
                                                 const ContextParams *params = nullptr) {
    rocmforge_memory_estimate out{};
    out.struct_size = sizeof out;
    detail::check(rocmforge_estimate_memory(detail::c_string(path, "path"),
                                            params ? params->get() : nullptr, &out));
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* Model                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/// One chat message for Model::chat_apply.
struct ChatMessage {
    std::string role;
    std::string content;
};

/// A loaded model: immutable, shared freely between threads and contexts.
class Model {
public:
    /// Loads a GGUF file (the path is bytes, passed as is) with default parameters.
    explicit Model(const std::string &path) { load(path, nullptr); }
    Model(const std::string &path, const ModelParams &params) { load(path, &params); }

    std::uint64_t n_vocab() const { return number(rocmforge_model_n_vocab); }
    std::uint64_t n_ctx_train() const { return number(rocmforge_model_n_ctx_train); }
    std::uint64_t n_embd() const { return number(rocmforge_model_n_embd); }
    std::uint64_t n_layer() const { return number(rocmforge_model_n_layer); }
    std::uint64_t size_bytes() const { return number(rocmforge_model_size_bytes); }
    std::uint64_t n_params() const { return number(rocmforge_model_n_params); }

    /// The backend AUTO resolved to: ROCMFORGE_BACKEND_CPU or _GPU.
    std::int32_t backend() const {
        std::int32_t out = 0;
        detail::check(rocmforge_model_backend(get(), &out));
        return out;
    }

    std::string architecture() const {
        const char *out = nullptr;
        detail::check(rocmforge_model_architecture(get(), &out));
        return out;
    }
    /// `general.name`, if the model has one.
    std::optional<std::string> name() const {
        return optional_string(rocmforge_model_name, ROCMFORGE_ERR_NOT_FOUND);
    }
    /// The model's Jinja chat template, if it has one.
    std::optional<std::string> chat_template() const {
        return optional_string(rocmforge_model_chat_template, ROCMFORGE_ERR_NO_CHAT_TEMPLATE);
    }
    /// Any GGUF metadata value as text, if the key exists.
    std::optional<std::string> meta(const std::string &key) const {
        const char *k = detail::c_string(key, "key");
        try {
            return detail::text(64, [&](char *buf, std::size_t cap, std::size_t *n) {
                return rocmforge_model_meta(get(), k, buf, cap, n);
            });
        } catch (const Error &e) {
            if (e.status() == ROCMFORGE_ERR_NOT_FOUND) {
                return std::nullopt;
            }
            throw;
        }
    }

    /// Token ids of UTF-8 `text`. `add_special` adds BOS/EOS as the model asks;
    /// `parse_special` turns special-token texts ("<|im_start|>") into their ids.
    std::vector<std::int32_t> tokenize(std::string_view text, bool add_special = true,
                                       bool parse_special = true) const {
        std::vector<std::int32_t> tokens(text.size() + 4);
        detail::fill(tokens, [&](std::int32_t *buf, std::size_t cap, std::size_t *n) {
            return rocmforge_tokenize(get(), text.data(), text.size(), add_special, parse_special,
                                      buf, cap, n);
        });
        return tokens;
    }

    /// The bytes of one token (may be part of a UTF-8 character). Control tokens render only
    /// when `special`.
    std::string token_to_piece(std::int32_t token, bool special = false) const {
        return detail::text(32, [&](char *buf, std::size_t cap, std::size_t *n) {
            return rocmforge_token_to_piece(get(), token, special, buf, cap, n);
        });
    }

    /// Text of `n` token ids (the inverse of tokenize).
    std::string detokenize(const std::int32_t *tokens, std::size_t n, bool special = false) const {
        return detail::text(n * 8 + 16, [&](char *buf, std::size_t cap, std::size_t *len) {
            return rocmforge_detokenize(get(), tokens, n, special, buf, cap, len);
        });
    }
    std::string detokenize(const std::vector<std::int32_t> &tokens, bool special = false) const {
        return detokenize(tokens.data(), tokens.size(), special);
    }

    /// The id of a special token (ROCMFORGE_TOKEN_BOS/EOS/EOT/PAD/UNK), if the model has it.
    std::optional<std::int32_t> token_special(std::int32_t which) const {
        std::int32_t out = 0;
        rocmforge_status status = rocmforge_token_special(get(), which, &out);
        if (status == ROCMFORGE_ERR_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(status);
        return out;
    }

    /// Whether `token` ends generation (EOS, EOT, ...).
    bool is_eog(std::int32_t token) const {
        bool out = false;
        detail::check(rocmforge_token_is_eog(get(), token, &out));
        return out;
    }

    /// Renders `messages` with the model's chat template (or `template_source` instead);
    /// tokenize the result with parse_special = true.
    std::string chat_apply(const std::vector<ChatMessage> &messages,
                           bool add_generation_prompt = true,
                           const std::optional<std::string> &template_source = std::nullopt) const {
        std::vector<const char *> roles, contents;
        roles.reserve(messages.size());
        contents.reserve(messages.size());
        for (const ChatMessage &m : messages) {
            roles.push_back(detail::c_string(m.role, "chat role"));
            contents.push_back(detail::c_string(m.content, "chat content"));
        }
        const char *tmpl =
            template_source ? detail::c_string(*template_source, "chat template") : nullptr;
        std::size_t guess = 256;
        for (const ChatMessage &m : messages) {
            guess += m.role.size() + m.content.size() + 32;
        }
        return detail::text(guess, [&](char *buf, std::size_t cap, std::size_t *n) {
            return rocmforge_chat_apply(get(), tmpl, roles.data(), contents.data(),
                                        messages.size(), add_generation_prompt, buf, cap, n);
        });
    }

    rocmforge_model *get() const noexcept { return handle_.get(); }

private:
    void load(const std::string &path, const ModelParams *params) {
        rocmforge_model *model = nullptr;
        rocmforge_status status = rocmforge_model_load(
            detail::c_string(path, "path"), params ? params->get() : nullptr, &model);
        if (params) {
            params->rethrow_progress_error();
        }
        detail::check(status);
        handle_.reset(model);
    }

    std::uint64_t number(rocmforge_status (*getter)(const rocmforge_model *,
                                                    std::uint64_t *)) const {
        std::uint64_t out = 0;
        detail::check(getter(get(), &out));
        return out;
    }

    std::optional<std::string> optional_string(
        rocmforge_status (*getter)(const rocmforge_model *, const char **),
        rocmforge_status absent) const {
        const char *out = nullptr;
        rocmforge_status status = getter(get(), &out);
        if (status == absent) {
            return std::nullopt;
        }
        detail::check(status);
        return std::string(out);
    }

    detail::Handle<rocmforge_model, rocmforge_model_free> handle_;
};

/* ---------------------------------------------------------------------------------------- */
/* Batch                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/// Tokens of one or more sequences evaluated together by Context::decode.
class Batch {
public:
    /// Room for `capacity` tokens (1..=65536).
    explicit Batch(std::uint32_t capacity) {
        rocmforge_batch *b = nullptr;
        detail::check(rocmforge_batch_create(capacity, &b));
        handle_.reset(b);
    }

    /// Adds `token` at position `pos` of sequence `seq`; `want_logits` keeps its logits.
    void add(std::int32_t token, std::int32_t pos, std::int32_t seq, bool want_logits) {
        detail::check(rocmforge_batch_add(get(), token, pos, seq, want_logits));
    }
    void clear() { detail::check(rocmforge_batch_clear(get())); }
    std::size_t size() const {
        std::size_t out = 0;
        detail::check(rocmforge_batch_size(get(), &out));
        return out;
    }

    rocmforge_batch *get() const noexcept { return handle_.get(); }

private:
    detail::Handle<rocmforge_batch, rocmforge_batch_free> handle_;
};

/* ---------------------------------------------------------------------------------------- */
/* Context                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/// A read-only view of one token's logits (n_vocab floats), valid until the context's next
/// eval, decode, state load or destruction.
class Logits {
public:
    Logits(const float *data, std::size_t size) noexcept : data_(data), size_(size) {}
    const float *data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    const float *begin() const noexcept { return data_; }
    const float *end() const noexcept { return data_ + size_; }
    float operator[](std::size_t i) const noexcept { return data_[i]; }

private:
    const float *data_;
    std::size_t size_;
};

/// A context's effective sizes.
struct ContextSizes {
    std::uint32_t n_ctx = 0;
    std::uint32_t n_batch = 0;
    std::uint32_t n_seq_max = 0;
};

/// Evaluation state (KV cache, logits) over a model. The context keeps its own reference to the
/// model's weights, so the Model may be destroyed first. One thread at a time; cancel() from any.
class Context {
public:
    explicit Context(const Model &model) { create(model, nullptr); }
    Context(const Model &model, const ContextParams &params) { create(model, &params); }
    Context(Context &&) noexcept = default;
    /// The old handle goes before the callback state it points at.
    Context &operator=(Context &&other) noexcept {
        handle_ = std::move(other.handle_);
        log_ = std::move(other.log_);
        return *this;
    }

    ContextSizes sizes() const {
        ContextSizes s;
        detail::check(rocmforge_context_sizes(get(), &s.n_ctx, &s.n_batch, &s.n_seq_max));
        return s;
    }

    /// Appends `n` tokens to sequence `seq` and computes the logits of the last one.
    void eval(const std::int32_t *tokens, std::size_t n, std::int32_t seq = 0) {
        detail::check(rocmforge_context_eval(get(), tokens, n, seq));
    }
    void eval(const std::vector<std::int32_t> &tokens, std::int32_t seq = 0) {
        eval(tokens.data(), tokens.size(), seq);
    }
    void eval(std::int32_t token, std::int32_t seq = 0) { eval(&token, 1, seq); }

    void decode(const Batch &batch) { detail::check(rocmforge_context_decode(get(), batch.get())); }

    /// The logits of token `index` of the last batch (-1: the last that asked for logits).
    Logits logits(std::int32_t index = -1) {
        const float *data = nullptr;
        std::size_t n = 0;
        detail::check(rocmforge_context_logits(get(), index, &data, &n));
        return Logits(data, n);
    }

    /// Asks the running (or the next) eval/decode to stop with ROCMFORGE_ERR_CANCELLED, the KV
    /// cache unchanged. Any thread, while the context is alive.
    void cancel() const { detail::check(rocmforge_context_cancel(get())); }

    void kv_clear() { detail::check(rocmforge_kv_clear(get())); }
    /// Removes positions [p0, p1) of `seq` (-1: every sequence; negative bounds: open).
    void kv_seq_remove(std::int32_t seq, std::int32_t p0 = -1, std::int32_t p1 = -1) {
        detail::check(rocmforge_kv_seq_remove(get(), seq, p0, p1));
    }
    /// Makes positions [p0, p1) of `src` part of `dst` too (cells shared, not copied).
    void kv_seq_copy(std::int32_t src, std::int32_t dst, std::int32_t p0 = -1,
                     std::int32_t p1 = -1) {
        detail::check(rocmforge_kv_seq_copy(get(), src, dst, p0, p1));
    }
    void kv_seq_keep(std::int32_t seq) { detail::check(rocmforge_kv_seq_keep(get(), seq)); }
    /// The largest position of `seq` (-1 when empty).
    std::int32_t kv_seq_pos_max(std::int32_t seq) {
        std::int32_t out = 0;
        detail::check(rocmforge_kv_seq_pos_max(get(), seq, &out));
        return out;
    }
    /// The smallest position of `seq` every layer still holds (-1 when empty): with
    /// sliding-window layers, the oldest their ring kept.
    std::int32_t kv_seq_pos_min(std::int32_t seq) {
        std::int32_t out = 0;
        detail::check(rocmforge_kv_seq_pos_min(get(), seq, &out));
        return out;
    }

    /// The whole context (`seq` = -1, logits included) or one sequence, as bytes.
    std::vector<std::uint8_t> state_save(std::int32_t seq = -1) {
        std::size_t size = 0;
        detail::check(rocmforge_state_size(get(), seq, &size));
        std::vector<std::uint8_t> out(size);
        detail::fill(out, [&](std::uint8_t *buf, std::size_t cap, std::size_t *n) {
            return rocmforge_state_save(get(), seq, buf, cap, n);
        });
        return out;
    }
    /// Restores bytes from state_save: the whole context (`seq` = -1) or into sequence `seq`.
    void state_load(const std::uint8_t *data, std::size_t n, std::int32_t seq = -1) {
        detail::check(rocmforge_state_load(get(), seq, data, n));
    }
    void state_load(const std::vector<std::uint8_t> &state, std::int32_t seq = -1) {
        state_load(state.data(), state.size(), seq);
    }
    void state_save_file(const std::string &path, std::int32_t seq = -1) {
        detail::check(rocmforge_state_save_file(get(), seq, detail::c_string(path, "path")));
    }
    void state_load_file(const std::string &path, std::int32_t seq = -1) {
        detail::check(rocmforge_state_load_file(get(), seq, detail::c_string(path, "path")));
    }

    /// This context's log callback (level: ROCMFORGE_LOG_*), called on the thread using the
    /// context; an empty function removes it. Exceptions it throws are dropped.
    void set_log_callback(std::function<void(std::int32_t, const char *)> callback) {
        if (!callback) {
            detail::check(rocmforge_context_set_log_callback(get(), nullptr, nullptr));
            log_.reset();
            return;
        }
        auto holder = std::make_unique<Log>();
        holder->callback = std::move(callback);
        detail::check(rocmforge_context_set_log_callback(get(), &Log::call, holder.get()));
        log_ = std::move(holder);
    }

    /// This context's log level (ROCMFORGE_LOG_NONE to _DEBUG), or ROCMFORGE_LOG_GLOBAL (the
    /// default) to follow the process-wide one; ROCMFORGE_LOG_DEBUG adds a line per eval.
    void set_log_level(std::int32_t level) {
        detail::check(rocmforge_context_set_log_level(get(), level));
    }

    rocmforge_context *get() const noexcept { return handle_.get(); }

private:
    struct Log {
        std::function<void(std::int32_t, const char *)> callback;

        static void call(std::int32_t level, const char *message, void *user_data) noexcept {
            try {
                static_cast<Log *>(user_data)->callback(level, message);
            } catch (...) {
            }
        }
    };

    void create(const Model &model, const ContextParams *params) {
        rocmforge_context *ctx = nullptr;
        detail::check(
            rocmforge_context_create(model.get(), params ? params->get() : nullptr, &ctx));
        handle_.reset(ctx);
    }

    // The log callback's state outlives the context handle that points at it.
    std::unique_ptr<Log> log_;
    detail::Handle<rocmforge_context, rocmforge_context_free> handle_;
};

/* ---------------------------------------------------------------------------------------- */
/* Sampler                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/// A sampler chain: add stages in order, ending with greedy() or dist(seed).
class Sampler {
public:
    Sampler() {
        rocmforge_sampler *s = nullptr;
        detail::check(rocmforge_sampler_create(&s));
        handle_.reset(s);
    }

    Sampler &greedy() {
        detail::check(rocmforge_sampler_add_greedy(get()));
        return *this;
    }
    /// Seeded random choice (ROCMFORGE_SEED_RANDOM: a seed from OS entropy).
    Sampler &dist(std::uint64_t seed) {
        detail::check(rocmforge_sampler_add_dist(get(), seed));
        return *this;
    }
    Sampler &temperature(float t) {
        detail::check(rocmforge_sampler_add_temperature(get(), t));
        return *this;
    }
    Sampler &top_k(std::int32_t k) {
        detail::check(rocmforge_sampler_add_top_k(get(), k));
        return *this;
    }
    Sampler &top_p(float p, std::uint32_t min_keep = 1) {
        detail::check(rocmforge_sampler_add_top_p(get(), p, min_keep));
        return *this;
    }
    Sampler &min_p(float p, std::uint32_t min_keep = 1) {
        detail::check(rocmforge_sampler_add_min_p(get(), p, min_keep));
        return *this;
    }
    Sampler &penalties(std::uint32_t last_n, float repeat, float frequency, float presence) {
        detail::check(rocmforge_sampler_add_penalties(get(), last_n, repeat, frequency, presence));
        return *this;
    }

    /// Picks a token from the logits of token `index` of `ctx`'s last batch (-1: the last that
    /// asked for logits). Does not accept it.
    std::int32_t sample(Context &ctx, std::int32_t index = -1) {
        std::int32_t out = 0;
        detail::check(rocmforge_sampler_sample(get(), ctx.get(), index, &out));
        return out;
    }
    /// Records the token kept (for penalties).
    void accept(std::int32_t token) { detail::check(rocmforge_sampler_accept(get(), token)); }
    void reset() { detail::check(rocmforge_sampler_reset(get())); }

    rocmforge_sampler *get() const noexcept { return handle_.get(); }

private:
    detail::Handle<rocmforge_sampler, rocmforge_sampler_free> handle_;
};

} // namespace rocmforge

#endif // ROCMFORGE_HPP
