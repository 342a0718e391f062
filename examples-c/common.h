/* Shared helpers for the examples: error reporting and a growing-buffer wrapper over the
 * library's two-call size protocol. */
#ifndef ROCMFORGE_EXAMPLES_COMMON_H
#define ROCMFORGE_EXAMPLES_COMMON_H

#include <rocmforge.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the failed call, its status and the library's detailed message, then exits. */
#define CHECK(call)                                                                      \
    do {                                                                                 \
        rocmforge_status check_status_ = (call);                                         \
        if (check_status_ != ROCMFORGE_OK) {                                             \
            fprintf(stderr, "%s:%d: %s: %s (%d): %s\n", __FILE__, __LINE__, #call,       \
                    rocmforge_status_string((int)check_status_), (int)check_status_,     \
                    rocmforge_last_error());                                             \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

/* Tokenizes `text` into a malloc'ed array (the caller frees it); *n receives the count. */
static inline int32_t *tokenize_alloc(const rocmforge_model *model, const char *text, bool add_special,
                               size_t *n) {
    size_t needed = 0;
    rocmforge_status st = rocmforge_tokenize(model, text, strlen(text), add_special, true, NULL, 0, &needed);
    if (st != ROCMFORGE_OK && st != ROCMFORGE_ERR_BUFFER_TOO_SMALL) CHECK(st);
    int32_t *tokens = malloc((needed ? needed : 1) * sizeof *tokens);
    if (!tokens) exit(1);
    CHECK(rocmforge_tokenize(model, text, strlen(text), add_special, true, tokens, needed, n));
    return tokens;
}

/* Writes the bytes of one token to stdout (pieces may split a UTF-8 character; the terminal
 * sees whole characters once the following piece arrives). */
static inline void print_piece(const rocmforge_model *model, int32_t token) {
    char piece[256];
    size_t len = 0;
    CHECK(rocmforge_token_to_piece(model, token, false, piece, sizeof piece, &len));
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
}

#endif /* ROCMFORGE_EXAMPLES_COMMON_H */
