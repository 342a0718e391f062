/* C unit tests of librocmforge through its public header only.
 *
 *   test_api MODEL.gguf [SCRATCH_DIR]
 *
 * Each failing status is checked with its number and a fragment of rocmforge_last_error().
 * Token counts stay small: this program also runs under valgrind. Ends with the line
 * "N passed, M failed". */
#include <rocmforge.h>

#include <math.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static const char *model_path;
static const char *scratch = "/tmp";

#define EXPECT(cond)                                                                  \
    do {                                                                              \
        if (cond) {                                                                   \
            passed++;                                                                 \
        } else {                                                                      \
            failed++;                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    rocmforge_last_error());                                          \
        }                                                                             \
    } while (0)

/* A call must return `want` and, for failures, leave a message containing `fragment`. */
#define EXPECT_STATUS(call, want, fragment)                                                 \
    do {                                                                                    \
        rocmforge_status got_ = (call);                                                     \
        const char *msg_ = rocmforge_last_error();                                          \
        if (got_ == (want) && ((want) == ROCMFORGE_OK || strstr(msg_, (fragment)))) {       \
            passed++;                                                                       \
        } else {                                                                            \
            failed++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s returned %d (%s), wanted %d with \"%s\"; message: %s\n", \
                    __FILE__, __LINE__, #call, (int)got_, rocmforge_status_string((int)got_),  \
                    (int)(want), (fragment), msg_);                                          \
        }                                                                                   \
    } while (0)

#define OK(call) EXPECT_STATUS(call, ROCMFORGE_OK, "")

static rocmforge_model *model;
static int32_t prompt[64];
static size_t n_prompt;

static rocmforge_context *new_context(uint32_t n_ctx, uint32_t n_seq) {
    rocmforge_context_params *p = NULL;
    rocmforge_context *ctx = NULL;
    OK(rocmforge_context_params_create(&p));
    OK(rocmforge_context_params_set_n_ctx(p, n_ctx));
    OK(rocmforge_context_params_set_n_seq_max(p, n_seq));
    OK(rocmforge_context_params_set_n_threads(p, 2));
    OK(rocmforge_context_create(model, p, &ctx));
    rocmforge_context_params_free(p);
    return ctx;
}

/* Greedy continuation of the test prompt in a fresh context. */
static void greedy(rocmforge_context *ctx, int n, int32_t *out) {
    rocmforge_sampler *s = NULL;
    OK(rocmforge_sampler_create(&s));
    OK(rocmforge_sampler_add_greedy(s));
    OK(rocmforge_context_eval(ctx, prompt, n_prompt, 0));
    for (int i = 0; i < n; i++) {
        OK(rocmforge_sampler_sample(s, ctx, -1, &out[i]));
        OK(rocmforge_context_eval(ctx, &out[i], 1, 0));
    }
    rocmforge_sampler_free(s);
}

static void test_version_and_status_strings(void) {
    EXPECT(rocmforge_version() ==
           ROCMFORGE_VERSION_MAJOR * 10000 + ROCMFORGE_VERSION_MINOR * 100 + ROCMFORGE_VERSION_PATCH);
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", ROCMFORGE_VERSION_MAJOR, ROCMFORGE_VERSION_MINOR,
             ROCMFORGE_VERSION_PATCH);
    EXPECT(strcmp(rocmforge_version_string(), expect) == 0);
    for (int s = 0; s <= ROCMFORGE_ERR_NOT_FOUND; s++) {
        EXPECT(strcmp(rocmforge_status_string(s), "unknown status") != 0);
    }
    EXPECT(strcmp(rocmforge_status_string(ROCMFORGE_ERR_BUSY), "handle is in use by another thread") == 0);
    EXPECT(strcmp(rocmforge_status_string(9999), "unknown status") == 0);
    EXPECT(strcmp(rocmforge_status_string(-1), "unknown status") == 0);
}

static char log_text[4096];
static void capture_log(int32_t level, const char *message, void *user_data) {
    (void)level;
    (void)user_data;
    strncat(log_text, message, sizeof log_text - strlen(log_text) - 1);
}

static bool stop_at_half(float progress, void *user_data) {
    *(float *)user_data = progress;
    return progress < 0.5f;
}

static int self_removing_calls;
static void remove_self(int32_t level, const char *message, void *user_data) {
    (void)level;
    (void)message;
    (void)user_data;
    self_removing_calls++;
    rocmforge_set_log_callback(NULL, NULL); /* a callback may replace itself: no deadlock */
}

static bool refuse(float progress, void *user_data) {
    (void)progress;
    (void)user_data;
    return false;
}

