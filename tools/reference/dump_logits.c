// dump_logits: writes llama.cpp reference data (logits, generations, token ids) as JSON,
// for ROCmForge's tests to compare against. Built against the vendored llama.h of
// llama-cpp-python 0.3.36 (llama.cpp 0c1e570, build b11312); see make-fixtures.sh.
//
// Modes:
//   dump_logits logits   MODEL PROMPT_FILE OUT_JSON [options]
//       Tokenizes the prompt (add_special=true, parse_special=true, as llama.cpp's tools do),
//       greedily generates up to --n-gen tokens (stopping after an end-of-generation token),
//       then re-evaluates prompt+continuation in one llama_decode with logits at every
//       position and writes the top-k (id, logit) pairs per position.
//   dump_logits vary     MODEL PROMPT_FILE OUT_JSON [options]
//       Same generation with the given (base) settings, then teacher-forces the same tokens
//       under other llama.cpp settings (flash attention, KV cache type, threads, ubatch) and
//       writes how far their logits move from the base run's.
//   dump_logits tokenize MODEL CORPUS_JSON OUT_JSON
//       CORPUS_JSON is a JSON array of strings. Loads the vocabulary only and writes
//       [{text, ids_plain, ids_special, ids_add_special}] (see tests/fixtures/README.md).
//
// Options: --n-gen N (64) --threads N (2) --fa on|off|auto (off) --kv f32|f16|q8_0 (f32; q8_0
//          needs --fa on)
//          --n-ctx N (1024, also n_batch and n_ubatch) --top K (10)

#include "llama.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef REF_BUILD
#define REF_BUILD "unknown"
#endif

// ---------------------------------------------------------------------------------------------
// Small utilities

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dump_logits: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static char *read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap + 1);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            if (!buf) die("out of memory reading %s", path);
        }
    }
    fclose(f);
    buf[len] = '\0';
    *len_out = len;
    return buf;
}

// Writes a JSON string literal. Bytes >= 0x80 pass through (the input is UTF-8).
static void json_str(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

static void json_ids(FILE *f, const llama_token *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%d" : "%d", ids[i]);
    fputc(']', f);
}

// Appends the UTF-8 encoding of code point cp to out.
static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static uint32_t hex4(const char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else die("bad \\u escape in corpus");
    }
    return v;
}

typedef struct {
    char *s;
    size_t len;
} text_t;

// Parses a JSON array of strings (the corpus format). Strings are kept length-delimited.
static text_t *parse_string_array(const char *js, size_t len, int *n_out) {
    size_t i = 0;
    int n = 0, cap = 64;
    text_t *items = xmalloc(sizeof(text_t) * (size_t)cap);
#define SKIP_WS() while (i < len && (js[i] == ' ' || js[i] == '\n' || js[i] == '\r' || js[i] == '\t')) i++
    SKIP_WS();
    if (i >= len || js[i] != '[') die("corpus: expected '['");
    i++;
    for (;;) {
        SKIP_WS();
        if (i < len && js[i] == ']') break;
        if (i >= len || js[i] != '"') die("corpus: expected string at byte %zu", i);
        i++;
        char *out = xmalloc(len); // decoded never exceeds the encoded size
        size_t o = 0;
        while (i < len && js[i] != '"') {
            if (js[i] != '\\') { out[o++] = js[i++]; continue; }
            if (++i >= len) die("corpus: truncated escape");
            char e = js[i++];
            switch (e) {
            case '"': out[o++] = '"'; break;
            case '\\': out[o++] = '\\'; break;
            case '/': out[o++] = '/'; break;
            case 'b': out[o++] = '\b'; break;
            case 'f': out[o++] = '\f'; break;
            case 'n': out[o++] = '\n'; break;
            case 'r': out[o++] = '\r'; break;
            case 't': out[o++] = '\t'; break;
            case 'u': {
                if (i + 4 > len) die("corpus: truncated \\u");
                uint32_t cp = hex4(js + i);
                i += 4;
                // A high surrogate must be followed by a low one: join them.
                if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= len && js[i] == '\\' && js[i + 1] == 'u') {
                    uint32_t lo = hex4(js + i + 2);
                    if (lo >= 0xDC00 && lo < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        i += 6;
                    }
                }
                o += utf8_put(out + o, cp);
                break;
            }
            default: die("corpus: bad escape \\%c", e);
            }
        }
        if (i >= len) die("corpus: unterminated string");
        i++;
        if (n == cap) {
            cap *= 2;
            items = realloc(items, sizeof(text_t) * (size_t)cap);
            if (!items) die("out of memory");
        }
        items[n].s = out;
        items[n].len = o;
        n++;
        SKIP_WS();
        if (i < len && js[i] == ',') { i++; continue; }
        SKIP_WS();
        if (i < len && js[i] == ']') break;
        die("corpus: expected ',' or ']' at byte %zu", i);
    }
