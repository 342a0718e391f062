/* simple: load a model, tokenize a prompt, and stream a greedy continuation.
 *
 *   simple MODEL.gguf [PROMPT] [N_PREDICT]
 *
 * Prints the prompt followed by the continuation, exactly like `rocmforge_cli -p PROMPT -n N`. */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT] [N_PREDICT]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    int n_predict = argc > 3 ? atoi(argv[3]) : 32;

    rocmforge_model *model = NULL;
    CHECK(rocmforge_model_load(argv[1], NULL, &model));
    rocmforge_context *ctx = NULL;
    CHECK(rocmforge_context_create(model, NULL, &ctx));
    rocmforge_sampler *sampler = NULL;
    CHECK(rocmforge_sampler_create(&sampler));
    CHECK(rocmforge_sampler_add_greedy(sampler));

    size_t n_prompt = 0;
    int32_t *tokens = tokenize_alloc(model, prompt, true, &n_prompt);
    CHECK(rocmforge_context_eval(ctx, tokens, n_prompt, 0));
    free(tokens);

    fputs(prompt, stdout);
    for (int i = 0; i < n_predict; i++) {
        int32_t next = 0;
        bool eog = false;
        CHECK(rocmforge_sampler_sample(sampler, ctx, -1, &next));
        CHECK(rocmforge_sampler_accept(sampler, next));
        CHECK(rocmforge_token_is_eog(model, next, &eog));
        if (eog) break;
        print_piece(model, next);
        CHECK(rocmforge_context_eval(ctx, &next, 1, 0));
    }
    putchar('\n');

    rocmforge_sampler_free(sampler);
    rocmforge_context_free(ctx);
    rocmforge_model_free(model);
    return 0;
}