static void test_loading_errors(void) {
    rocmforge_model *m = (rocmforge_model *)&passed; /* must stay untouched on failure */
    EXPECT_STATUS(rocmforge_model_load(NULL, NULL, &m), ROCMFORGE_ERR_NULL_POINTER, "path is NULL");
    EXPECT_STATUS(rocmforge_model_load(model_path, NULL, NULL), ROCMFORGE_ERR_NULL_POINTER, "out is NULL");
    EXPECT_STATUS(rocmforge_model_load("/nonexistent/model.gguf", NULL, &m), ROCMFORGE_ERR_IO,
                  "/nonexistent/model.gguf");
    char junk[512];
    snprintf(junk, sizeof junk, "%s/rocmforge_not_a_model.gguf", scratch);
    FILE *f = fopen(junk, "wb");
    fputs("definitely not GGUF", f);
    fclose(f);
    EXPECT_STATUS(rocmforge_model_load(junk, NULL, &m), ROCMFORGE_ERR_INVALID_MODEL, "GGUF");
    remove(junk);
    EXPECT(m == (rocmforge_model *)&passed);

    rocmforge_model_params *p = NULL;
    OK(rocmforge_model_params_create(&p));
    EXPECT_STATUS(rocmforge_model_params_set_backend(p, 7), ROCMFORGE_ERR_INVALID_ARGUMENT, "unknown backend 7");
    EXPECT_STATUS(rocmforge_model_params_set_device(p, -1), ROCMFORGE_ERR_INVALID_ARGUMENT, "negative");
    EXPECT_STATUS(rocmforge_model_params_set_backend(NULL, 0), ROCMFORGE_ERR_NULL_POINTER, "params is NULL");
    OK(rocmforge_model_params_set_backend(p, ROCMFORGE_BACKEND_GPU));
    /* These tests run where no GPU is usable: with the default build (no GPU backend) and with
     * the rocm build on a machine with the HIP runtime and no AMD GPU (the runtime's words). */
    bool gpu_built_in = true;
    OK(rocmforge_gpu_built_in(&gpu_built_in));
    EXPECT_STATUS(rocmforge_model_load(model_path, p, &m), ROCMFORGE_ERR_BACKEND_UNAVAILABLE,
                  gpu_built_in ? "runtime" : "not built in");

    /* AUTO falls back to the CPU and says so through the process-wide log callback; the
     * progress callback cancels half way. */
    float seen = -1.0f;
    OK(rocmforge_model_params_set_backend(p, ROCMFORGE_BACKEND_AUTO));
    OK(rocmforge_model_params_set_progress_callback(p, stop_at_half, &seen));
    OK(rocmforge_set_log_callback(capture_log, NULL));
    log_text[0] = '\0';
    EXPECT_STATUS(rocmforge_model_load(model_path, p, &m), ROCMFORGE_ERR_CANCELLED, "cancelled");
    EXPECT(seen >= 0.5f && seen < 1.0f);
    EXPECT(strstr(log_text, "using the CPU") != NULL);
    OK(rocmforge_set_log_callback(NULL, NULL));
    OK(rocmforge_set_log_callback(remove_self, NULL));
    OK(rocmforge_model_params_set_progress_callback(p, refuse, NULL));
    EXPECT_STATUS(rocmforge_model_load(model_path, p, &m), ROCMFORGE_ERR_CANCELLED, "cancelled");
    EXPECT_STATUS(rocmforge_model_load(model_path, p, &m), ROCMFORGE_ERR_CANCELLED, "cancelled");
    EXPECT(self_removing_calls == 1);
    rocmforge_model_params_free(p);
    rocmforge_model_params_free(NULL);
    EXPECT(m == (rocmforge_model *)&passed);
}

/* Progress of rocmforge_model_quantize: records the last (done, total); stops after `stop_at`
 * tensors when that is non-zero. */
struct quantize_progress {
    size_t done, total, stop_at;
};
static bool on_quantize_progress(size_t done, size_t total, void *user_data) {
    struct quantize_progress *p = user_data;
    p->done = done;
    p->total = total;
    return p->stop_at == 0 || done < p->stop_at;
}

static bool file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static void test_quantize(void) {
    char out[512], nowhere[512];
    snprintf(out, sizeof out, "%s/rocmforge_quantized.gguf", scratch);
    snprintf(nowhere, sizeof nowhere, "%s/no/such/dir/out.gguf", scratch);
    remove(out);
    rocmforge_quantize_params *p = NULL;
    OK(rocmforge_quantize_params_create(&p));
    EXPECT_STATUS(rocmforge_quantize_params_set_type(p, "Q9_Z"), ROCMFORGE_ERR_INVALID_ARGUMENT, "Q9_Z");
    EXPECT_STATUS(rocmforge_quantize_params_set_type(p, "IQ3_S"), ROCMFORGE_ERR_UNSUPPORTED,
                  "IQ3 types are not supported");
    EXPECT_STATUS(rocmforge_quantize_params_set_type(p, NULL), ROCMFORGE_ERR_NULL_POINTER, "type_name");
    EXPECT_STATUS(rocmforge_quantize_params_set_type(NULL, "Q8_0"), ROCMFORGE_ERR_NULL_POINTER, "params");
    EXPECT_STATUS(rocmforge_quantize_params_set_threads(p, -1), ROCMFORGE_ERR_INVALID_ARGUMENT, "threads");
    OK(rocmforge_quantize_params_set_threads(p, 2));
    OK(rocmforge_quantize_params_set_type(p, "q8_0"));

    /* The test model is Q4_1: requantizing must be asked for. */
    EXPECT_STATUS(rocmforge_model_quantize(model_path, out, p), ROCMFORGE_ERR_INVALID_ARGUMENT,
                  "--allow-requantize");
    EXPECT_STATUS(rocmforge_model_quantize(NULL, out, p), ROCMFORGE_ERR_NULL_POINTER, "input");
    EXPECT_STATUS(rocmforge_model_quantize(model_path, NULL, p), ROCMFORGE_ERR_NULL_POINTER, "output");
    EXPECT_STATUS(rocmforge_model_quantize("/nonexistent/in.gguf", out, p), ROCMFORGE_ERR_IO,
                  "/nonexistent/in.gguf");
    OK(rocmforge_quantize_params_set_allow_requantize(p, true));
    EXPECT_STATUS(rocmforge_model_quantize(model_path, nowhere, p), ROCMFORGE_ERR_IO, "no/such/dir");

    /* Cancelled after the first tensor: no file. */
    struct quantize_progress progress = {0, 0, 1};
    OK(rocmforge_quantize_params_set_progress(p, on_quantize_progress, &progress));
    EXPECT_STATUS(rocmforge_model_quantize(model_path, out, p), ROCMFORGE_ERR_CANCELLED, "cancelled");
    EXPECT(progress.done == 1 && progress.total == 272);
    EXPECT(!file_exists(out));

    /* A complete run (pure Q4_1: every tensor copied, fast under valgrind) reaches the total
     * and leaves the file (tests/quantize.rs loads and runs such files). */
    progress.stop_at = 0;
    OK(rocmforge_quantize_params_set_type(p, "Q4_1"));
    OK(rocmforge_quantize_params_set_pure(p, true));
    OK(rocmforge_model_quantize(model_path, out, p));
    EXPECT(progress.done == 272 && progress.total == 272);
    EXPECT(file_exists(out));
    remove(out);
    rocmforge_quantize_params_free(p);
    rocmforge_quantize_params_free(NULL);
}

