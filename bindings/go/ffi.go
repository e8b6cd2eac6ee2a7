package openfl

// #include "shim.h"
import "C"

import (
	"strconv"
	"strings"
	"unsafe"
)

// takeError converts and frees a library error (nil for NULL).
func takeError(e *C.ofl_error) error {
	if e == nil {
		return nil
	}
	err := &Error{
		Code:    Code(C.ofl_error_code(e)),
		Message: C.GoString(C.ofl_error_message(e)),
	}
	C.ofl_error_free(e)
	return err
}

// Version is the library's version, e.g. "0.1.0".
func Version() string { return C.GoString(C.ofl_version()) }

// cstrings allocates C strings and frees them all at once.
type cstrings struct{ ptrs []unsafe.Pointer }

// str copies s into C memory; s must not contain NUL (checked by checkString).
func (c *cstrings) str(s string) *C.char {
	p := C.CString(s)
	c.ptrs = append(c.ptrs, unsafe.Pointer(p))
	return p
}

// optStr is str, with "" giving NULL.
func (c *cstrings) optStr(s string) *C.char {
	if s == "" {
		return nil
	}
	return c.str(s)
}

// bytes copies b into C memory (NULL for an empty slice).
func (c *cstrings) bytes(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	p := C.CBytes(b)
	c.ptrs = append(c.ptrs, p)
	return (*C.uint8_t)(p)
}

// strs copies ss into a C array of C strings (NULL for an empty slice);
// the strings must have passed checkStrings.
func (c *cstrings) strs(ss []string) **C.char {
	if len(ss) == 0 {
		return nil
	}
	arr := unsafe.Slice((**C.char)(c.alloc(uintptr(len(ss))*unsafe.Sizeof((*C.char)(nil)))), len(ss))
	for i, s := range ss {
		arr[i] = c.str(s)
	}
	return &arr[0]
}

// alloc returns n zeroed bytes of C memory.
func (c *cstrings) alloc(n uintptr) unsafe.Pointer {
	if n == 0 {
		n = 1
	}
	p := C.calloc(1, C.size_t(n))
	if p == nil {
		panic("openfl: out of C memory")
	}
	c.ptrs = append(c.ptrs, p)
	return p
}

func (c *cstrings) free() {
	for _, p := range c.ptrs {
		C.free(p)
	}
	c.ptrs = nil
}

// checkString rejects strings C cannot carry (an embedded NUL would
// silently cut them).
func checkString(what, s string) error {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return invalidArgument("%s contains a NUL byte at offset %d", what, i)
	}
	return nil
}

func checkStrings(what string, ss []string) error {
	for i, s := range ss {
		if err := checkString(what+"["+strconv.Itoa(i)+"]", s); err != nil {
			return err
		}
	}
	return nil
}

// goBytes views n bytes of C memory at p as a slice (no copy).
func goBytes(p *C.uint8_t, n C.size_t) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// libraryCodeName is ofl_code_name (tests compare it with Code.String).
func libraryCodeName(c Code) string { return C.GoString(C.ofl_code_name(C.int32_t(c))) }
