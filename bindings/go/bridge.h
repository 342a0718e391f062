/* C side of the Go binding: trampolines that turn the library's callbacks into calls of the
 * exported Go functions, and wrappers whose parameter types do not depend on how the header
 * spells its enums (cgo treats `enum rocmforge_status` and the `rocmforge_status` typedef as two
 * different Go types; C converts between them and int silently). */
#ifndef ROCMFORGE_GO_BRIDGE_H
#define ROCMFORGE_GO_BRIDGE_H

#include <stdint.h>
#include <rocmforge.h>

/* rocmforge_status_string for a plain int. */
const char *rfgo_status_string(int status);

/* Installs (on != 0) or removes the process-wide log callback; Go keeps the function. */
int rfgo_set_global_log(int on);

/* Sets (handle != 0) or removes a context's log callback; `handle` is a runtime/cgo.Handle. */
int rfgo_context_set_log(rocmforge_context *ctx, uintptr_t handle);

/* Sets the load-progress callback of `params` to the Go function behind `handle`. */
int rfgo_model_params_set_progress(rocmforge_model_params *params, uintptr_t handle);

/* Sets the quantize-progress callback of `params` to the Go function behind `handle`. */
int rfgo_quantize_params_set_progress(rocmforge_quantize_params *params, uintptr_t handle);

#endif /* ROCMFORGE_GO_BRIDGE_H */
