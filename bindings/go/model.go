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

// Backend selects where a model computes.
type Backend int32

// The backends of rocmforge_model_params_set_backend.
const (
	// BackendAuto takes the GPU when one is built in and present, else the CPU.
	BackendAuto Backend = C.ROCMFORGE_BACKEND_AUTO
	BackendCPU  Backend = C.ROCMFORGE_BACKEND_CPU
	// BackendGPU fails with ErrBackendUnavailable in a library without a GPU backend.
	BackendGPU Backend = C.ROCMFORGE_BACKEND_GPU
)

// ModelParams are the options of LoadModel; the zero value (or nil) is the library's
// defaults: backend auto, device 0, the file mapped, no progress function.
type ModelParams struct {
	Backend Backend
	Device  int32
	// NoMmap reads the file into memory instead of mapping it.
	NoMmap bool
	// Progress is called on the loading goroutine's thread with the fraction done (0..1);
	// returning false cancels the load (ErrCancelled). A panic in it cancels the load and is
	// re-raised by LoadModel.
	Progress func(fraction float32) bool
}

// Model is a loaded GGUF model. It is immutable: share it between goroutines and contexts.
type Model struct {
	ptr *C.rocmforge_model
}

// LoadModel loads a GGUF model file; params may be nil.
func LoadModel(path string, params *ModelParams) (*Model, error) {
	var p ModelParams
	if params != nil {
		p = *params
	}
	var cp *C.rocmforge_model_params
	if err := call("rocmforge_model_params_create", func() C.int {
		return C.int(C.rocmforge_model_params_create(&cp))
	}); err != nil {
		return nil, err
	}
	defer C.rocmforge_model_params_free(cp)
	if err := call("rocmforge_model_params_set_backend", func() C.int {
		return C.int(C.rocmforge_model_params_set_backend(cp, C.int32_t(p.Backend)))
	}); err != nil {
		return nil, err
	}
	if err := call("rocmforge_model_params_set_device", func() C.int {
		return C.int(C.rocmforge_model_params_set_device(cp, C.int32_t(p.Device)))
	}); err != nil {
		return nil, err
	}
	if err := call("rocmforge_model_params_set_use_mmap", func() C.int {
		return C.int(C.rocmforge_model_params_set_use_mmap(cp, C.bool(!p.NoMmap)))
	}); err != nil {
		return nil, err
	}
	var progress *progressState
	if p.Progress != nil {
		progress = &progressState{fn: p.Progress}
		h := cgo.NewHandle(progress)
		defer h.Delete()
		if err := call("rocmforge_model_params_set_progress_callback", func() C.int {
			return C.rfgo_model_params_set_progress(cp, C.uintptr_t(h))
		}); err != nil {
			return nil, err
		}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var m *C.rocmforge_model
	err := call("rocmforge_model_load", func() C.int {
		return C.int(C.rocmforge_model_load(cpath, cp, &m))
	})
	if progress != nil && progress.panicked != nil {
		C.rocmforge_model_free(m)
		panic(progress.panicked)
	}
	if err != nil {
		return nil, err
	}
	return &Model{ptr: m}, nil
}

// Close frees the model. Contexts created from it keep the weights alive and stay usable.
// It must not overlap any other use of the model.
func (m *Model) Close() {
	C.rocmforge_model_free(m.ptr)
	m.ptr = nil
}

func (m *Model) u64(op string, f func(*C.rocmforge_model, *C.uint64_t) C.int) uint64 {
	var out C.uint64_t
	if call(op, func() C.int { return f(m.ptr, &out) }) != nil {
		return 0
	}
	return uint64(out)
}

// NVocab is the vocabulary size (valid token ids are 0..NVocab-1); 0 for a closed model.
func (m *Model) NVocab() int {
	return int(m.u64("rocmforge_model_n_vocab", func(p *C.rocmforge_model, o *C.uint64_t) C.int {
		return C.int(C.rocmforge_model_n_vocab(p, o))
	}))
}

// NCtxTrain is the context length the model was trained with.
func (m *Model) NCtxTrain() int {
	return int(m.u64("rocmforge_model_n_ctx_train", func(p *C.rocmforge_model, o *C.uint64_t) C.int {
		return C.int(C.rocmforge_model_n_ctx_train(p, o))
	}))
}

// NEmbd is the embedding width.
func (m *Model) NEmbd() int {
	return int(m.u64("rocmforge_model_n_embd", func(p *C.rocmforge_model, o *C.uint64_t) C.int {
		return C.int(C.rocmforge_model_n_embd(p, o))
	}))
}

// NLayer is the number of transformer layers.
func (m *Model) NLayer() int {
	return int(m.u64("rocmforge_model_n_layer", func(p *C.rocmforge_model, o *C.uint64_t) C.int {
		return C.int(C.rocmforge_model_n_layer(p, o))
	}))
}

// SizeBytes is the size of all tensor data.
func (m *Model) SizeBytes() uint64 {
	return m.u64("rocmforge_model_size_bytes", func(p *C.rocmforge_model, o *C.uint64_t) C.int {
		return C.int(C.rocmforge_model_size_bytes(p, o))
	})
}

// NParams is the number of weights.
func (m *Model) NParams() uint64 {
	return m.u64("rocmforge_model_n_params", func(p *C.rocmforge_model, o *C.uint64_t) C.int {
		return C.int(C.rocmforge_model_n_params(p, o))
	})
}

func (m *Model) str(op string, f func(*C.rocmforge_model, **C.char) C.int) (string, error) {
	var out *C.char
	if err := call(op, func() C.int { return f(m.ptr, &out) }); err != nil {
		return "", err
	}
	return C.GoString(out), nil
}

// Architecture is the architecture name ("llama").
func (m *Model) Architecture() (string, error) {
	return m.str("rocmforge_model_architecture", func(p *C.rocmforge_model, o **C.char) C.int {
		return C.int(C.rocmforge_model_architecture(p, o))
	})
}

// Name is general.name, or ErrNotFound.
func (m *Model) Name() (string, error) {
	return m.str("rocmforge_model_name", func(p *C.rocmforge_model, o **C.char) C.int {
		return C.int(C.rocmforge_model_name(p, o))
	})
}

// ChatTemplate is the model's Jinja chat template, or ErrNoChatTemplate.
func (m *Model) ChatTemplate() (string, error) {
	return m.str("rocmforge_model_chat_template", func(p *C.rocmforge_model, o **C.char) C.int {
		return C.int(C.rocmforge_model_chat_template(p, o))
	})
}

// Meta is any GGUF metadata value as text (numbers in decimal, arrays as "[a, b]"), or
// ErrNotFound.
func (m *Model) Meta(key string) (string, error) {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	b, err := twoCall("rocmforge_model_meta", 64, func(buf *C.char, capacity C.size_t, n *C.size_t) C.int {
		return C.int(C.rocmforge_model_meta(m.ptr, ckey, buf, capacity, n))
	})
	return string(b), err
}

// Backend is where the model computes (what BackendAuto resolved to).
func (m *Model) Backend() (Backend, error) {
	var out C.int32_t
	err := call("rocmforge_model_backend", func() C.int { return C.int(C.rocmforge_model_backend(m.ptr, &out)) })
	return Backend(out), err
}

// MemoryEstimate is what a model plus one context will need, in bytes.
type MemoryEstimate struct {
	Weights, KVCache, Compute, Total uint64
}

// EstimateMemory estimates the memory of a model file plus a context with params (nil for
// the defaults), reading only the file's header and metadata.
func EstimateMemory(path string, params *ContextParams) (MemoryEstimate, error) {
	cp, err := params.create()
	if err != nil {
		return MemoryEstimate{}, err
	}
	defer C.rocmforge_context_params_free(cp)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var est C.rocmforge_memory_estimate
	est.struct_size = C.size_t(unsafe.Sizeof(est))
	err = call("rocmforge_estimate_memory", func() C.int {
		return C.int(C.rocmforge_estimate_memory(cpath, cp, &est))
	})
	return MemoryEstimate{
		Weights: uint64(est.weights_bytes),
		KVCache: uint64(est.kv_cache_bytes),
		Compute: uint64(est.compute_bytes),
		Total:   uint64(est.total_bytes),
	}, err
}
