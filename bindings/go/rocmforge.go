// Package rocmforge binds librocmforge, the C API of the ROCmForge LLM inference engine.
//
// The types mirror the C handles: a Model (immutable, shared by any number of goroutines and
// contexts), a Context (its KV cache; used by one goroutine at a time), a Batch and a Sampler
// chain. Each has a Close method that frees its C object; Close is required (there are no
// finalizers: a finalizer could free a handle while C code still uses it) and may be called
// more than once. A closed handle answers ErrNullPointer.
//
// Every failure is an *Error carrying the library's status and its detailed message;
// errors.Is matches it against the status constants (ErrCancelled, ErrIO, ...), and an
// evaluation stopped by a context.Context also matches ctx.Err().
//
// Linking goes through pkg-config (`#cgo pkg-config: rocmforge`): set PKG_CONFIG_PATH to the
// installed prefix's lib/pkgconfig, and let the dynamic loader find librocmforge.so (see
// README.md: LD_LIBRARY_PATH, or an rpath through CGO_LDFLAGS).
package rocmforge

/*
#cgo pkg-config: rocmforge
#include <stdlib.h>
#include <rocmforge.h>
#include "bridge.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// call runs one library call and turns its status into an error. The detailed message is
// thread-local in C, so the call and the read of rocmforge_last_error happen on one locked OS
// thread (a goroutine may otherwise move between threads between two cgo calls).
func call(op string, f func() C.int) error {
	st, msg := callStatus(f)
	if st == OK {
		return nil
	}
	return &Error{Op: op, Status: st, Message: msg}
}

// callStatus is call without the error wrapping, for the two-call protocol.
func callStatus(f func() C.int) (Status, string) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := Status(f())
	if st == OK {
		return OK, ""
	}
	return st, C.GoString(C.rocmforge_last_error())
}

// twoCall runs a function of the two-call size protocol: with a buffer of `guess` bytes
// first, then, if the library asks for more, with exactly the size it reported.
func twoCall(op string, guess int, f func(buf *C.char, capacity C.size_t, n *C.size_t) C.int) ([]byte, error) {
	buf := make([]byte, guess+1)
	for attempt := 0; ; attempt++ {
		var n C.size_t
		st, msg := callStatus(func() C.int {
			return f((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n)
		})
		switch {
		case st == OK:
			return buf[:n], nil
		case st == ErrBufferTooSmall && attempt == 0:
			buf = make([]byte, int(n)+1) // the text, and the NUL the library appends
		default:
			return nil, &Error{Op: op, Status: st, Message: msg}
		}
	}
}

// cText returns a pointer to the bytes of s and their count, for the library's
// (pointer, length) text parameters; the pointer is valid for the duration of one call.
func cText(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		return (*C.char)(unsafe.Pointer(&emptyText)), 0
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

var emptyText byte

// cTokens is the C view of a token slice for one call (nil for an empty slice).
func cTokens(tokens []int32) *C.int32_t {
	if len(tokens) == 0 {
		return nil
	}
	return (*C.int32_t)(unsafe.Pointer(&tokens[0]))
}

// Version is the loaded library's version string ("0.1.0").
func Version() string {
	return C.GoString(C.rocmforge_version_string())
}

// VersionNumber is the loaded library's version as major*10000 + minor*100 + patch.
func VersionNumber() uint32 {
	return uint32(C.rocmforge_version())
}

// HeaderVersionNumber is the version of the header this package was compiled against, in
// the form of VersionNumber.
const HeaderVersionNumber = C.ROCMFORGE_VERSION_MAJOR*10000 + C.ROCMFORGE_VERSION_MINOR*100 + C.ROCMFORGE_VERSION_PATCH

// GPUBuiltIn reports whether the library was built with a GPU backend.
func GPUBuiltIn() bool {
	var out C.bool
	if call("rocmforge_gpu_built_in", func() C.int { return C.int(C.rocmforge_gpu_built_in(&out)) }) != nil {
		return false
	}
	return bool(out)
}

// DeviceCount is the number of GPUs present (0 without a GPU backend, driver or device).
func DeviceCount() (int, error) {
	var n C.size_t
	err := call("rocmforge_device_count", func() C.int { return C.int(C.rocmforge_device_count(&n)) })
	return int(n), err
}

// DeviceName is the name of GPU `index`.
func DeviceName(index int) (string, error) {
	b, err := twoCall("rocmforge_device_name", 64, func(buf *C.char, capacity C.size_t, n *C.size_t) C.int {
		return C.int(C.rocmforge_device_name(C.size_t(index), buf, capacity, n))
	})
	return string(b), err
}

// DeviceArch is the architecture of GPU `index` ("gfx90a", "sm_90").
func DeviceArch(index int) (string, error) {
	b, err := twoCall("rocmforge_device_arch", 32, func(buf *C.char, capacity C.size_t, n *C.size_t) C.int {
		return C.int(C.rocmforge_device_arch(C.size_t(index), buf, capacity, n))
	})
	return string(b), err
}

// DeviceMemory returns the total and free memory of GPU `index`, in bytes.
func DeviceMemory(index int) (total, free uint64, err error) {
	var t, f C.uint64_t
	err = call("rocmforge_device_memory", func() C.int {
		return C.int(C.rocmforge_device_memory(C.size_t(index), &t, &f))
	})
	return uint64(t), uint64(f), err
}