#undef SKIP_WS
    *n_out = n;
    return items;
}

// ---------------------------------------------------------------------------------------------
// llama.cpp helpers

static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

typedef struct {
    const char *name;
    int n_threads;
    enum llama_flash_attn_type fa;
    enum ggml_type kv;
    int n_ctx;
    int n_ubatch;
} settings_t;

static const char *kv_name(enum ggml_type t) {
    return t == GGML_TYPE_F32 ? "f32" : t == GGML_TYPE_F16 ? "f16" : t == GGML_TYPE_Q8_0 ? "q8_0" : "other";
}
static const char *fa_name(enum llama_flash_attn_type t) {
    return t == LLAMA_FLASH_ATTN_TYPE_ENABLED ? "on" : t == LLAMA_FLASH_ATTN_TYPE_DISABLED ? "off" : "auto";
}

static struct llama_context *make_ctx(struct llama_model *model, const settings_t *s) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)s->n_ctx;
    cp.n_batch = (uint32_t)s->n_ctx;
    cp.n_ubatch = (uint32_t)s->n_ubatch;
    cp.n_seq_max = 1;
    cp.n_threads = s->n_threads;
    cp.n_threads_batch = s->n_threads;
    cp.flash_attn_type = s->fa;
    cp.type_k = s->kv;
    cp.type_v = s->kv;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) die("llama_init_from_model failed (settings %s)", s->name);
    return ctx;
}

static llama_token *tokenize(const struct llama_vocab *vocab, const char *text, size_t len, bool add_special,
                             bool parse_special, int *n_out) {
    int cap = (int)len + 8;
    llama_token *ids = xmalloc(sizeof(llama_token) * (size_t)cap);
    int n = llama_tokenize(vocab, text, (int32_t)len, ids, cap, add_special, parse_special);
    if (n < 0) {
        if (n == INT32_MIN) die("tokenization overflow");
        cap = -n;
        ids = realloc(ids, sizeof(llama_token) * (size_t)cap);
        if (!ids) die("out of memory");
        n = llama_tokenize(vocab, text, (int32_t)len, ids, cap, add_special, parse_special);
        if (n < 0) die("llama_tokenize failed");
    }
    *n_out = n;
    return ids;
}

