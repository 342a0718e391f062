package rocmforge

/*
#include <stdlib.h>
#include <rocmforge.h>
#include "bridge.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"unsafe"
)

// NCtxModel as ContextParams.NCtx asks for the model's training context length.
const NCtxModel = ^uint32(0)

// ContextParams are the options of NewContext; zero fields (and a nil *ContextParams) keep
// the library's defaults: 4096 cells, batch 512, 1 sequence, all cores.
type ContextParams struct {
	NCtx     uint32 // KV cache cells shared by all sequences; NCtxModel: the training length
	NBatch   uint32 // most tokens one decode may carry
	NSeqMax  uint32 // independent sequences
	NThreads uint32 // compute threads
}

// create makes the C parameters object (the caller frees it); nil p gives the defaults.
func (p *ContextParams) create() (*C.rocmforge_context_params, error) {
	var cp *C.rocmforge_context_params
	if err := call("rocmforge_context_params_create", func() C.int {
		return C.int(C.rocmforge_context_params_create(&cp))
	}); err != nil {
		return nil, err
	}
	if p == nil {
		return cp, nil
	}
	nCtx := p.NCtx
	if nCtx == NCtxModel {
		nCtx = 0 // the library's "training length"
	}
	setters := []struct {
		op    string
		value uint32
		set   func(*C.rocmforge_context_params, C.uint32_t) C.int
	}{
		{"rocmforge_context_params_set_n_ctx", nCtx, func(cp *C.rocmforge_context_params, v C.uint32_t) C.int {
			return C.int(C.rocmforge_context_params_set_n_ctx(cp, v))
		}},
		{"rocmforge_context_params_set_n_batch", p.NBatch, func(cp *C.rocmforge_context_params, v C.uint32_t) C.int {
			return C.int(C.rocmforge_context_params_set_n_batch(cp, v))
		}},
		{"rocmforge_context_params_set_n_seq_max", p.NSeqMax, func(cp *C.rocmforge_context_params, v C.uint32_t) C.int {
			return C.int(C.rocmforge_context_params_set_n_seq_max(cp, v))
		}},
		{"rocmforge_context_params_set_n_threads", p.NThreads, func(cp *C.rocmforge_context_params, v C.uint32_t) C.int {
			return C.int(C.rocmforge_context_params_set_n_threads(cp, v))
		}},
	}
	for i, s := range setters {
		if s.value == 0 && !(i == 0 && p.NCtx == NCtxModel) {
			continue
		}
		if err := call(s.op, func() C.int { return s.set(cp, C.uint32_t(s.value)) }); err != nil {
			C.rocmforge_context_params_free(cp)
			return nil, err
		}
	}
	return cp, nil
}

// Context holds a KV cache over a model and evaluates tokens. It is used by one goroutine at
// a time (a concurrent call gets ErrBusy); cancellation comes through the context.Context
// given to Eval and Decode.
type Context struct {
	ptr *C.rocmforge_context
	log *contextLog
	// logHandle is the cgo.Handle of log while the C context holds it.
	logHandle cgo.Handle
	// staleCancel: a cancel request was sent for an evaluation that finished before seeing
	// it, so it is pending in the library and would cancel the next evaluation at once.
	staleCancel bool
}

// NewContext creates a context for model; params may be nil. The context keeps its own
// reference to the weights: the model may be closed first.
func NewContext(model *Model, params *ContextParams) (*Context, error) {
	cp, err := params.create()
	if err != nil {
		return nil, err
	}
	defer C.rocmforge_context_params_free(cp)
	var ctx *C.rocmforge_context
	if err := call("rocmforge_context_create", func() C.int {
		return C.int(C.rocmforge_context_create(model.ptr, cp, &ctx))
	}); err != nil {
		return nil, err
	}
	return &Context{ptr: ctx}, nil
}

// Close frees the context. It must not overlap any other use of the context.
func (c *Context) Close() {
	C.rocmforge_context_free(c.ptr)
	c.ptr = nil
	if c.logHandle != 0 {
		c.logHandle.Delete()
		c.logHandle = 0
	}
}

// call is the package's call plus the re-raise of a panic from this context's log function.
func (c *Context) call(op string, f func() C.int) error {
	err := call(op, f)
	if c.log != nil && c.log.panicked != nil {
		r := c.log.panicked
		c.log.panicked = nil
		panic(r)
	}
	return err
}

// Sizes are the context's effective sizes: KV cells, batch and sequences.
func (c *Context) Sizes() (nCtx, nBatch, nSeqMax uint32, err error) {
	var a, b, s C.uint32_t
	err = c.call("rocmforge_context_sizes", func() C.int { return C.int(C.rocmforge_context_sizes(c.ptr, &a, &b, &s)) })
	return uint32(a), uint32(b), uint32(s), err
}

// Eval appends tokens to sequence seq and computes the logits of the last one (read them
// with Logits(-1) or a Sampler). When ctx is done before the evaluation finishes, the
// library is asked to stop (rocmforge_context_cancel): Eval then returns an *Error with
// ErrCancelled that also matches ctx.Err(), and the KV cache is as it was.
func (c *Context) Eval(ctx context.Context, tokens []int32, seq int32) error {
	return c.cancellable(ctx, "rocmforge_context_eval", func() C.int {
		return C.int(C.rocmforge_context_eval(c.ptr, cTokens(tokens), C.size_t(len(tokens)), C.int32_t(seq)))
	})
}

// Decode evaluates a batch (tokens of any sequences with their own positions); cancellation
// as Eval.
func (c *Context) Decode(ctx context.Context, batch *Batch) error {
	return c.cancellable(ctx, "rocmforge_context_decode", func() C.int {
		return C.int(C.rocmforge_context_decode(c.ptr, batch.ptr))
	})
}

// cancellable runs an evaluation while a goroutine watches ctx and turns its end into a
// cancel request.
//
// A request that reaches the library after the evaluation's last check stays pending there
// and would cancel the next evaluation at once; the Context remembers it (staleCancel) and
// lets the next evaluation consume it first (cancelled at once, the cache untouched), then
// runs that evaluation for real.
func (c *Context) cancellable(ctx context.Context, op string, f func() C.int) error {
	if err := ctx.Err(); err != nil {
		return &Error{Op: op, Status: ErrCancelled, Message: "the context.Context was done before the call", cause: err}
	}
	if c.staleCancel {
		err := c.call(op, f)
		if statusOf(err) != ErrCancelled {
			if err == nil {
				c.staleCancel = false
			}
			return err
		}
		c.staleCancel = false
	}
	if ctx.Done() == nil {
		return c.call(op, f)
	}
	fired := false
	stop, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-ctx.Done():
			c.requestCancel()
			fired = true
		case <-stop:
		}
	}()
	err := func() error {
		defer func() { close(stop); <-exited }() // also when the log function's panic is re-raised
		return c.call(op, f)
	}()
	if fired {
		if e, ok := err.(*Error); ok && e.Status == ErrCancelled {
			e.cause = ctx.Err()
		} else {
			c.staleCancel = true
		}
	}
	return err
}

// statusOf is the status of an error from call (OK for nil).
func statusOf(err error) Status {
	if e, ok := err.(*Error); ok {
		return e.Status
	}
	if err != nil {
		return ErrInternal
	}
	return OK
}

// requestCancel asks the running (or next) evaluation to stop; any goroutine.
func (c *Context) requestCancel() {
	C.rocmforge_context_cancel(c.ptr)
}

// Logits copies the logits (NVocab floats) of token index of the last batch; -1 is the last
// token that asked for logits.
func (c *Context) Logits(index int32) ([]float32, error) {
	var ptr *C.float
	var n C.size_t
	var out []float32
	err := c.call("rocmforge_context_logits", func() C.int {
		st := C.int(C.rocmforge_context_logits(c.ptr, C.int32_t(index), &ptr, &n))
		if st == 0 {
			// Copied on this side of the call: the pointer lives until the next evaluation.
			out = append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(ptr)), int(n))...)
		}
		return st
	})
	return out, err
}

// SetLogger gives this context its own log function (nil removes it), which then receives
// the context's messages instead of the process-wide logger. It runs on the goroutine that
// calls into the context, during that call; a panic in it is re-raised there once the
// library has returned.
func (c *Context) SetLogger(fn LogFunc) error {
	var log *contextLog
	var h cgo.Handle
	if fn != nil {
		log = &contextLog{fn: fn}
		h = cgo.NewHandle(log)
	}
	err := c.call("rocmforge_context_set_log_callback", func() C.int {
		return C.rfgo_context_set_log(c.ptr, C.uintptr_t(h))
	})
	if err != nil {
		if h != 0 {
			h.Delete()
		}
		return err
	}
	if c.logHandle != 0 {
		c.logHandle.Delete()
	}
	c.log, c.logHandle = log, h
	return nil
}

// SetLogLevel sets this context's own log level (LogNone to LogDebug), or with LogGlobal
// makes it follow the process-wide level again (the default). LogDebug adds a line per Eval
// and Decode.
func (c *Context) SetLogLevel(level LogLevel) error {
	return c.call("rocmforge_context_set_log_level", func() C.int {
		return C.int(C.rocmforge_context_set_log_level(c.ptr, C.int32_t(level)))
	})
}

// KVClear empties the KV cache of every sequence.
func (c *Context) KVClear() error {
	return c.call("rocmforge_kv_clear", func() C.int { return C.int(C.rocmforge_kv_clear(c.ptr)) })
}

// KVSeqRemove removes positions [p0, p1) of sequence seq (seq -1: all sequences; a negative
// bound: from the start / to the end).
func (c *Context) KVSeqRemove(seq, p0, p1 int32) error {
	return c.call("rocmforge_kv_seq_remove", func() C.int {
		return C.int(C.rocmforge_kv_seq_remove(c.ptr, C.int32_t(seq), C.int32_t(p0), C.int32_t(p1)))
	})
}

// KVSeqCopy makes positions [p0, p1) of sequence src part of dst too (cells are shared).
func (c *Context) KVSeqCopy(src, dst, p0, p1 int32) error {
	return c.call("rocmforge_kv_seq_copy", func() C.int {
		return C.int(C.rocmforge_kv_seq_copy(c.ptr, C.int32_t(src), C.int32_t(dst), C.int32_t(p0), C.int32_t(p1)))
	})
}

// KVSeqKeep removes every sequence but seq.
func (c *Context) KVSeqKeep(seq int32) error {
	return c.call("rocmforge_kv_seq_keep", func() C.int { return C.int(C.rocmforge_kv_seq_keep(c.ptr, C.int32_t(seq))) })
}

// KVSeqPosMax is the largest position of sequence seq (-1 when it is empty).
func (c *Context) KVSeqPosMax(seq int32) (int32, error) {
	var out C.int32_t
	err := c.call("rocmforge_kv_seq_pos_max", func() C.int {
		return C.int(C.rocmforge_kv_seq_pos_max(c.ptr, C.int32_t(seq), &out))
	})
	return int32(out), err
}

// KVSeqPosMin is the smallest position of sequence seq every layer still holds (-1 when it is
// empty): with sliding-window layers (Gemma 3), the oldest their ring kept.
func (c *Context) KVSeqPosMin(seq int32) (int32, error) {
	var out C.int32_t
	err := c.call("rocmforge_kv_seq_pos_min", func() C.int {
		return C.int(C.rocmforge_kv_seq_pos_min(c.ptr, C.int32_t(seq), &out))
	})
	return int32(out), err
}

// StateSave returns the state of the whole context (seq -1: KV cache and last logits) or of
// one sequence, with a CRC-32 trailer.
func (c *Context) StateSave(seq int32) ([]byte, error) {
	var size C.size_t
	if err := c.call("rocmforge_state_size", func() C.int {
		return C.int(C.rocmforge_state_size(c.ptr, C.int32_t(seq), &size))
	}); err != nil {
		return nil, err
	}
	var out []byte
	err := c.call("rocmforge_state_save", func() C.int {
		buf := make([]byte, int(size)+1)
		var n C.size_t
		st := C.int(C.rocmforge_state_save(c.ptr, C.int32_t(seq), (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n))
		out = buf[:n]
		return st
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// StateLoad restores a state from StateSave: the whole context (seq -1) or into sequence
// seq, replacing it. On error nothing changes.
func (c *Context) StateLoad(seq int32, state []byte) error {
	var ptr *C.uint8_t
	if len(state) > 0 {
		ptr = (*C.uint8_t)(unsafe.Pointer(&state[0]))
	}
	return c.call("rocmforge_state_load", func() C.int {
		return C.int(C.rocmforge_state_load(c.ptr, C.int32_t(seq), ptr, C.size_t(len(state))))
	})
}

// StateSaveFile is StateSave into a file (created or truncated).
func (c *Context) StateSaveFile(seq int32, path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return c.call("rocmforge_state_save_file", func() C.int {
		return C.int(C.rocmforge_state_save_file(c.ptr, C.int32_t(seq), cpath))
	})
}

// StateLoadFile is StateLoad from a file written by StateSaveFile.
func (c *Context) StateLoadFile(seq int32, path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return c.call("rocmforge_state_load_file", func() C.int {
		return C.int(C.rocmforge_state_load_file(c.ptr, C.int32_t(seq), cpath))
	})
}
