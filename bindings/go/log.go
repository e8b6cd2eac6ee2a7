package openfl

// #include "shim.h"
import "C"

import (
	"runtime/cgo"
	"strconv"
	"sync"
)

// LogLevel is the severity of a library log record.
type LogLevel int32

// The log levels (ofl_log_level).
const (
	LogOff   LogLevel = 0
	LogError LogLevel = 1
	LogWarn  LogLevel = 2
	LogInfo  LogLevel = 3
	LogDebug LogLevel = 4
	LogTrace LogLevel = 5
)

func (l LogLevel) String() string {
	switch l {
	case LogOff:
		return "OFF"
	case LogError:
		return "ERROR"
	case LogWarn:
		return "WARN"
	case LogInfo:
		return "INFO"
	case LogDebug:
		return "DEBUG"
	case LogTrace:
		return "TRACE"
	}
	return "LogLevel(" + strconv.Itoa(int(l)) + ")"
}

// LogFunc receives one library log record: target names the library
// module. It is called from library threads, possibly concurrently, and
// must not call into this package.
type LogFunc func(level LogLevel, target, message string)

var logMu sync.Mutex
var logHandle cgo.Handle // current logger's handle, 0 for none

// SetLogger sends the library's log records up to maxLevel to fn; a nil fn
// writes them to stderr. Without a call, warnings and errors go to stderr.
// Process-wide; may be called again to change the level or the function.
func SetLogger(maxLevel LogLevel, fn LogFunc) error {
	logMu.Lock()
	defer logMu.Unlock()
	var h cgo.Handle
	if fn != nil {
		h = cgo.NewHandle(fn)
	}
	if err := takeError(C.ofl_go_set_log_callback(C.int32_t(maxLevel), C.uintptr_t(h))); err != nil {
		if h != 0 {
			h.Delete()
		}
		return err
	}
	// The library no longer uses the previous user_data once the call returned.
	if logHandle != 0 {
		logHandle.Delete()
	}
	logHandle = h
	return nil
}

//export oflGoLog
func oflGoLog(h C.uintptr_t, level C.int32_t, target, message *C.char) {
	defer func() { _ = recover() }() // a panicking logger must not unwind into C
	fn := cgo.Handle(h).Value().(LogFunc)
	fn(LogLevel(level), C.GoString(target), C.GoString(message))
}