// Greedy argmax; ties go to the lowest id.
static llama_token argmax(const float *logits, int n_vocab) {
    int best = 0;
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

// Generates up to n_gen tokens greedily after the prompt. Returns how many were written to
// gen; *stopped_eog says whether the last one is an end-of-generation token. If step_logits
// is not NULL ([n_gen][n_vocab]), row k receives the logits that chose gen[k]: row 0 from the
// batched prompt evaluation, the others from one-token decodes against the KV cache.
static int generate(struct llama_context *ctx, const struct llama_vocab *vocab, llama_token *prompt, int n_prompt,
                    int n_gen, llama_token *gen, bool *stopped_eog, float *step_logits) {
    int n_vocab = llama_vocab_n_tokens(vocab);
    llama_memory_clear(llama_get_memory(ctx), true);
    if (llama_decode(ctx, llama_batch_get_one(prompt, n_prompt)) != 0) die("llama_decode(prompt) failed");
    *stopped_eog = false;
    int n = 0;
    while (n < n_gen) {
        const float *row = llama_get_logits_ith(ctx, -1);
        if (step_logits) memcpy(step_logits + (size_t)n * (size_t)n_vocab, row, sizeof(float) * (size_t)n_vocab);
        llama_token t = argmax(row, n_vocab);
        gen[n++] = t;
        if (llama_vocab_is_eog(vocab, t)) {
            *stopped_eog = true;
            break;
        }
        if (n == n_gen) break;
        if (llama_decode(ctx, llama_batch_get_one(&gen[n - 1], 1)) != 0) die("llama_decode(token) failed");
    }
    return n;
}

// Evaluates tokens[0..n) in one llama_decode with outputs at every position.
// Returns the logits, row-major [n][n_vocab].
static float *teacher_force(struct llama_context *ctx, const struct llama_vocab *vocab, const llama_token *tokens,
                            int n) {
    int n_vocab = llama_vocab_n_tokens(vocab);
    llama_memory_clear(llama_get_memory(ctx), true);
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = tokens[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b) != 0) die("llama_decode(teacher forcing, %d tokens) failed", n);
    float *all = xmalloc(sizeof(float) * (size_t)n * (size_t)n_vocab);
    for (int i = 0; i < n; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        if (!row) die("no logits at position %d", i);
        memcpy(all + (size_t)i * (size_t)n_vocab, row, sizeof(float) * (size_t)n_vocab);
    }
    llama_batch_free(b);
    return all;
}

// Top-k ids by logit, descending; ties go to the lower id.
static void top_k(const float *logits, int n_vocab, int k, int *ids) {
    int have = 0;
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (have == k && v <= logits[ids[k - 1]]) continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && logits[ids[j - 1]] < v) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
}

// ---------------------------------------------------------------------------------------------
// Options

typedef struct {
    int n_gen;
    int top;
    settings_t s;
} opts_t;

static void parse_opts(int argc, char **argv, int first, opts_t *o) {
    o->n_gen = 64;
    o->top = 10;
    o->s = (settings_t){"base", 2, LLAMA_FLASH_ATTN_TYPE_DISABLED, GGML_TYPE_F32, 1024, 1024};
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) die("option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--n-gen")) o->n_gen = atoi(v);
        else if (!strcmp(a, "--top")) o->top = atoi(v);
        else if (!strcmp(a, "--threads")) o->s.n_threads = atoi(v);
        else if (!strcmp(a, "--n-ctx")) o->s.n_ctx = o->s.n_ubatch = atoi(v);
        else if (!strcmp(a, "--fa")) {
            if (!strcmp(v, "on")) o->s.fa = LLAMA_FLASH_ATTN_TYPE_ENABLED;
            else if (!strcmp(v, "off")) o->s.fa = LLAMA_FLASH_ATTN_TYPE_DISABLED;
            else if (!strcmp(v, "auto")) o->s.fa = LLAMA_FLASH_ATTN_TYPE_AUTO;
            else die("--fa on|off|auto");
        } else if (!strcmp(a, "--kv")) {
            if (!strcmp(v, "f32")) o->s.kv = GGML_TYPE_F32;
            else if (!strcmp(v, "f16")) o->s.kv = GGML_TYPE_F16;
            // llama.cpp quantizes the V cache only with flash attention on.
            else if (!strcmp(v, "q8_0")) o->s.kv = GGML_TYPE_Q8_0;
            else die("--kv f32|f16|q8_0");
        } else die("unknown option %s", a);
    }
    if (o->n_gen < 0 || o->top < 1 || o->s.n_threads < 1 || o->s.n_ctx < 16) die("bad option value");
}

static void json_settings(FILE *f, const settings_t *s) {
    fprintf(f,
            "{\"n_threads\":%d,\"flash_attn\":\"%s\",\"type_k\":\"%s\",\"type_v\":\"%s\",\"n_ctx\":%d,"
            "\"n_batch\":%d,\"n_ubatch\":%d,\"use_extra_bufts\":false}",
            s->n_threads, fa_name(s->fa), kv_name(s->kv), kv_name(s->kv), s->n_ctx, s->n_ctx, s->n_ubatch);
}

