// Writes tests/fixtures/dequant/q8_k_activations.{f32,blocks}: 4 blocks of 256 activations and
// their Q8_K blocks as llama.cpp's reference quantizer (quantize_row_q8_K_ref, the one its x86
// build uses) writes them, for src/quant/formats/q8_k.rs to compare against.
// Blocks: seeded noise; noise with one large positive value (d < 0); all zeros; integers and
// half-integers with amax 127 (iscale = -1, so every product is exact and the halves are ties).
//
//   build=.cache/ref/build; src=.cache/ref/llama-cpp-python-0.3.36/vendor/llama.cpp
//   gcc -O2 -std=c11 tools/reference/q8k_fixture.c -o q8k_fixture -L$build/bin -lggml-base
//       -Wl,-rpath,$build/bin      (one line)
//   ./q8k_fixture tests/fixtures/dequant
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// From libggml-base: y is an array of block_q8_K (f32 d, i8 qs[256], i16 bsums[16]).
void quantize_row_q8_K_ref(const float *x, void *y, int64_t k);

enum { QK_K = 256, N_BLOCKS = 4, BLOCK_BYTES = 4 + QK_K + 2 * QK_K / 16 };

static uint64_t state = 0x5EED;
static float noise(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(state >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    static float x[N_BLOCKS * QK_K];
    static uint8_t q[N_BLOCKS * BLOCK_BYTES];
    for (int i = 0; i < QK_K; i++) x[i] = noise() * 3.0f;
    for (int i = 0; i < QK_K; i++) x[QK_K + i] = noise() * 0.01f;
    x[QK_K + 77] = 0.5f;
    memset(x + 2 * QK_K, 0, QK_K * sizeof(float));
    for (int i = 0; i < QK_K; i++) x[3 * QK_K + i] = (float)(i % 64) * 0.5f - 16.0f;
    x[3 * QK_K + 200] = -127.0f;
    quantize_row_q8_K_ref(x, q, N_BLOCKS * QK_K);
    write_file(argv[1], "q8_k_activations.f32", x, sizeof x);
    write_file(argv[1], "q8_k_activations.blocks", q, sizeof q);
    return 0;
}
