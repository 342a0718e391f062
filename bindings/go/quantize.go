package rocmforge

/*
#include <stdlib.h>
#include <rocmforge.h>
#include "bridge.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// QuantizeParams are the options of Quantize; the zero value (or nil) is the library's
// defaults: llama.cpp's Q4_K_M mix, all cores, no requantizing, no progress function.
type QuantizeParams struct {
	// Type is llama-quantize's name of the target, in any case: the mixes Q2_K, Q3_K_S,
	// Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, and
	// F16, BF16, F32; or a llama_ftype number ("15"). "" keeps the default, Q4_K_M.
	Type string
	// Threads is the number of threads (0: all cores); the output does not depend on it.
	Threads int32
	// AllowRequantize accepts an already quantized input (dequantized, then quantized again);
	// without it such an input is ErrInvalidArgument naming the tensor.
	AllowRequantize bool
	// Pure writes every quantizable tensor in the target's main type, without the mix's
	// per-tensor choices (llama-quantize's --pure).
	Pure bool
	// Progress is called on the calling goroutine's thread after each tensor is written, with
	// the tensors written and their total; returning false cancels (ErrCancelled, and no file
	// is left at the output). A panic in it cancels too and is re-raised by Quantize.
	Progress func(done, total int) bool
}

// Quantize writes the GGUF model at input, quantized as params say, to a new file at output
// (replaced if it exists), as llama.cpp's llama_model_quantize does; params may be nil. The
// same input and params give the same bytes. On any error, cancellation included, no file is
// left at output (an existing one is kept).
func Quantize(input, output string, params *QuantizeParams) error {
	var p QuantizeParams
	if params != nil {
		p = *params
	}
	var qp *C.rocmforge_quantize_params
	if err := call("rocmforge_quantize_params_create", func() C.int {
		return C.int(C.rocmforge_quantize_params_create(&qp))
	}); err != nil {
		return err
	}
	defer C.rocmforge_quantize_params_free(qp)
	if p.Type != "" {
		ctype := C.CString(p.Type)
		defer C.free(unsafe.Pointer(ctype))
		if err := call("rocmforge_quantize_params_set_type", func() C.int {
			return C.int(C.rocmforge_quantize_params_set_type(qp, ctype))
		}); err != nil {
			return err
		}
	}
	if err := call("rocmforge_quantize_params_set_threads", func() C.int {
		return C.int(C.rocmforge_quantize_params_set_threads(qp, C.int32_t(p.Threads)))
	}); err != nil {
		return err
	}
	if err := call("rocmforge_quantize_params_set_allow_requantize", func() C.int {
		return C.int(C.rocmforge_quantize_params_set_allow_requantize(qp, C.bool(p.AllowRequantize)))
	}); err != nil {
		return err
	}
	if err := call("rocmforge_quantize_params_set_pure", func() C.int {
		return C.int(C.rocmforge_quantize_params_set_pure(qp, C.bool(p.Pure)))
	}); err != nil {
		return err
	}
	var progress *quantizeProgressState
	if p.Progress != nil {
		progress = &quantizeProgressState{fn: p.Progress}
		h := cgo.NewHandle(progress)
		defer h.Delete()
		if err := call("rocmforge_quantize_params_set_progress", func() C.int {
			return C.rfgo_quantize_params_set_progress(qp, C.uintptr_t(h))
		}); err != nil {
			return err
		}
	}
	cin := C.CString(input)
	defer C.free(unsafe.Pointer(cin))
	cout := C.CString(output)
	defer C.free(unsafe.Pointer(cout))
	err := call("rocmforge_model_quantize", func() C.int {
		return C.int(C.rocmforge_model_quantize(cin, cout, qp))
	})
	if progress != nil && progress.panicked != nil {
		panic(progress.panicked)
	}
	return err
}
