/* chat: a multi-turn conversation formatted with the model's own chat template.
 *
 *   chat MODEL.gguf [MAX_REPLY_TOKENS] < lines
 *
 * Each line of standard input is a user turn; the reply streams to standard output. The whole
 * conversation is re-rendered by the template each turn, and only the new part of the prompt
 * (after what the KV cache already holds) is evaluated. */
#include "common.h"

#define MAX_TURNS 64

/* Renders the conversation with the model's template into a malloc'ed string. */
static char *render(const rocmforge_model *model, const char **roles, const char **contents,
                    size_t n, bool add_generation_prompt) {
    size_t len = 0;
    rocmforge_status st = rocmforge_chat_apply(model, NULL, roles, contents, n,
                                               add_generation_prompt, NULL, 0, &len);
    if (st != ROCMFORGE_ERR_BUFFER_TOO_SMALL) CHECK(st);
    char *text = malloc(len + 1);
    if (!text) exit(1);
    CHECK(rocmforge_chat_apply(model, NULL, roles, contents, n, add_generation_prompt, text,
                               len + 1, &len));
    return text;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [MAX_REPLY_TOKENS] < user-lines\n", argv[0]);
        return 2;
    }
    int max_reply = argc > 2 ? atoi(argv[2]) : 64;
    rocmforge_model *model = NULL;
    CHECK(rocmforge_model_load(argv[1], NULL, &model));
    rocmforge_context *ctx = NULL;
    CHECK(rocmforge_context_create(model, NULL, &ctx));
    rocmforge_sampler *sampler = NULL;
    CHECK(rocmforge_sampler_create(&sampler));
    CHECK(rocmforge_sampler_add_greedy(sampler));

    const char *roles[MAX_TURNS];
    char *contents[MAX_TURNS];
    size_t n_msgs = 0, n_cached = 0; /* tokens already in the KV cache */
    char line[4096];
    while (n_msgs + 2 <= MAX_TURNS && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        roles[n_msgs] = "user";
        contents[n_msgs++] = strdup(line);

        char *prompt = render(model, roles, (const char **)contents, n_msgs, true);
        size_t n_tokens = 0;
        int32_t *tokens = tokenize_alloc(model, prompt, false, &n_tokens);
        free(prompt);
        /* The template re-renders earlier turns identically, so their tokens are cached. */
        CHECK(rocmforge_context_eval(ctx, tokens + n_cached, n_tokens - n_cached, 0));
        n_cached = n_tokens;
        free(tokens);

        printf("assistant: ");
        size_t cap = 1024, len = 0;
        char *reply = malloc(cap);
        if (!reply) exit(1);
        for (int i = 0; i < max_reply; i++) {
            int32_t next = 0;
            bool eog = false;
            CHECK(rocmforge_sampler_sample(sampler, ctx, -1, &next));
            CHECK(rocmforge_sampler_accept(sampler, next));
            CHECK(rocmforge_token_is_eog(model, next, &eog));
            if (eog) break;
            char piece[256];
            size_t n = 0;
            CHECK(rocmforge_token_to_piece(model, next, false, piece, sizeof piece, &n));
            fwrite(piece, 1, n, stdout);
            fflush(stdout);
            if (len + n + 1 > cap) {
                cap = 2 * (len + n + 1);
                char *grown = realloc(reply, cap);
                if (!grown) exit(1);
                reply = grown;
            }
            memcpy(reply + len, piece, n);
            len += n;
            CHECK(rocmforge_context_eval(ctx, &next, 1, 0));
        }
        reply[len] = '\0';
        printf("\n");
        roles[n_msgs] = "assistant";
        contents[n_msgs++] = reply;
        /* The cache holds the reply's tokens as generated, but the next render re-tokenizes the
         * whole conversation (with the end-of-turn marker): drop the reply from the cache so the
         * next turn evaluates it in the template's own form. */
        CHECK(rocmforge_kv_seq_remove(ctx, 0, (int32_t)n_cached, -1));
    }

    for (size_t i = 0; i < n_msgs; i++) free(contents[i]);
    rocmforge_sampler_free(sampler);
    rocmforge_context_free(ctx);
    rocmforge_model_free(model);
    return 0;
}
