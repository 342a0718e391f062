package rocmforge

// #include "bridge.h"
import "C"

import "fmt"

// Status is a library status code (stable numbers; 0 is success). The non-zero statuses are
// errors themselves, in the manner of syscall.Errno, so they serve as sentinels:
// errors.Is(err, rocmforge.ErrCancelled).
type Status int32

// The statuses of docs/C_API.md.
const (
	OK                    Status = C.ROCMFORGE_OK
	ErrNullPointer        Status = C.ROCMFORGE_ERR_NULL_POINTER
	ErrInvalidArgument    Status = C.ROCMFORGE_ERR_INVALID_ARGUMENT
	ErrBufferTooSmall     Status = C.ROCMFORGE_ERR_BUFFER_TOO_SMALL
	ErrInvalidToken       Status = C.ROCMFORGE_ERR_INVALID_TOKEN
	ErrInvalidSequence    Status = C.ROCMFORGE_ERR_INVALID_SEQUENCE
	ErrBusy               Status = C.ROCMFORGE_ERR_BUSY
	ErrContextFull        Status = C.ROCMFORGE_ERR_CONTEXT_FULL
	ErrCancelled          Status = C.ROCMFORGE_ERR_CANCELLED
	ErrPoisoned           Status = C.ROCMFORGE_ERR_POISONED
	ErrInternal           Status = C.ROCMFORGE_ERR_INTERNAL
	ErrIO                 Status = C.ROCMFORGE_ERR_IO
	ErrInvalidModel       Status = C.ROCMFORGE_ERR_INVALID_MODEL
	ErrUnsupported        Status = C.ROCMFORGE_ERR_UNSUPPORTED
	ErrTokenizer          Status = C.ROCMFORGE_ERR_TOKENIZER
	ErrOutOfMemory        Status = C.ROCMFORGE_ERR_OUT_OF_MEMORY
	ErrBackendUnavailable Status = C.ROCMFORGE_ERR_BACKEND_UNAVAILABLE
	ErrNoChatTemplate     Status = C.ROCMFORGE_ERR_NO_CHAT_TEMPLATE
	ErrTemplate           Status = C.ROCMFORGE_ERR_TEMPLATE
	ErrNotFound           Status = C.ROCMFORGE_ERR_NOT_FOUND
	ErrGPU                Status = C.ROCMFORGE_ERR_GPU
)

// String is the library's static description of the status.
func (s Status) String() string {
	return C.GoString(C.rfgo_status_string(C.int(s)))
}

// Error makes a status usable as an error value and as an errors.Is target.
func (s Status) Error() string {
	return fmt.Sprintf("rocmforge: %s (status %d)", s.String(), int32(s))
}

// Error is a failed library call: which function, its status and the detailed message the
// library gave (rocmforge_last_error). errors.Is(err, ErrX) compares the status; an
// evaluation cancelled through a context.Context also unwraps to that context's error.
type Error struct {
	Op      string // the C function, e.g. "rocmforge_model_load"
	Status  Status
	Message string
	cause   error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s (status %d)", e.Op, e.Status.String(), int32(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.cause != nil {
		msg += " (" + e.cause.Error() + ")"
	}
	return msg
}

// Is reports whether target is this error's status.
func (e *Error) Is(target error) bool {
	s, ok := target.(Status)
	return ok && s == e.Status
}

// Unwrap returns what caused a cancellation (a context's error), or nil.
func (e *Error) Unwrap() error {
	return e.cause
}