static struct llama_model *load_model(const char *path, bool vocab_only) {
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = vocab_only;
    mp.n_gpu_layers = 0;
    // No extra (repacked / AMX) weight buffers: ggml's AMX path crashes on our AMX-capable
    // dev VM, and the plain CPU path (vec_dot of the weight type against Q8 activations) is
    // the canonical one.
    mp.use_extra_bufts = false;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m) die("cannot load model %s", path);
    return m;
}

static const char *basename_of(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

// ---------------------------------------------------------------------------------------------
// Modes

// Shared by `logits` and `vary`: prompt tokens + greedy continuation.
typedef struct {
    char *prompt;
    size_t prompt_len;
    llama_token *tokens; // prompt then generated
    int n_prompt, n_gen;
    bool stopped_eog;
    float *step_logits; // [n_gen][n_vocab] from free-running generation (NULL unless asked)
} run_t;

static run_t prepare_run(struct llama_context *ctx, const struct llama_vocab *vocab, const char *prompt_path,
                         const opts_t *o, bool keep_step_logits) {
    run_t r;
    r.prompt = read_file(prompt_path, &r.prompt_len);
    llama_token *p = tokenize(vocab, r.prompt, r.prompt_len, true, true, &r.n_prompt);
    if (r.n_prompt == 0) die("prompt tokenizes to nothing");
    if (r.n_prompt + o->n_gen > o->s.n_ctx) die("prompt (%d) + n_gen (%d) exceeds n_ctx", r.n_prompt, o->n_gen);
    r.tokens = xmalloc(sizeof(llama_token) * (size_t)(r.n_prompt + o->n_gen));
    memcpy(r.tokens, p, sizeof(llama_token) * (size_t)r.n_prompt);
    free(p);
    r.step_logits = keep_step_logits
                        ? xmalloc(sizeof(float) * (size_t)(o->n_gen ? o->n_gen : 1) *
                                  (size_t)llama_vocab_n_tokens(vocab))
                        : NULL;
    r.n_gen = generate(ctx, vocab, r.tokens, r.n_prompt, o->n_gen, r.tokens + r.n_prompt, &r.stopped_eog,
                       r.step_logits);
    return r;
}

static int mode_logits(const char *model_path, const char *prompt_path, const char *out_path, const opts_t *o) {
    struct llama_model *model = load_model(model_path, false);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    struct llama_context *ctx = make_ctx(model, &o->s);
    run_t r = prepare_run(ctx, vocab, prompt_path, o, false);
    int n = r.n_prompt + r.n_gen;
    float *all = teacher_force(ctx, vocab, r.tokens, n);

    // Does the one-pass evaluation reproduce the free-running greedy choices?
    int argmax_mismatch = 0;
    for (int i = r.n_prompt - 1; i < n - 1; i++)
        if (argmax(all + (size_t)i * (size_t)n_vocab, n_vocab) != r.tokens[i + 1]) argmax_mismatch++;

    FILE *f = fopen(out_path, "w");
    if (!f) die("cannot write %s", out_path);
    fprintf(f, "{\"model\":");
    json_str(f, basename_of(model_path), strlen(basename_of(model_path)));
    fprintf(f, ",\n\"llama_cpp\":\"%s\",\n\"settings\":", REF_BUILD);
    json_settings(f, &o->s);
    fprintf(f, ",\n\"tokenize\":{\"add_special\":true,\"parse_special\":true},\n\"n_vocab\":%d,\n\"prompt\":", n_vocab);
    json_str(f, r.prompt, r.prompt_len);
    fprintf(f, ",\n\"prompt_tokens\":");
    json_ids(f, r.tokens, r.n_prompt);
    fprintf(f, ",\n\"generated\":");
    json_ids(f, r.tokens + r.n_prompt, r.n_gen);
    fprintf(f, ",\n\"n_gen_requested\":%d,\"stopped_at_eog\":%s,\"teacher_forced_argmax_mismatches\":%d,", o->n_gen,
            r.stopped_eog ? "true" : "false", argmax_mismatch);
    fprintf(f, "\n\"positions\":[\n");
    int *ids = xmalloc(sizeof(int) * (size_t)o->top);
    for (int i = 0; i < n; i++) {
        const float *row = all + (size_t)i * (size_t)n_vocab;
        top_k(row, n_vocab, o->top, ids);
        fprintf(f, "{\"pos\":%d,\"token\":%d,\"top\":[", i, r.tokens[i]);
        for (int k = 0; k < o->top; k++) fprintf(f, k ? ",[%d,%.4f]" : "[%d,%.4f]", ids[k], row[ids[k]]);
        fprintf(f, "]}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "]}\n");
    fclose(f);
    fprintf(stderr, "%s: %d prompt + %d generated tokens, %d argmax mismatches\n", out_path, r.n_prompt, r.n_gen,
            argmax_mismatch);
    free(ids);
    free(all);
    free(r.tokens);
    free(r.prompt);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

static const double MARGINS[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1.0};
#define N_MARGINS (sizeof(MARGINS) / sizeof(MARGINS[0]))

// Writes the distance between two logit sets over n rows ([n][n_vocab] each) as JSON fields:
// top-5 = the base row's five best ids; a flip = the other run's argmax differs from base's.
static void json_compare(FILE *f, const float *base, const float *other, int n, int n_vocab) {
    double max_top5 = 0, sum_top5 = 0, max_all = 0, max_margin_at_flip = -1;
    int flips = 0, flips_over[N_MARGINS] = {0};
    int ids[5];
    for (int i = 0; i < n; i++) {
        const float *b = base + (size_t)i * (size_t)n_vocab, *x = other + (size_t)i * (size_t)n_vocab;
        top_k(b, n_vocab, 5, ids);
        double pos_top5 = 0;
        for (int k = 0; k < 5; k++) pos_top5 = fmax(pos_top5, fabs((double)x[ids[k]] - b[ids[k]]));
        max_top5 = fmax(max_top5, pos_top5);
        sum_top5 += pos_top5;
        for (int t = 0; t < n_vocab; t++) max_all = fmax(max_all, fabs((double)x[t] - b[t]));
        if (argmax(x, n_vocab) != ids[0]) {
            double margin = (double)b[ids[0]] - b[ids[1]];
            flips++;
            max_margin_at_flip = fmax(max_margin_at_flip, margin);
            for (size_t m = 0; m < N_MARGINS; m++)
                if (margin > MARGINS[m]) flips_over[m]++;
        }
    }
    fprintf(f,
            "\"n_positions\":%d,\"max_abs_dlogit_top5\":%.6f,\"mean_abs_dlogit_top5\":%.6f,"
            "\"max_abs_dlogit_all\":%.6f,\"top1_flips\":%d,\"max_base_margin_at_flip\":%.6f,"
            "\"top1_flips_with_margin_over\":{",
            n, max_top5, n ? sum_top5 / n : 0.0, max_all, flips, max_margin_at_flip);
    for (size_t m = 0; m < N_MARGINS; m++) fprintf(f, "%s\"%g\":%d", m ? "," : "", MARGINS[m], flips_over[m]);
    fprintf(f, "}");
}

static int mode_vary(const char *model_path, const char *prompt_path, const char *out_path, const opts_t *o) {
    struct llama_model *model = load_model(model_path, false);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    struct llama_context *ctx = make_ctx(model, &o->s);
    run_t r = prepare_run(ctx, vocab, prompt_path, o, true);
    int n = r.n_prompt + r.n_gen;
    float *base = teacher_force(ctx, vocab, r.tokens, n);
    llama_free(ctx);

    settings_t v[7];
    for (int i = 0; i < 7; i++) v[i] = o->s;
    v[0].name = "fa_on";
    v[0].fa = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    v[1].name = "kv_f16";
    v[1].kv = GGML_TYPE_F16;
    v[2].name = "fa_on_kv_f16";
    v[2].fa = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    v[2].kv = GGML_TYPE_F16;
    v[3].name = "llama_cpp_default";
    v[3].fa = LLAMA_FLASH_ATTN_TYPE_AUTO;
    v[3].kv = GGML_TYPE_F16;
    v[3].n_ubatch = 512;
    v[4].name = "threads_1";
    v[4].n_threads = 1;
    v[5].name = "ubatch_32";
    v[5].n_ubatch = 32;
    v[6].name = "same_settings_rerun";
    int n_var = 7;

    FILE *f = fopen(out_path, "w");
    if (!f) die("cannot write %s", out_path);
    fprintf(f, "{\"prompt_file\":");
    json_str(f, basename_of(prompt_path), strlen(basename_of(prompt_path)));
    fprintf(f, ",\"llama_cpp\":\"%s\",\"n_positions\":%d,\"base\":", REF_BUILD, n);
    json_settings(f, &o->s);
    fprintf(f, ",\"variants\":[\n");
    // The base settings' own free-running generation: logits from one-token decodes against
    // the KV cache, versus the one-pass evaluation, at the positions that chose generated tokens.
    fprintf(f, "{\"name\":\"incremental_decode\",\"settings\":");
    json_settings(f, &o->s);
    fprintf(f, ",");
    json_compare(f, base + (size_t)(r.n_prompt - 1) * (size_t)n_vocab, r.step_logits, r.n_gen, n_vocab);
    fprintf(f, "},\n");
    for (int vi = 0; vi < n_var; vi++) {
        struct llama_context *c = make_ctx(model, &v[vi]);
        float *var = teacher_force(c, vocab, r.tokens, n);
        llama_free(c);
        fprintf(f, "{\"name\":\"%s\",\"settings\":", v[vi].name);
        json_settings(f, &v[vi]);
        fprintf(f, ",");
        json_compare(f, base, var, n, n_vocab);
        fprintf(f, "}%s\n", vi + 1 < n_var ? "," : "");
        free(var);
    }
    fprintf(f, "]}\n");
    fclose(f);
    free(base);
    free(r.step_logits);
    free(r.tokens);
    free(r.prompt);
    llama_model_free(model);
    return 0;
}

static int mode_tokenize(const char *model_path, const char *corpus_path, const char *out_path) {
    struct llama_model *model = load_model(model_path, true);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    size_t len;
    char *js = read_file(corpus_path, &len);
    int n;
    text_t *items = parse_string_array(js, len, &n);
    FILE *f = fopen(out_path, "w");
    if (!f) die("cannot write %s", out_path);
    fprintf(f, "[\n");
    for (int i = 0; i < n; i++) {
        // (add_special, parse_special) per field: plain (false,false), special (false,true),
        // add_special (true,true) = what llama.cpp's tools do with a prompt.
        static const bool modes[3][2] = {{false, false}, {false, true}, {true, true}};
        static const char *names[3] = {"ids_plain", "ids_special", "ids_add_special"};
        fprintf(f, "{\"text\":");
        json_str(f, items[i].s, items[i].len);
        for (int m = 0; m < 3; m++) {
            int k;
            llama_token *ids = tokenize(vocab, items[i].s, items[i].len, modes[m][0], modes[m][1], &k);
            fprintf(f, ",\"%s\":", names[m]);
            json_ids(f, ids, k);
            free(ids);
        }
        fprintf(f, "}%s\n", i + 1 < n ? "," : "");
        free(items[i].s);
    }
    fprintf(f, "]\n");
    fclose(f);
    free(items);
    free(js);
    llama_model_free(model);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s logits|vary MODEL PROMPT_FILE OUT_JSON [options]\n"
                        "       %s tokenize MODEL CORPUS_JSON OUT_JSON\n",
                argv[0], argv[0]);
        return 2;
    }
    llama_log_set(log_cb, NULL);
    llama_backend_init();
    int rc;
    if (!strcmp(argv[1], "tokenize")) {
        rc = mode_tokenize(argv[2], argv[3], argv[4]);
    } else {
        opts_t o;
        parse_opts(argc, argv, 5, &o);
        if (!strcmp(argv[1], "logits")) rc = mode_logits(argv[2], argv[3], argv[4], &o);
        else if (!strcmp(argv[1], "vary")) rc = mode_vary(argv[2], argv[3], argv[4], &o);
        else die("unknown mode %s", argv[1]);
    }
    llama_backend_free();
    return rc;
}