static void test_devices(void) {
    bool built = true;
    size_t n = 99, len = 0;
    int32_t backend = -1;
    uint64_t total = 0, free_bytes = 0;
    OK(rocmforge_gpu_built_in(&built));
    OK(rocmforge_device_count(&n));
    if (!built) EXPECT(n == 0);
    EXPECT_STATUS(rocmforge_device_count(NULL), ROCMFORGE_ERR_NULL_POINTER, "out is NULL");
    EXPECT_STATUS(rocmforge_device_name(n, NULL, 0, &len), ROCMFORGE_ERR_NOT_FOUND, "does not exist");
    EXPECT_STATUS(rocmforge_device_arch(n, NULL, 0, &len), ROCMFORGE_ERR_NOT_FOUND, "does not exist");
    EXPECT_STATUS(rocmforge_device_memory(n, &total, &free_bytes), ROCMFORGE_ERR_NOT_FOUND, "does not exist");
    if (n > 0) {
        char name[256];
        OK(rocmforge_device_name(0, name, sizeof name, &len));
        EXPECT(len > 0 && strlen(name) == len);
        OK(rocmforge_device_memory(0, &total, &free_bytes));
        EXPECT(total >= free_bytes && total > 0);
    }
    OK(rocmforge_model_backend(model, &backend));
    EXPECT(backend == (n > 0 ? ROCMFORGE_BACKEND_GPU : ROCMFORGE_BACKEND_CPU));
    EXPECT_STATUS(rocmforge_model_backend(NULL, &backend), ROCMFORGE_ERR_NULL_POINTER, "model is NULL");
}

static void test_metadata(void) {
    const char *s = NULL;
    uint64_t v = 0;
    OK(rocmforge_model_architecture(model, &s));
    EXPECT(s && strcmp(s, "llama") == 0);
    OK(rocmforge_model_name(model, &s));
    EXPECT(s && strlen(s) > 0);
    OK(rocmforge_model_chat_template(model, &s));
    EXPECT(s && strstr(s, "<|im_start|>") != NULL);
    OK(rocmforge_model_n_vocab(model, &v));
    EXPECT(v == 49152);
    OK(rocmforge_model_n_layer(model, &v));
    EXPECT(v == 30);
    OK(rocmforge_model_n_embd(model, &v));
    EXPECT(v == 576);
    OK(rocmforge_model_n_ctx_train(model, &v));
    EXPECT(v == 8192);
    uint64_t size = 0, params = 0;
    OK(rocmforge_model_size_bytes(model, &size));
    OK(rocmforge_model_n_params(model, &params));
    EXPECT(size > 50000000 && size < 120000000);
    EXPECT(params > 130000000 && params < 170000000);
    EXPECT_STATUS(rocmforge_model_n_vocab(NULL, &v), ROCMFORGE_ERR_NULL_POINTER, "model is NULL");

    char buf[64];
    size_t n = 0;
    EXPECT_STATUS(rocmforge_model_meta(model, "general.architecture", NULL, 0, &n),
                  ROCMFORGE_ERR_BUFFER_TOO_SMALL, "5 bytes plus a NUL");
    EXPECT(n == 5);
    EXPECT_STATUS(rocmforge_model_meta(model, "general.architecture", buf, 5, &n),
                  ROCMFORGE_ERR_BUFFER_TOO_SMALL, "buffer holds 5");
    OK(rocmforge_model_meta(model, "general.architecture", buf, sizeof buf, &n));
    EXPECT(strcmp(buf, "llama") == 0);
    OK(rocmforge_model_meta(model, "llama.block_count", buf, sizeof buf, &n));
    EXPECT(strcmp(buf, "30") == 0);
    EXPECT_STATUS(rocmforge_model_meta(model, "no.such.key", buf, sizeof buf, &n), ROCMFORGE_ERR_NOT_FOUND,
                  "no.such.key");

    rocmforge_memory_estimate est;
    memset(&est, 0, sizeof est);
    est.struct_size = sizeof est;
    rocmforge_context_params *cp = NULL;
    OK(rocmforge_context_params_create(&cp));
    OK(rocmforge_context_params_set_n_ctx(cp, 1024));
    EXPECT_STATUS(rocmforge_context_params_set_n_seq_max(cp, 65), ROCMFORGE_ERR_INVALID_ARGUMENT, "n_seq_max");
    OK(rocmforge_estimate_memory(model_path, cp, &est));
    EXPECT(est.weights_bytes == size);
    /* keys + values, f16 (the default cache type): 2 * layers * n_ctx * kv_dim(192) * 2 */
    EXPECT(est.kv_cache_bytes == 2ull * 30 * 1024 * 192 * 2);
    /* An f32 cache takes twice that; unknown types are refused. */
    rocmforge_memory_estimate est32;
    memset(&est32, 0, sizeof est32);
    est32.struct_size = sizeof est32;
    OK(rocmforge_context_params_set_cache_type(cp, ROCMFORGE_CACHE_TYPE_F32));
    EXPECT_STATUS(rocmforge_context_params_set_cache_type(cp, 99), ROCMFORGE_ERR_INVALID_ARGUMENT,
                  "cache type");
    OK(rocmforge_estimate_memory(model_path, cp, &est32));
    EXPECT(est32.kv_cache_bytes == 2ull * 30 * 1024 * 192 * 4);
    /* SmolLM2 has no sliding-window layers: swa_full changes nothing. */
    OK(rocmforge_context_params_set_swa_full(cp, true));
    OK(rocmforge_estimate_memory(model_path, cp, &est32));
    EXPECT(est32.kv_cache_bytes == 2ull * 30 * 1024 * 192 * 4);
    /* q8_0: 34 bytes per 32 elements (kv_dim 192 = 6 blocks of 34). */
    OK(rocmforge_context_params_set_cache_type(cp, ROCMFORGE_CACHE_TYPE_Q8_0));
    OK(rocmforge_estimate_memory(model_path, cp, &est32));
    EXPECT(est32.kv_cache_bytes == 2ull * 30 * 1024 * 6 * 34);
    rocmforge_context_params_free(cp);
    EXPECT(est.compute_bytes > 0);
    EXPECT(est.total_bytes == est.weights_bytes + est.kv_cache_bytes + est.compute_bytes);
    /* An older, shorter struct gets only the fields it has. */
    struct { size_t struct_size; uint64_t weights_bytes; uint64_t canary; } old = {
        sizeof(size_t) + sizeof(uint64_t), 0, 77};
    OK(rocmforge_estimate_memory(model_path, NULL, (rocmforge_memory_estimate *)(void *)&old));
    EXPECT(old.weights_bytes == size && old.canary == 77);
    est.struct_size = 1;
    EXPECT_STATUS(rocmforge_estimate_memory(model_path, NULL, &est), ROCMFORGE_ERR_INVALID_ARGUMENT,
                  "struct_size");
}

