// Tests of include/rocmforge.hpp against the real library and model: errors as exceptions,
// move-only handles, the two-call buffers behind strings and vectors, generation, state
// save/load, KV edits, batches, cancellation, chat templates, callbacks. Prints
// "N passed, M failed" last (tests/cpp_and_install.rs reads it); runs under valgrind too.
//
//   test_hpp MODEL.gguf SCRATCH_DIR [--quantize]
//
// --quantize adds a whole quantize of the model, its load and a cancelled quantize (left out
// under valgrind, where quantizing 135M weights would take minutes); without it only the
// quantizer's argument errors run.
#include <rocmforge.hpp>

#include <cstdio>
#include <dirent.h>
#include <sys/stat.h>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace rf = rocmforge;

static int passed = 0;
static int failed = 0;

#define EXPECT(cond)                                                                         \
    do {                                                                                     \
        if (cond) {                                                                          \
            passed++;                                                                        \
        } else {                                                                             \
            failed++;                                                                        \
            std::fprintf(stderr, "%s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond);  \
        }                                                                                    \
    } while (0)

/// The status a call throws (ROCMFORGE_OK when it returns).
template <typename F> static rocmforge_status status_of(F &&f) {
    try {
        f();
    } catch (const rf::Error &e) {
        return e.status();
    }
    return ROCMFORGE_OK;
}

// Handles own their C object: movable, never copyable.
template <typename T> constexpr bool move_only() {
    return !std::is_copy_constructible_v<T> && !std::is_copy_assignable_v<T> &&
           std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>;
}
static_assert(move_only<rf::Model>());
static_assert(move_only<rf::Context>());
static_assert(move_only<rf::Batch>());
static_assert(move_only<rf::Sampler>());
static_assert(move_only<rf::ModelParams>());
static_assert(move_only<rf::ContextParams>());
static_assert(move_only<rf::QuantizeParams>());

// Short, and one thread per context: under valgrind each evaluated token costs seconds.
static const char *const PROMPT = "Paris is";

static void test_errors() {
    try {
        rf::Model missing("/nonexistent/rocmforge/model.gguf");
        EXPECT(!"a missing file loaded");
    } catch (const rf::Error &e) {
        EXPECT(e.status() == ROCMFORGE_ERR_IO);
        EXPECT(std::strlen(e.message()) > 0);
        // what() is "<status description>: <message>".
        const std::string what = e.what();
        const std::string head = std::string(rf::status_string(ROCMFORGE_ERR_IO)) + ": ";
        EXPECT(what.compare(0, head.size(), head) == 0);
        EXPECT(what.substr(head.size()) == e.message());
    }
    // A NUL inside a path would cut it short in C: refused before the call.
    EXPECT(status_of([] { rf::Model m(std::string("model\0.gguf", 11)); }) ==
           ROCMFORGE_ERR_INVALID_ARGUMENT);
    EXPECT(std::strcmp(rf::status_string(ROCMFORGE_ERR_BUSY),
                       "handle is in use by another thread") == 0);
    // Total over any int32_t (the C++ enum has int32_t underneath).
    EXPECT(std::strcmp(rf::status_string(static_cast<rocmforge_status>(9999)), "unknown status") ==
           0);
    EXPECT(std::strcmp(rf::status_string(static_cast<rocmforge_status>(-1)), "unknown status") ==
           0);
    EXPECT(rf::version() == rf::header_version);
    EXPECT(rf::version_string() == std::to_string(ROCMFORGE_VERSION_MAJOR) + "." +
                                       std::to_string(ROCMFORGE_VERSION_MINOR) + "." +
                                       std::to_string(ROCMFORGE_VERSION_PATCH));
    EXPECT(status_of([] { rf::Batch b(0); }) == ROCMFORGE_ERR_INVALID_ARGUMENT);
    EXPECT(status_of([] { (void)rf::device_count(); }) == ROCMFORGE_OK);
    EXPECT(status_of([] { (void)rf::gpu_built_in(); }) == ROCMFORGE_OK);
}

static void test_model(const rf::Model &model, const std::string &path) {
    EXPECT(model.architecture() == "llama");
    EXPECT(model.n_vocab() == 49152);
    EXPECT(model.n_layer() > 0 && model.n_embd() > 0 && model.n_params() > 0);
    EXPECT(model.backend() == ROCMFORGE_BACKEND_CPU);
    EXPECT(model.name().has_value());
    EXPECT(model.chat_template().has_value());
    EXPECT(model.meta("general.architecture") == std::optional<std::string>("llama"));
    // Longer than the first buffer: the two-call protocol grows it.
    EXPECT(model.meta("tokenizer.chat_template") == model.chat_template());
    EXPECT(!model.meta("no.such.key").has_value());
    const std::optional<std::int32_t> eos = model.token_special(ROCMFORGE_TOKEN_EOS);
    EXPECT(eos.has_value() && model.is_eog(*eos));
    EXPECT(status_of([&] { (void)model.is_eog(-1); }) == ROCMFORGE_ERR_INVALID_TOKEN);

    const std::string text = "Hello, world! \u00dcn\u00efc\u00f6d\u00e9 \U0001F642";
    const std::vector<std::int32_t> tokens = model.tokenize(text, false, false);
    EXPECT(!tokens.empty());
    EXPECT(model.detokenize(tokens) == text);
    std::string pieces;
    for (std::int32_t t : tokens) {
        pieces += model.token_to_piece(t);
    }
    EXPECT(pieces == text);
    EXPECT(model.tokenize("").empty() || model.tokenize("").size() == 1);
    // Special-token text becomes one id only with parse_special.
    EXPECT(model.tokenize("<|im_end|>", false, true).size() == 1);
    EXPECT(model.tokenize("<|im_end|>", false, false).size() > 1);

    const rocmforge_memory_estimate est = rf::estimate_memory(path);
    EXPECT(est.weights_bytes > 0 && est.total_bytes >= est.weights_bytes);
}

static void test_chat(const rf::Model &model) {
    const std::string rendered = model.chat_apply({{"user", "Hi"}});
    EXPECT(rendered.find("<|im_start|>user\nHi<|im_end|>") != std::string::npos);
    const std::string tail = "<|im_start|>assistant\n";
    EXPECT(rendered.size() > tail.size() &&
           rendered.compare(rendered.size() - tail.size(), tail.size(), tail) == 0);
    EXPECT(model.chat_apply({{"user", "Hi"}, {"assistant", "Hello"}}, false,
                            std::string("{% for m in messages %}[{{ m.role }}]{{ m.content }}"
                                        "{% endfor %}")) == "[user]Hi[assistant]Hello");
    EXPECT(status_of([&] {
               (void)model.chat_apply({{"user", "Hi"}}, true,
                                      std::string("{{ raise_exception('no') }}"));
           }) == ROCMFORGE_ERR_TEMPLATE);
    EXPECT(status_of([&] { (void)model.chat_apply({{"user", std::string("a\0b", 3)}}); }) ==
           ROCMFORGE_ERR_INVALID_ARGUMENT);
}

/// The logits of the context's last token, copied.
static std::vector<float> logits_of(rf::Context &ctx) {
    const rf::Logits l = ctx.logits();
    return std::vector<float>(l.begin(), l.end());
}

static void test_generation(const rf::Model &model, const std::string &scratch) {
    rf::Context ctx(model, rf::ContextParams().n_ctx(256).n_seq_max(2).n_threads(1));
    const rf::ContextSizes sizes = ctx.sizes();
    EXPECT(sizes.n_ctx == 256 && sizes.n_seq_max == 2 && sizes.n_batch > 0);

    const std::vector<std::int32_t> prompt = model.tokenize(PROMPT);
    ctx.eval(prompt);
    const std::int32_t last = static_cast<std::int32_t>(prompt.size()) - 1;
    EXPECT(ctx.kv_seq_pos_max(0) == last);
    EXPECT(ctx.logits().size() == model.n_vocab());
    const std::vector<float> prompt_logits = logits_of(ctx);
    const std::vector<std::uint8_t> state = ctx.state_save();
    EXPECT(state.size() > 0);
    const std::string file = scratch + "/hpp-state.bin";
    ctx.state_save_file(file);

    rf::Sampler sampler;
    sampler.greedy();
    const std::int32_t next = sampler.sample(ctx);
    sampler.accept(next);
    ctx.eval(next);
    const std::vector<float> next_logits = logits_of(ctx);

    // State: a restore brings back the logits and the cache (the same next step).
    ctx.state_load(state);
    EXPECT(ctx.kv_seq_pos_max(0) == last && logits_of(ctx) == prompt_logits);
    ctx.eval(next);
    EXPECT(logits_of(ctx) == next_logits);
    ctx.state_load_file(file);
    EXPECT(logits_of(ctx) == prompt_logits);
    EXPECT(status_of([&] { ctx.state_load(state.data(), state.size() - 1); }) ==
           ROCMFORGE_ERR_INVALID_ARGUMENT);

    // KV edits: sequence 1 shares sequence 0's cells and continues the same way.
    ctx.kv_seq_copy(0, 1);
    EXPECT(ctx.kv_seq_pos_max(1) == last);
    ctx.eval(next, 1);
    EXPECT(logits_of(ctx) == next_logits);
    EXPECT(ctx.kv_seq_pos_max(1) == last + 1);
    ctx.kv_seq_remove(1, last + 1);
    EXPECT(ctx.kv_seq_pos_max(1) == last);
    ctx.kv_seq_remove(1);
    EXPECT(ctx.kv_seq_pos_max(1) == -1);
    EXPECT(ctx.kv_seq_pos_max(0) == last);
    ctx.kv_seq_copy(0, 1);
    ctx.kv_seq_keep(0);
    EXPECT(ctx.kv_seq_pos_max(1) == -1 && ctx.kv_seq_pos_max(0) == last);
    EXPECT(status_of([&] { (void)ctx.kv_seq_pos_max(2); }) == ROCMFORGE_ERR_INVALID_SEQUENCE);
    ctx.kv_clear();
    EXPECT(ctx.kv_seq_pos_max(0) == -1);

    // Cancel: the next eval stops with CANCELLED and the cache as it was; the one after runs.
    // A context log callback may be set and removed meanwhile: at DEBUG it hears the eval.
    ctx.state_load(state);
    ctx.cancel();
    EXPECT(status_of([&] { ctx.eval(next); }) == ROCMFORGE_ERR_CANCELLED);
    EXPECT(ctx.kv_seq_pos_max(0) == last);
    int lines = 0;
    ctx.set_log_callback([&](std::int32_t level, const char *) { lines += level == ROCMFORGE_LOG_DEBUG; });
    ctx.set_log_level(ROCMFORGE_LOG_DEBUG);
    ctx.eval(next);
    ctx.set_log_callback(nullptr);
    ctx.set_log_level(ROCMFORGE_LOG_GLOBAL);
    EXPECT(lines == 1);
    EXPECT(status_of([&] { ctx.set_log_level(7); }) == ROCMFORGE_ERR_INVALID_ARGUMENT);
    EXPECT(status_of([&] { rf::set_log_level(ROCMFORGE_LOG_GLOBAL); }) == ROCMFORGE_ERR_INVALID_ARGUMENT);
    EXPECT(ctx.kv_seq_pos_max(0) == last + 1 && logits_of(ctx) == next_logits);

    // A batch of the same tokens gives the same logits as eval.
    rf::Context batched(model, rf::ContextParams().n_ctx(256).n_threads(1));
    rf::Batch batch(static_cast<std::uint32_t>(prompt.size()));
    for (std::size_t i = 0; i < prompt.size(); i++) {
        batch.add(prompt[i], static_cast<std::int32_t>(i), 0, i + 1 == prompt.size());
    }
    EXPECT(batch.size() == prompt.size());
    batched.decode(batch);
    EXPECT(logits_of(batched) == prompt_logits);
    if (prompt.size() > 1) {
        EXPECT(status_of([&] { (void)batched.logits(0); }) == ROCMFORGE_ERR_NOT_FOUND);
    }
    batch.clear();
    EXPECT(batch.size() == 0);
    EXPECT(sampler.sample(batched) == next);

    // Seeded samplers agree; a chain without a terminal stage is refused.
    rf::Sampler s1, s2;
    s1.penalties(64, 1.1f, 0.0f, 0.0f).top_k(40).top_p(0.95f).min_p(0.05f).temperature(0.8f).dist(42);
    s2.penalties(64, 1.1f, 0.0f, 0.0f).top_k(40).top_p(0.95f).min_p(0.05f).temperature(0.8f).dist(42);
    EXPECT(s1.sample(batched) == s2.sample(batched));
    s1.reset();
    rf::Sampler open_chain;
    open_chain.top_k(10);
    EXPECT(status_of([&] { (void)open_chain.sample(batched); }) == ROCMFORGE_ERR_INVALID_ARGUMENT);
}

/// Takes the model over (and destroys it) to check moves and lifetimes.
static void test_moves(rf::Model model, const std::string &path) {
    const std::vector<std::int32_t> hi = model.tokenize("Hi");
    rf::Context ctx(model, rf::ContextParams().n_threads(1));
    // Moves hand the C handle over; a moved-from object answers NULL_POINTER.
    rf::Model moved = std::move(model);
    EXPECT(moved.get() != nullptr && model.get() == nullptr);
    EXPECT(status_of([&] { (void)model.n_vocab(); }) == ROCMFORGE_ERR_NULL_POINTER);
    rf::Context other = std::move(ctx);
    EXPECT(status_of([&] { ctx.eval(1); }) == ROCMFORGE_ERR_NULL_POINTER);
    ctx = std::move(other);
    EXPECT(ctx.get() != nullptr && other.get() == nullptr);
    // The context keeps the weights: the model may go first.
    { rf::Model gone = std::move(moved); }
    ctx.eval(hi);
    EXPECT(ctx.kv_seq_pos_max(0) == static_cast<std::int32_t>(hi.size()) - 1);

    // A progress callback that returns false cancels the load; one that throws cancels it and
    // its exception comes out of the constructor.
    rf::ModelParams cancel;
    cancel.progress([](float) { return false; });
    EXPECT(status_of([&] { rf::Model m(path, cancel); }) == ROCMFORGE_ERR_CANCELLED);
    rf::ModelParams throwing;
    throwing.progress([](float) -> bool { throw std::runtime_error("stop loading"); });
    try {
        rf::Model m(path, throwing);
        EXPECT(!"the load was not cancelled");
    } catch (const rf::Error &) {
        EXPECT(!"the callback's exception was replaced");
    } catch (const std::runtime_error &e) {
        EXPECT(std::strcmp(e.what(), "stop loading") == 0);
    }
    rf::ModelParams moved_params = std::move(throwing);
    moved_params.progress(nullptr);
}

/// The names in directory `dir` (without "." and "..").
static std::vector<std::string> files_in(const std::string &dir) {
    std::vector<std::string> names;
    if (DIR *d = opendir(dir.c_str())) {
        while (const dirent *e = readdir(d)) {
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
                names.push_back(e->d_name);
            }
        }
        closedir(d);
    }
    return names;
}

static void test_quantize(const rf::Model &input, const std::string &path,
                          const std::string &scratch, bool whole) {
    EXPECT(status_of([] { rf::QuantizeParams().type("Q9_K"); }) ==
           ROCMFORGE_ERR_INVALID_ARGUMENT);
    const std::string dir = scratch + "/quantize";
    mkdir(dir.c_str(), 0755);
    const std::string out = dir + "/q8_0.gguf";
    const std::string cancelled = dir + "/cancelled.gguf";
    // The test model is Q4_1: requantizing must be asked for, and nothing is written.
    EXPECT(status_of([&] { rf::quantize(path, out, rf::QuantizeParams().type("q8_0")); }) ==
           ROCMFORGE_ERR_INVALID_ARGUMENT);
    EXPECT(files_in(dir).empty());
    if (!whole) {
        return;
    }
    std::vector<std::pair<std::size_t, std::size_t>> calls;
    rf::QuantizeParams params;
    params.type("Q8_0").allow_requantize(true).progress([&](std::size_t done, std::size_t total) {
        calls.emplace_back(done, total);
        return true;
    });
    rf::quantize(path, out, params);
    EXPECT(calls.size() > 1 && calls.back().first == calls.back().second &&
           calls.size() == calls.back().second);
    {
        rf::Model model(out);
        EXPECT(model.n_vocab() == input.n_vocab());
        rf::Context ctx(model, rf::ContextParams().n_ctx(64).n_threads(1));
        ctx.eval(model.tokenize("The capital of France is"));
        rf::Sampler sampler;
        sampler.greedy();
        // Q8_0 is close to the Q4_1 input: the greedy answer is still Paris.
        EXPECT(model.token_to_piece(sampler.sample(ctx)) == " Paris");
    }
    // A cancel from the progress callback, by returning false or by throwing, leaves no file.
    rf::QuantizeParams stopping;
    stopping.type("Q8_0").allow_requantize(true).progress(
        [](std::size_t done, std::size_t) { return done < 1; });
    EXPECT(status_of([&] { rf::quantize(path, cancelled, stopping); }) == ROCMFORGE_ERR_CANCELLED);
    rf::QuantizeParams throwing;
    throwing.type("Q8_0").allow_requantize(true).progress(
        [](std::size_t, std::size_t) -> bool { throw std::runtime_error("stop"); });
    bool rethrown = false;
    try {
        rf::quantize(path, cancelled, throwing);
    } catch (const std::runtime_error &e) {
        rethrown = std::strcmp(e.what(), "stop") == 0;
    }
    EXPECT(rethrown);
    EXPECT(files_in(dir) == std::vector<std::string>{"q8_0.gguf"});
}

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s MODEL.gguf SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    const std::string path = argv[1];
    try {
        test_errors();
        // The one full load (the test runs under valgrind too), with a progress callback.
        std::vector<float> progress;
        rf::ModelParams params;
        params.progress([&](float f) {
            progress.push_back(f);
            return true;
        });
        rf::Model model(path, params);
        EXPECT(!progress.empty());
        bool monotonic = true;
        for (std::size_t i = 1; i < progress.size(); i++) {
            monotonic = monotonic && progress[i] >= progress[i - 1];
        }
        EXPECT(monotonic);
        test_model(model, path);
        test_chat(model);
        test_generation(model, argv[2]);
        const bool whole_quantize = argc > 3 && std::strcmp(argv[3], "--quantize") == 0;
        test_quantize(model, path, argv[2], whole_quantize);
        test_moves(std::move(model), path);
    } catch (const std::exception &e) {
        failed++;
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
