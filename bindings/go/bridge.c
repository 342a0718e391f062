/* The trampolines declared in bridge.h. The exported Go functions (callbacks.go) come from
 * cgo's generated _cgo_export.h; user_data carries a runtime/cgo.Handle (0 for the global log). */
#include "_cgo_export.h"
#include "bridge.h"

static void rfgo_log_trampoline(int32_t level, const char *message, void *user_data) {
    rocmforgeGoLog(level, (char *)message, (uintptr_t)user_data);
}

static bool rfgo_progress_trampoline(float progress, void *user_data) {
    return rocmforgeGoProgress(progress, (uintptr_t)user_data);
}

static bool rfgo_quantize_progress_trampoline(size_t done, size_t total, void *user_data) {
    return rocmforgeGoQuantizeProgress(done, total, (uintptr_t)user_data);
}

const char *rfgo_status_string(int status) {
    return rocmforge_status_string(status);
}

int rfgo_set_global_log(int on) {
    return rocmforge_set_log_callback(on ? rfgo_log_trampoline : NULL, NULL);
}

int rfgo_context_set_log(rocmforge_context *ctx, uintptr_t handle) {
    return rocmforge_context_set_log_callback(ctx, handle ? rfgo_log_trampoline : NULL,
                                              (void *)handle);
}

int rfgo_model_params_set_progress(rocmforge_model_params *params, uintptr_t handle) {
    return rocmforge_model_params_set_progress_callback(params, rfgo_progress_trampoline,
                                                        (void *)handle);
}

int rfgo_quantize_params_set_progress(rocmforge_quantize_params *params, uintptr_t handle) {
    return rocmforge_quantize_params_set_progress(params, rfgo_quantize_progress_trampoline,
                                                  (void *)handle);
}