static void test_tokenizer_and_chat(void) {
    const char *text = "Hello world, héllo!";
    size_t n = 0;
    int32_t toks[32];
    EXPECT_STATUS(rocmforge_tokenize(model, text, strlen(text), false, false, NULL, 0, &n),
                  ROCMFORGE_ERR_BUFFER_TOO_SMALL, "elements needed");
    size_t needed = n;
    EXPECT(needed > 3 && needed < 32);
    OK(rocmforge_tokenize(model, text, strlen(text), false, false, toks, 32, &n));
    EXPECT(n == needed);
    char buf[128];
    size_t len = 0;
    OK(rocmforge_detokenize(model, toks, n, false, buf, sizeof buf, &len));
    EXPECT(len == strlen(text) && strcmp(buf, text) == 0);
    EXPECT_STATUS(rocmforge_tokenize(model, "\xff\xfe", 2, false, false, toks, 32, &n),
                  ROCMFORGE_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_STATUS(rocmforge_tokenize(model, NULL, 4, false, false, toks, 32, &n), ROCMFORGE_ERR_NULL_POINTER,
                  "text is NULL");
    EXPECT_STATUS(rocmforge_token_to_piece(model, -1, false, buf, sizeof buf, &len), ROCMFORGE_ERR_INVALID_TOKEN,
                  "token id -1");
    EXPECT_STATUS(rocmforge_token_to_piece(model, 49152, false, buf, sizeof buf, &len),
                  ROCMFORGE_ERR_INVALID_TOKEN, "49152");
    int32_t bad[2] = {1, 50000};
    EXPECT_STATUS(rocmforge_detokenize(model, bad, 2, false, buf, sizeof buf, &len), ROCMFORGE_ERR_INVALID_TOKEN,
                  "50000");

    int32_t eos = -1, eot = -1;
    bool eog = false;
    OK(rocmforge_token_special(model, ROCMFORGE_TOKEN_EOS, &eos));
    OK(rocmforge_token_special(model, ROCMFORGE_TOKEN_EOT, &eot));
    OK(rocmforge_token_is_eog(model, eot, &eog));
    EXPECT(eog);
    OK(rocmforge_token_is_eog(model, toks[0], &eog));
    EXPECT(!eog);
    int32_t im_end = -1;
    OK(rocmforge_tokenize(model, "<|im_end|>", 10, false, true, &im_end, 1, &n));
    OK(rocmforge_token_is_eog(model, im_end, &eog));
    EXPECT(eog);
    OK(rocmforge_token_to_piece(model, im_end, true, buf, sizeof buf, &len));
    EXPECT(strcmp(buf, "<|im_end|>") == 0);
    OK(rocmforge_token_to_piece(model, im_end, false, buf, sizeof buf, &len));
    EXPECT(len == 0);
    EXPECT_STATUS(rocmforge_token_special(model, 42, &eos), ROCMFORGE_ERR_INVALID_ARGUMENT, "42");

    /* The model's own template, including the default system message it inserts itself. */
    const char *roles[] = {"user", "assistant", "user"};
    const char *contents[] = {"Hi", "Hello!", "What is 2+2?"};
    char chat[1024];
    OK(rocmforge_chat_apply(model, NULL, roles, contents, 3, true, chat, sizeof chat, &len));
    const char *want =
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
    EXPECT(strcmp(chat, want) == 0);
    EXPECT(len == strlen(want));
    const char *sys_roles[] = {"system", "user"};
    const char *sys_contents[] = {"Be terse.", "Hi"};
    OK(rocmforge_chat_apply(model, NULL, sys_roles, sys_contents, 2, false, chat, sizeof chat, &len));
    EXPECT(strcmp(chat, "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n") == 0);
    EXPECT_STATUS(rocmforge_chat_apply(model, "{{ raise_exception('roles must alternate') }}", roles, contents, 3,
                                       true, chat, sizeof chat, &len),
                  ROCMFORGE_ERR_TEMPLATE, "roles must alternate");
    EXPECT_STATUS(rocmforge_chat_apply(model, "{% for %}", roles, contents, 3, true, chat, sizeof chat, &len),
                  ROCMFORGE_ERR_TEMPLATE, "syntax");
    const char *null_role[] = {NULL};
    EXPECT_STATUS(rocmforge_chat_apply(model, NULL, null_role, contents, 1, true, chat, sizeof chat, &len),
                  ROCMFORGE_ERR_NULL_POINTER, "roles[0] is NULL");
}

static rocmforge_context *reentrant_ctx;
static rocmforge_status reentrant_status;
static int reentrant_mode; /* 1: try a second eval (busy), 2: cancel */
static void reenter(int32_t level, const char *message, void *user_data) {
    (void)level;
    (void)message;
    (void)user_data;
    int32_t tok = prompt[0];
    if (reentrant_mode == 1) reentrant_status = rocmforge_context_eval(reentrant_ctx, &tok, 1, 0);
    if (reentrant_mode == 2) reentrant_status = rocmforge_context_cancel(reentrant_ctx);
}

static void test_context_errors(void) {
    rocmforge_context *ctx = new_context(16, 2);
    int32_t pos = 7;
    uint32_t n_ctx = 0, n_batch = 0, n_seq = 0;
    OK(rocmforge_context_sizes(ctx, &n_ctx, &n_batch, &n_seq));
    EXPECT(n_ctx == 16 && n_batch == 16 && n_seq == 2);
    EXPECT_STATUS(rocmforge_context_eval(ctx, prompt, n_prompt, 2), ROCMFORGE_ERR_INVALID_SEQUENCE, "sequence id 2");
    EXPECT_STATUS(rocmforge_context_eval(ctx, prompt, n_prompt, -1), ROCMFORGE_ERR_INVALID_SEQUENCE, "-1");
    EXPECT_STATUS(rocmforge_context_eval(ctx, prompt, 0, 0), ROCMFORGE_ERR_INVALID_ARGUMENT, "n = 0");
    EXPECT_STATUS(rocmforge_context_eval(ctx, NULL, 3, 0), ROCMFORGE_ERR_NULL_POINTER, "tokens is NULL");
    EXPECT_STATUS(rocmforge_context_eval(NULL, prompt, 3, 0), ROCMFORGE_ERR_NULL_POINTER, "context is NULL");
    int32_t bad_tok[2] = {1, 49152};
    EXPECT_STATUS(rocmforge_context_eval(ctx, bad_tok, 2, 0), ROCMFORGE_ERR_INVALID_TOKEN, "49152");
    const float *logits = NULL;
    size_t n_vocab = 0;
    EXPECT_STATUS(rocmforge_context_logits(ctx, -1, &logits, &n_vocab), ROCMFORGE_ERR_NOT_FOUND, "nothing evaluated");

    /* A full context: 20 tokens do not fit in 16 cells; the sequence is left as it was. */
    int32_t many[20];
    for (int i = 0; i < 20; i++) many[i] = prompt[i % n_prompt];
    EXPECT_STATUS(rocmforge_context_eval(ctx, many, 20, 0), ROCMFORGE_ERR_CONTEXT_FULL, "context full");
    OK(rocmforge_kv_seq_pos_max(ctx, 0, &pos));
    EXPECT(pos == -1);

    /* Logits of a batch: only flagged tokens have them. */
    OK(rocmforge_context_eval(ctx, prompt, 3, 0));
    EXPECT_STATUS(rocmforge_context_logits(ctx, 0, &logits, &n_vocab), ROCMFORGE_ERR_NOT_FOUND, "did not ask");
    EXPECT_STATUS(rocmforge_context_logits(ctx, 3, &logits, &n_vocab), ROCMFORGE_ERR_INVALID_ARGUMENT, "outside");
    OK(rocmforge_context_logits(ctx, 2, &logits, &n_vocab));
    EXPECT(n_vocab == 49152 && logits != NULL);

    /* Used from a second call while busy (the log callback runs inside eval): BUSY. Cancel,
     * which does not take the busy flag, stops the running eval. */
    reentrant_ctx = ctx;
    OK(rocmforge_context_set_log_level(ctx, ROCMFORGE_LOG_DEBUG)); /* the eval line */
    OK(rocmforge_context_set_log_callback(ctx, reenter, NULL));
    reentrant_mode = 1;
    OK(rocmforge_context_eval(ctx, &prompt[3], 1, 0));
    EXPECT(reentrant_status == ROCMFORGE_ERR_BUSY);
    EXPECT(strstr(rocmforge_status_string(reentrant_status), "in use") != NULL);
    reentrant_mode = 2;
    EXPECT_STATUS(rocmforge_context_eval(ctx, &prompt[4], 1, 0), ROCMFORGE_ERR_CANCELLED, "cancelled");
    EXPECT(reentrant_status == ROCMFORGE_OK);
    OK(rocmforge_kv_seq_pos_max(ctx, 0, &pos));
    EXPECT(pos == 3); /* the cancelled token was not added */
    reentrant_mode = 0;
    OK(rocmforge_context_eval(ctx, &prompt[4], 1, 0));
    OK(rocmforge_context_set_log_callback(ctx, NULL, NULL));

    /* KV edits. */
    OK(rocmforge_kv_seq_copy(ctx, 0, 1, 0, -1));
    OK(rocmforge_kv_seq_pos_max(ctx, 1, &pos));
    EXPECT(pos == 4);
    OK(rocmforge_kv_seq_remove(ctx, 1, 2, -1));
    OK(rocmforge_kv_seq_pos_max(ctx, 1, &pos));
    EXPECT(pos == 1);
    OK(rocmforge_kv_seq_pos_min(ctx, 1, &pos));
    EXPECT(pos == 0); /* no sliding window: the first position */
    OK(rocmforge_kv_seq_keep(ctx, 1));
    OK(rocmforge_kv_seq_pos_max(ctx, 0, &pos));
    EXPECT(pos == -1);
    OK(rocmforge_kv_seq_pos_min(ctx, 0, &pos));
    EXPECT(pos == -1);
    EXPECT_STATUS(rocmforge_kv_seq_copy(ctx, 0, 5, 0, -1), ROCMFORGE_ERR_INVALID_SEQUENCE, "sequence id 5");
    EXPECT_STATUS(rocmforge_kv_seq_remove(ctx, 9, 0, -1), ROCMFORGE_ERR_INVALID_SEQUENCE, "sequence id 9");
    OK(rocmforge_kv_clear(ctx));
    OK(rocmforge_kv_seq_pos_max(ctx, 1, &pos));
    EXPECT(pos == -1);
    rocmforge_context_free(ctx);
    rocmforge_context_free(NULL);

    rocmforge_context_params *cp = NULL;
    OK(rocmforge_context_params_create(&cp));
    EXPECT_STATUS(rocmforge_context_params_set_n_batch(cp, 0), ROCMFORGE_ERR_INVALID_ARGUMENT, "n_batch");
    rocmforge_context_params_free(cp);
}

static void test_state(void) {
    rocmforge_context *ctx = new_context(64, 2);
    OK(rocmforge_context_eval(ctx, prompt, n_prompt, 0));
    size_t size = 0, n = 0;
    OK(rocmforge_state_size(ctx, -1, &size));
    EXPECT_STATUS(rocmforge_state_save(ctx, -1, NULL, 0, &n), ROCMFORGE_ERR_BUFFER_TOO_SMALL, "elements needed");
    EXPECT(n == size);
    uint8_t *blob = malloc(size);
    OK(rocmforge_state_save(ctx, -1, blob, size, &n));
    const float *logits = NULL;
    size_t n_vocab = 0;
    OK(rocmforge_context_logits(ctx, -1, &logits, &n_vocab));
    float *saved = malloc(n_vocab * sizeof *saved);
    memcpy(saved, logits, n_vocab * sizeof *saved);
    char path[512];
    snprintf(path, sizeof path, "%s/rocmforge_state_test.bin", scratch);
    OK(rocmforge_state_save_file(ctx, -1, path));

    /* Move on, then restore from memory: same cache and same logits as saved. */
    OK(rocmforge_context_eval(ctx, prompt, 2, 0));
    OK(rocmforge_state_load(ctx, -1, blob, size));
    int32_t pos = 0;
    OK(rocmforge_kv_seq_pos_max(ctx, 0, &pos));
    EXPECT(pos == (int32_t)n_prompt - 1);
    OK(rocmforge_context_logits(ctx, -1, &logits, &n_vocab));
    EXPECT(memcmp(logits, saved, n_vocab * sizeof *saved) == 0);

    /* From a file into a fresh context, then the next token's logits match. */
    rocmforge_context *other = new_context(64, 2);
    OK(rocmforge_state_load_file(other, -1, path));
    OK(rocmforge_context_logits(other, -1, &logits, &n_vocab));
    EXPECT(memcmp(logits, saved, n_vocab * sizeof *saved) == 0);
    int32_t next = prompt[1];
    OK(rocmforge_context_eval(ctx, &next, 1, 0));
    OK(rocmforge_context_eval(other, &next, 1, 0));
    const float *a = NULL, *b = NULL;
    OK(rocmforge_context_logits(ctx, -1, &a, &n_vocab));
    OK(rocmforge_context_logits(other, -1, &b, &n_vocab));
    EXPECT(memcmp(a, b, n_vocab * sizeof *a) == 0);

    /* One sequence, restored under another id. */
    OK(rocmforge_state_save(ctx, 0, NULL, 0, &n) == ROCMFORGE_ERR_BUFFER_TOO_SMALL ? ROCMFORGE_OK : ROCMFORGE_ERR_INTERNAL);
    uint8_t *seq_blob = malloc(n);
    OK(rocmforge_state_save(ctx, 0, seq_blob, n, &n));
    OK(rocmforge_state_load(other, 1, seq_blob, n));
    OK(rocmforge_kv_seq_pos_max(other, 1, &pos));
    EXPECT(pos == (int32_t)n_prompt);
    EXPECT_STATUS(rocmforge_state_load(other, 7, seq_blob, n), ROCMFORGE_ERR_INVALID_SEQUENCE, "sequence id 7");
    /* A flipped bit anywhere (header or payload) is caught by the checksum. */
    seq_blob[5] ^= 0xff;
    EXPECT_STATUS(rocmforge_state_load(other, 1, seq_blob, n), ROCMFORGE_ERR_INVALID_ARGUMENT, "checksum");
    seq_blob[5] ^= 0xff;
    seq_blob[n - 9] ^= 0x01;
    EXPECT_STATUS(rocmforge_state_load(other, 1, seq_blob, n), ROCMFORGE_ERR_INVALID_ARGUMENT, "checksum");
    seq_blob[n - 9] ^= 0x01;
    OK(rocmforge_state_load(other, 1, seq_blob, n));
    EXPECT_STATUS(rocmforge_state_load(other, -1, blob, 3), ROCMFORGE_ERR_INVALID_ARGUMENT, "too short");
    /* A state larger than the context: no room. */
    rocmforge_context *tiny = new_context(4, 1);
    EXPECT_STATUS(rocmforge_state_load(tiny, -1, blob, size), ROCMFORGE_ERR_CONTEXT_FULL, "available");
    EXPECT_STATUS(rocmforge_state_load_file(tiny, -1, "/nonexistent/state"), ROCMFORGE_ERR_IO, "/nonexistent/state");
    rocmforge_context_free(tiny);
    remove(path);
    free(seq_blob);
    free(saved);
    free(blob);
    rocmforge_context_free(other);
    rocmforge_context_free(ctx);
}

static void test_sampler_and_batch(void) {
    rocmforge_sampler *s = NULL;
    OK(rocmforge_sampler_create(&s));
    rocmforge_context *ctx = new_context(64, 2);
    int32_t tok = 0;
    OK(rocmforge_context_eval(ctx, prompt, n_prompt, 0));
    EXPECT_STATUS(rocmforge_sampler_sample(s, ctx, -1, &tok), ROCMFORGE_ERR_INVALID_ARGUMENT, "terminal");
    EXPECT_STATUS(rocmforge_sampler_add_temperature(s, NAN), ROCMFORGE_ERR_INVALID_ARGUMENT, "finite");
    EXPECT_STATUS(rocmforge_sampler_add_penalties(s, 64, 0.0f, 0.0f, 0.0f), ROCMFORGE_ERR_INVALID_ARGUMENT, "> 0");
    OK(rocmforge_sampler_add_penalties(s, 64, 1.1f, 0.0f, 0.0f));
    OK(rocmforge_sampler_add_top_k(s, 40));
    OK(rocmforge_sampler_add_top_p(s, 0.9f, 1));
    OK(rocmforge_sampler_add_min_p(s, 0.05f, 1));
    OK(rocmforge_sampler_add_temperature(s, 0.8f));
    OK(rocmforge_sampler_add_dist(s, 1234));
    EXPECT_STATUS(rocmforge_sampler_add_greedy(s), ROCMFORGE_ERR_INVALID_ARGUMENT, "terminal");
    int32_t first[4], again[4];
    for (int i = 0; i < 4; i++) {
        OK(rocmforge_sampler_sample(s, ctx, -1, &first[i]));
        OK(rocmforge_sampler_accept(s, first[i]));
    }
    OK(rocmforge_sampler_reset(s));
    for (int i = 0; i < 4; i++) {
        OK(rocmforge_sampler_sample(s, ctx, -1, &again[i]));
        OK(rocmforge_sampler_accept(s, again[i]));
    }
    EXPECT(memcmp(first, again, sizeof first) == 0);
    EXPECT_STATUS(rocmforge_sampler_accept(s, -3), ROCMFORGE_ERR_INVALID_TOKEN, "-3");
    EXPECT_STATUS(rocmforge_sampler_sample(s, ctx, -1, NULL), ROCMFORGE_ERR_NULL_POINTER, "out is NULL");
    rocmforge_sampler_free(s);

    /* The same prompt in two sequences of one batch gives the same logits as eval alone. */
    rocmforge_batch *batch = NULL;
    EXPECT_STATUS(rocmforge_batch_create(0, &batch), ROCMFORGE_ERR_INVALID_ARGUMENT, "capacity");
    OK(rocmforge_batch_create((uint32_t)(2 * n_prompt), &batch));
    for (int seq = 0; seq < 2; seq++) {
        for (size_t i = 0; i < n_prompt; i++) {
            OK(rocmforge_batch_add(batch, prompt[i], (int32_t)i, seq, i + 1 == n_prompt));
        }
    }
    EXPECT_STATUS(rocmforge_batch_add(batch, 1, 0, 0, false), ROCMFORGE_ERR_INVALID_ARGUMENT, "full");
    EXPECT_STATUS(rocmforge_batch_add(NULL, 1, 0, 0, false), ROCMFORGE_ERR_NULL_POINTER, "batch is NULL");
    const float *alone = NULL, *b0 = NULL, *b1 = NULL;
    size_t n_vocab = 0;
    OK(rocmforge_context_logits(ctx, -1, &alone, &n_vocab));
    float *copy = malloc(n_vocab * sizeof *copy);
    memcpy(copy, alone, n_vocab * sizeof *copy);
    OK(rocmforge_kv_clear(ctx));
    OK(rocmforge_context_decode(ctx, batch));
    OK(rocmforge_context_logits(ctx, (int32_t)n_prompt - 1, &b0, &n_vocab));
    OK(rocmforge_context_logits(ctx, (int32_t)(2 * n_prompt) - 1, &b1, &n_vocab));
    float max_diff = 0.0f;
    for (size_t i = 0; i < n_vocab; i++) {
        float d0 = fabsf(b0[i] - copy[i]), d1 = fabsf(b1[i] - copy[i]);
        if (d0 > max_diff) max_diff = d0;
        if (d1 > max_diff) max_diff = d1;
    }
    /* Batches of another size quantize activations in other groupings: the engine's logits
     * move by up to its parity tolerance (1.0, tests/llamacpp_parity.rs), and the top token
     * stays. */
    size_t best0 = 0, best1 = 0, best = 0;
    for (size_t i = 1; i < n_vocab; i++) {
        if (b0[i] > b0[best0]) best0 = i;
        if (b1[i] > b1[best1]) best1 = i;
        if (copy[i] > copy[best]) best = i;
    }
    EXPECT(max_diff < 1.0f);
    EXPECT(best0 == best && best1 == best);
    OK(rocmforge_batch_clear(batch));
    size_t size = 99;
    OK(rocmforge_batch_size(batch, &size));
    EXPECT(size == 0);
    OK(rocmforge_batch_add(batch, 1, 0, 3, true));
    EXPECT_STATUS(rocmforge_context_decode(ctx, batch), ROCMFORGE_ERR_INVALID_SEQUENCE, "sequence id 3");
    OK(rocmforge_batch_clear(batch));
    OK(rocmforge_batch_add(batch, 60000, 0, 0, true));
    EXPECT_STATUS(rocmforge_context_decode(ctx, batch), ROCMFORGE_ERR_INVALID_TOKEN, "60000");
    OK(rocmforge_batch_clear(batch));
    EXPECT_STATUS(rocmforge_context_decode(ctx, batch), ROCMFORGE_ERR_INVALID_ARGUMENT, "empty batch");
    free(copy);
    rocmforge_batch_free(batch);
    rocmforge_context_free(ctx);
}

/* Log lines by level, as heard by a callback (the global one, or a context's). */
struct heard { int error, warn, info, debug, eval; };
static void count_log(int32_t level, const char *message, void *user_data) {
    struct heard *h = user_data;
    if (level == ROCMFORGE_LOG_ERROR) h->error++;
    if (level == ROCMFORGE_LOG_WARN) h->warn++;
    if (level == ROCMFORGE_LOG_INFO) h->info++;
    if (level == ROCMFORGE_LOG_DEBUG) h->debug++;
    if (strncmp(message, "eval:", 5) == 0) h->eval++;
}

/* Debug is off by default; DEBUG set process-wide or on a context lets the per-eval line
 * through; a context's own level wins over the process-wide one; NONE silences. The global
 * callback is shared with other threads only in test_threads, which runs later. */
static void test_log_levels(void) {
    struct heard g = {0};
    OK(rocmforge_set_log_callback(count_log, &g));
    rocmforge_context *ctx = new_context(32, 1);
    EXPECT(g.info == 1 && g.debug == 0); /* the context's sizes */
    OK(rocmforge_context_eval(ctx, prompt, 2, 0));
    EXPECT(g.debug == 0 && g.eval == 0);

    OK(rocmforge_set_log_level(ROCMFORGE_LOG_DEBUG));
    OK(rocmforge_context_eval(ctx, &prompt[2], 1, 0));
    EXPECT(g.debug == 1 && g.eval == 1);

    /* A context at ERROR hears nothing of its eval, whatever the process-wide level. */
    OK(rocmforge_context_set_log_level(ctx, ROCMFORGE_LOG_ERROR));
    OK(rocmforge_context_eval(ctx, &prompt[3], 1, 0));
    EXPECT(g.debug == 1 && g.eval == 1);

    /* Per context: DEBUG on the context under a process-wide INFO, to its own callback too. */
    OK(rocmforge_set_log_level(ROCMFORGE_LOG_INFO));
    OK(rocmforge_context_set_log_level(ctx, ROCMFORGE_LOG_DEBUG));
    OK(rocmforge_kv_clear(ctx));
    OK(rocmforge_context_eval(ctx, prompt, 1, 0));
    EXPECT(g.eval == 2);
    struct heard local = {0};
    OK(rocmforge_context_set_log_callback(ctx, count_log, &local));
    OK(rocmforge_context_eval(ctx, &prompt[1], 1, 0));
    EXPECT(local.eval == 1 && local.debug == 1 && g.eval == 2);
    OK(rocmforge_context_set_log_level(ctx, ROCMFORGE_LOG_NONE));
    OK(rocmforge_context_eval(ctx, &prompt[2], 1, 0));
    EXPECT(local.eval == 1);
    /* Back to following the process-wide level, including later changes to it. */
    OK(rocmforge_context_set_log_level(ctx, ROCMFORGE_LOG_GLOBAL));
    OK(rocmforge_context_eval(ctx, &prompt[3], 1, 0));
    EXPECT(local.eval == 1);
    OK(rocmforge_set_log_level(ROCMFORGE_LOG_DEBUG));
    OK(rocmforge_context_eval(ctx, &prompt[4], 1, 0));
    EXPECT(local.eval == 2 && g.eval == 2);
    OK(rocmforge_context_set_log_callback(ctx, NULL, NULL));

    /* Levels are validated; GLOBAL is a context's choice only. */
    EXPECT_STATUS(rocmforge_set_log_level(4), ROCMFORGE_ERR_INVALID_ARGUMENT, "unknown log level 4");
    EXPECT_STATUS(rocmforge_set_log_level(ROCMFORGE_LOG_GLOBAL), ROCMFORGE_ERR_INVALID_ARGUMENT, "log level");
    EXPECT_STATUS(rocmforge_context_set_log_level(ctx, -3), ROCMFORGE_ERR_INVALID_ARGUMENT, "log level");
    EXPECT_STATUS(rocmforge_context_set_log_level(NULL, ROCMFORGE_LOG_INFO), ROCMFORGE_ERR_NULL_POINTER, "NULL");
    rocmforge_context_free(ctx);

    /* NONE process-wide: not even a new context's line is delivered. */
    OK(rocmforge_set_log_level(ROCMFORGE_LOG_NONE));
    struct heard before = g;
    ctx = new_context(16, 1);
    OK(rocmforge_context_eval(ctx, prompt, 1, 0));
    EXPECT(memcmp(&before, &g, sizeof g) == 0);
    rocmforge_context_free(ctx);
    OK(rocmforge_set_log_level(ROCMFORGE_LOG_INFO));
    OK(rocmforge_set_log_callback(NULL, NULL));
}

/* Two threads on one context: while thread A is inside eval (its log callback has started and
 * waits), thread B's eval gets BUSY and B's cancel stops A's eval with CANCELLED. */
static pthread_mutex_t cross_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cross_cond = PTHREAD_COND_INITIALIZER;
static int cross_stage; /* 0 idle, 1 A inside eval, 2 B done */
static rocmforge_context *cross_ctx;
static rocmforge_status cross_busy, cross_cancel;

static void wait_inside_eval(int32_t level, const char *message, void *user_data) {
    (void)level;
    (void)message;
    (void)user_data;
    pthread_mutex_lock(&cross_lock);
    if (cross_stage == 0) {
        cross_stage = 1;
        pthread_cond_broadcast(&cross_cond);
        while (cross_stage != 2) pthread_cond_wait(&cross_cond, &cross_lock);
    }
    pthread_mutex_unlock(&cross_lock);
}

static void *thread_b(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cross_lock);
    while (cross_stage != 1) pthread_cond_wait(&cross_cond, &cross_lock);
    pthread_mutex_unlock(&cross_lock);
    cross_busy = rocmforge_context_eval(cross_ctx, prompt, 1, 0);
    cross_cancel = rocmforge_context_cancel(cross_ctx);
    pthread_mutex_lock(&cross_lock);
    cross_stage = 2;
    pthread_cond_broadcast(&cross_cond);
    pthread_mutex_unlock(&cross_lock);
    return NULL;
}

