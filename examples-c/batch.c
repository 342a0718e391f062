/* batch: several independent prompts decoded together in one context, one sequence each.
 *
 *   batch MODEL.gguf [N_PREDICT] PROMPT...
 *
 * Every step puts the next token of every unfinished sequence into one batch, so the model's
 * weights are read once per step for all of them. Prints each prompt with its greedy
 * continuation (identical to running it alone). */
#include "common.h"

#define MAX_SEQS 16

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf N_PREDICT PROMPT...\n", argv[0]);
        return 2;
    }
    int n_predict = atoi(argv[2]);
    int n_seq = argc - 3;
    if (n_seq > MAX_SEQS) n_seq = MAX_SEQS;

    rocmforge_model *model = NULL;
    CHECK(rocmforge_model_load(argv[1], NULL, &model));
    rocmforge_context_params *cparams = NULL;
    CHECK(rocmforge_context_params_create(&cparams));
    CHECK(rocmforge_context_params_set_n_ctx(cparams, 2048));
    CHECK(rocmforge_context_params_set_n_seq_max(cparams, (uint32_t)n_seq));
    rocmforge_context *ctx = NULL;
    CHECK(rocmforge_context_create(model, cparams, &ctx));
    rocmforge_context_params_free(cparams);
    rocmforge_batch *batch = NULL;
    CHECK(rocmforge_batch_create(512, &batch));

    rocmforge_sampler *samplers[MAX_SEQS];
    char *outputs[MAX_SEQS];
    size_t out_len[MAX_SEQS];
    int32_t pos[MAX_SEQS];      /* next position of each sequence */
    int32_t row[MAX_SEQS];      /* batch index holding each sequence's logits, -1 when done */

    /* All prompts in the first batch, logits only for each prompt's last token. */
    for (int s = 0; s < n_seq; s++) {
        CHECK(rocmforge_sampler_create(&samplers[s]));
        CHECK(rocmforge_sampler_add_greedy(samplers[s]));
        size_t n = 0;
        int32_t *tokens = tokenize_alloc(model, argv[3 + s], true, &n);
        for (size_t i = 0; i < n; i++) {
            CHECK(rocmforge_batch_add(batch, tokens[i], (int32_t)i, s, i + 1 == n));
        }
        free(tokens);
        size_t size = 0;
        CHECK(rocmforge_batch_size(batch, &size));
        row[s] = (int32_t)size - 1;
        pos[s] = (int32_t)n;
        outputs[s] = calloc((size_t)n_predict * 256 + 1, 1);
        if (!outputs[s]) exit(1);
        out_len[s] = 0;
    }
    CHECK(rocmforge_context_decode(ctx, batch));

    for (int step = 0; step < n_predict; step++) {
        CHECK(rocmforge_batch_clear(batch));
        int32_t n_in_batch = 0;
        for (int s = 0; s < n_seq; s++) {
            if (row[s] < 0) continue;
            int32_t next = 0;
            bool eog = false;
            CHECK(rocmforge_sampler_sample(samplers[s], ctx, row[s], &next));
            CHECK(rocmforge_sampler_accept(samplers[s], next));
            CHECK(rocmforge_token_is_eog(model, next, &eog));
            if (eog) {
                row[s] = -1;
                continue;
            }
            size_t n = 0;
            CHECK(rocmforge_token_to_piece(model, next, false, outputs[s] + out_len[s], 256, &n));
            out_len[s] += n;
            CHECK(rocmforge_batch_add(batch, next, pos[s]++, s, true));
            row[s] = n_in_batch++;
        }
        if (n_in_batch == 0 || step + 1 == n_predict) break;
        CHECK(rocmforge_context_decode(ctx, batch));
    }

    for (int s = 0; s < n_seq; s++) {
        printf("[%d] %s%s\n", s, argv[3 + s], outputs[s]);
        free(outputs[s]);
        rocmforge_sampler_free(samplers[s]);
    }
    rocmforge_batch_free(batch);
    rocmforge_context_free(ctx);
    rocmforge_model_free(model);
    return 0;
}
