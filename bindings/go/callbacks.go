package rocmforge

// The exported Go functions that bridge.c's trampolines call. A file with //export may only
// declare C functions in its preamble, so the trampolines live in bridge.c.

// #include <stdbool.h>
// #include <stddef.h>
// #include <stdint.h>
// #include "bridge.h"
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"sync"
	"sync/atomic"
)

// LogLevel is the severity of a log message.
type LogLevel int32

// The levels of the library's log messages, most severe first. As a level to set (SetLogLevel,
// Context.SetLogLevel) each lets through its own messages and the more severe ones.
const (
	LogError LogLevel = 0
	LogWarn  LogLevel = 1
	// LogInfo, the default: load and context summaries and warnings, no line per eval.
	LogInfo LogLevel = 2
	// LogDebug adds a line per Eval and Decode.
	LogDebug LogLevel = 3
	// LogNone, as a level to set, lets nothing through.
	LogNone LogLevel = -1
	// LogGlobal, for Context.SetLogLevel only: follow the process-wide level (the default).
	LogGlobal LogLevel = -2
)

func (l LogLevel) String() string {
	switch l {
	case LogNone:
		return "none"
	case LogGlobal:
		return "global"
	case LogError:
		return "error"
	case LogWarn:
		return "warn"
	case LogInfo:
		return "info"
	case LogDebug:
		return "debug"
	}
	return fmt.Sprintf("level(%d)", int32(l))
}

// LogFunc receives one log message (without a trailing newline).
type LogFunc func(level LogLevel, message string)

// globalLog is the process-wide log function. The library may still call the trampoline
// with the old registration while SetLogger replaces it, so Go keeps the function itself in
// an atomic instead of handing C a handle it would have to delete.
var globalLog atomic.Pointer[LogFunc]

var globalLogMu sync.Mutex

// SetLogger sets (or with nil removes) the process-wide log function, which receives the
// messages not tied to a context (model loading, backend choice) and those of contexts
// without their own logger. It may be called concurrently from several threads. A panic in
// it is recovered and reported on standard error (it runs inside the library's call, where
// a Go panic cannot unwind).
func SetLogger(fn LogFunc) error {
	globalLogMu.Lock()
	defer globalLogMu.Unlock()
	if fn == nil {
		err := call("rocmforge_set_log_callback", func() C.int { return C.rfgo_set_global_log(0) })
		globalLog.Store(nil)
		return err
	}
	globalLog.Store(&fn)
	return call("rocmforge_set_log_callback", func() C.int { return C.rfgo_set_global_log(1) })
}

// SetLogLevel sets the process-wide log level (LogNone to LogDebug; LogInfo by default): it
// applies to messages not tied to a context and to contexts without their own level.
// Messages below it are not even formatted. Safe from any goroutine.
func SetLogLevel(level LogLevel) error {
	return call("rocmforge_set_log_level", func() C.int { return C.int(C.rocmforge_set_log_level(C.int32_t(level))) })
}

// contextLog is a context's own log function behind a cgo.Handle; a panic in it is kept and
// re-raised on the goroutine that made the call once the library has returned.
type contextLog struct {
	fn       LogFunc
	panicked any
}

// progressState is a load's progress function behind a cgo.Handle; a panic in it cancels
// the load and is re-raised after rocmforge_model_load returns.
type progressState struct {
	fn       func(fraction float32) bool
	panicked any
}

//export rocmforgeGoLog
func rocmforgeGoLog(level C.int32_t, message *C.char, handle C.uintptr_t) {
	text := C.GoString(message)
	if handle == 0 {
		fn := globalLog.Load()
		if fn == nil {
			return
		}
		defer func() {
			if r := recover(); r != nil {
				fmt.Fprintf(os.Stderr, "rocmforge: the log function panicked: %v\n", r)
			}
		}()
		(*fn)(LogLevel(level), text)
		return
	}
	log := cgo.Handle(handle).Value().(*contextLog)
	if log.panicked != nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			log.panicked = r
		}
	}()
	log.fn(LogLevel(level), text)
}

//export rocmforgeGoProgress
func rocmforgeGoProgress(progress C.float, handle C.uintptr_t) (keepGoing C.bool) {
	st := cgo.Handle(handle).Value().(*progressState)
	defer func() {
		if r := recover(); r != nil {
			st.panicked = r
			keepGoing = false
		}
	}()
	return C.bool(st.fn(float32(progress)))
}

// quantizeProgressState is a quantize's progress function behind a cgo.Handle; a panic in it
// cancels the quantize (no file is left) and is re-raised after rocmforge_model_quantize
// returns.
type quantizeProgressState struct {
	fn       func(done, total int) bool
	panicked any
}

//export rocmforgeGoQuantizeProgress
func rocmforgeGoQuantizeProgress(done, total C.size_t, handle C.uintptr_t) (keepGoing C.bool) {
	st := cgo.Handle(handle).Value().(*quantizeProgressState)
	defer func() {
		if r := recover(); r != nil {
			st.panicked = r
			keepGoing = false
		}
	}()
	return C.bool(st.fn(int(done), int(total)))
}