static void test_two_threads_one_context(void) {
    cross_ctx = new_context(64, 1);
    OK(rocmforge_context_set_log_level(cross_ctx, ROCMFORGE_LOG_DEBUG)); /* the eval line */
    OK(rocmforge_context_set_log_callback(cross_ctx, wait_inside_eval, NULL));
    pthread_t b;
    pthread_create(&b, NULL, thread_b, NULL);
    EXPECT_STATUS(rocmforge_context_eval(cross_ctx, prompt, n_prompt, 0), ROCMFORGE_ERR_CANCELLED, "cancelled");
    pthread_join(b, NULL);
    EXPECT(cross_busy == ROCMFORGE_ERR_BUSY);
    EXPECT(cross_cancel == ROCMFORGE_OK);
    int32_t pos = 0;
    OK(rocmforge_kv_seq_pos_max(cross_ctx, 0, &pos));
    EXPECT(pos == -1);
    OK(rocmforge_context_eval(cross_ctx, prompt, n_prompt, 0)); /* usable afterwards */
    rocmforge_context_free(cross_ctx);
}

/* One model, several threads, each with its own context: each must produce the
 * single-threaded greedy continuation. */
#define N_THREADS 3
#define N_GEN 4
static int32_t reference[N_GEN];
struct worker { int32_t out[N_GEN]; };
static void *run_worker(void *arg) {
    struct worker *w = arg;
    rocmforge_context *ctx = new_context(64, 1);
    greedy(ctx, N_GEN, w->out);
    rocmforge_context_free(ctx);
    return NULL;
}

static void test_threads(void) {
    rocmforge_context *ctx = new_context(64, 1);
    greedy(ctx, N_GEN, reference);
    rocmforge_context_free(ctx);
    pthread_t threads[N_THREADS];
    struct worker workers[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) pthread_create(&threads[i], NULL, run_worker, &workers[i]);
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(threads[i], NULL);
        EXPECT(memcmp(workers[i].out, reference, sizeof reference) == 0);
    }
}

/* Out of memory: with the address space capped a little above what the process uses, a
 * context whose KV cache needs gigabytes fails cleanly. Run alone (`--oom`), never under
 * valgrind, since the cap stays for the rest of the process. */
static void test_out_of_memory(void) {
    long pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    EXPECT(statm && fscanf(statm, "%ld", &pages) == 1);
    if (statm) fclose(statm);
    rlim_t cap = (rlim_t)pages * 4096 + ((rlim_t)512 << 20);
    struct rlimit limit = {cap, cap};
    EXPECT(setrlimit(RLIMIT_AS, &limit) == 0);
    rocmforge_context_params *p = NULL;
    rocmforge_context *ctx = NULL;
    OK(rocmforge_context_params_create(&p));
    OK(rocmforge_context_params_set_n_ctx(p, 1u << 20));
    OK(rocmforge_context_params_set_n_threads(p, 1));
    EXPECT_STATUS(rocmforge_context_create(model, p, &ctx), ROCMFORGE_ERR_OUT_OF_MEMORY, "KV cache");
    EXPECT(ctx == NULL);
    rocmforge_context_params_free(p);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [SCRATCH_DIR]\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    if (argc > 2) scratch = argv[2];
    const bool oom_only = argc > 3 && strcmp(argv[3], "--oom") == 0;
    if (!oom_only) {
        test_version_and_status_strings();
        test_loading_errors();
    }
    rocmforge_model_params *mp = NULL;
    OK(rocmforge_model_params_create(&mp));
    OK(rocmforge_model_params_set_backend(mp, ROCMFORGE_BACKEND_CPU));
    OK(rocmforge_model_params_set_use_mmap(mp, true));
    if (rocmforge_model_load(model_path, mp, &model) != ROCMFORGE_OK) {
        fprintf(stderr, "cannot load %s: %s\n", model_path, rocmforge_last_error());
        return 1;
    }
    rocmforge_model_params_free(mp);
    if (oom_only) {
        test_out_of_memory();
        rocmforge_model_free(model);
        printf("%d passed, %d failed\n", passed, failed);
        return failed == 0 ? 0 : 1;
    }
    const char *text = "The capital of France is";
    OK(rocmforge_tokenize(model, text, strlen(text), true, true, prompt, 64, &n_prompt));
    EXPECT(n_prompt == 5);
    test_metadata();
    test_quantize();
    test_devices();
    test_tokenizer_and_chat();
    test_context_errors();
    test_log_levels();
    test_state();
    test_sampler_and_batch();
    test_two_threads_one_context();
    test_threads();
    rocmforge_model_free(model);
    rocmforge_model_free(NULL);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
