package openfl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Code is what kind of failure an error is: values 0 to 16 are the gRPC
// status codes with their gRPC meaning, values from 100 are library codes
// (the library's ofl_code).
//
// A Code is itself an error value, so that errors.Is can test a returned
// error's code:
//
//	if errors.Is(err, openfl.CodeUnauthenticated) { ... }
type Code int32

// The codes (ofl_code).
const (
	CodeOK                 Code = 0   // success (never carried by an error)
	CodeCancelled          Code = 1   // cancelled (context cancelled, client closed, server stopped)
	CodeUnknown            Code = 2   // unknown error (the peer sent no better code)
	CodeInvalidArgument    Code = 3   // a bad argument, or a request field the server rejected
	CodeDeadlineExceeded   Code = 4   // a deadline expired
	CodeNotFound           Code = 5   // something asked for does not exist
	CodeAlreadyExists      Code = 6   // something to be created already exists
	CodePermissionDenied   Code = 7   // not an authorized collaborator
	CodeResourceExhausted  Code = 8   // a size limit was exceeded
	CodeFailedPrecondition Code = 9   // not valid in the current state
	CodeAborted            Code = 10  // aborted
	CodeOutOfRange         Code = 11  // a value is out of range
	CodeUnimplemented      Code = 12  // the peer does not implement this RPC
	CodeInternal           Code = 13  // an internal error (also: a panic in Go logic)
	CodeUnavailable        Code = 14  // the peer could not be reached
	CodeDataLoss           Code = 15  // data was lost or corrupted
	CodeUnauthenticated    Code = 16  // the certificate CN may not speak for the sender
	CodeTLS                Code = 100 // certificate or handshake failure (never retried)
	CodeIO                 Code = 101 // local I/O error (certificate file, port in use)
	CodePanic              Code = 102 // a panic inside the library, caught at its boundary
	CodeInvalidResponse    Code = 103 // the reply header failed validation
	CodeRetriesExhausted   Code = 104 // the retry budget was spent while the peer stayed unavailable
	CodeProtocolMismatch   Code = 105 // the server speaks another protocol (TLS vs plaintext, HTTP/1); never retried
)

var codeNames = map[Code]string{
	CodeOK: "OK", CodeCancelled: "CANCELLED", CodeUnknown: "UNKNOWN",
	CodeInvalidArgument: "INVALID_ARGUMENT", CodeDeadlineExceeded: "DEADLINE_EXCEEDED",
	CodeNotFound: "NOT_FOUND", CodeAlreadyExists: "ALREADY_EXISTS",
	CodePermissionDenied: "PERMISSION_DENIED", CodeResourceExhausted: "RESOURCE_EXHAUSTED",
	CodeFailedPrecondition: "FAILED_PRECONDITION", CodeAborted: "ABORTED",
	CodeOutOfRange: "OUT_OF_RANGE", CodeUnimplemented: "UNIMPLEMENTED", CodeInternal: "INTERNAL",
	CodeUnavailable: "UNAVAILABLE", CodeDataLoss: "DATA_LOSS",
	CodeUnauthenticated: "UNAUTHENTICATED", CodeTLS: "TLS", CodeIO: "IO", CodePanic: "PANIC",
	CodeInvalidResponse: "INVALID_RESPONSE", CodeRetriesExhausted: "RETRIES_EXHAUSTED",
	CodeProtocolMismatch: "PROTOCOL_MISMATCH",
}

// String gives the code's name as the library spells it (ofl_code_name),
// e.g. "UNAUTHENTICATED".
func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return "UNKNOWN_CODE(" + strconv.Itoa(int(c)) + ")"
}

// Error makes a Code usable as an error and as an errors.Is target; it is
// the code's name, so that fmt prints a Code the same way with %v and %s.
func (c Code) Error() string { return c.String() }

// Error is an error from the library or from this binding: a code and a
// message naming the cause. Get it with errors.As, or test only the code
// with errors.Is(err, openfl.CodeXxx).
type Error struct {
	Code    Code
	Message string
	cause   error // e.g. context.Canceled; see Unwrap
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "openfl: " + e.Code.String()
	}
	return "openfl: " + e.Code.String() + ": " + e.Message
}

// Is reports whether target is e's Code (errors.Is(err, openfl.CodeNotFound)),
// or an *Error with the same code and message.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Code:
		return t == e.Code
	case *Error:
		return t.Code == e.Code && t.Message == e.Message
	}
	return false
}

// Unwrap gives the underlying cause, if any: context.Canceled or
// context.DeadlineExceeded for calls ended by their context, ErrClosed for
// calls on a closed handle.
func (e *Error) Unwrap() error { return e.cause }

// ErrClosed is the cause of the CodeCancelled error that methods of a closed
// AggregatorClient or AggregatorServer return.
var ErrClosed = errors.New("openfl: use of a closed handle")

// NewError makes an error with a code and a message; Go aggregator logic
// returns it to answer a call with that gRPC code.
func NewError(code Code, message string) error {
	return &Error{Code: code, Message: message}
}

// Errorf is NewError with a format.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf gives the code of err: CodeOK for nil, the code of an *Error or
// Code in its chain, CodeCancelled or CodeDeadlineExceeded for context
// errors, and CodeUnknown for anything else.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return CodeCancelled
	}
	return CodeUnknown
}

// contextError wraps a context's error so that both errors.Is(err,
// context.Canceled) and errors.Is(err, openfl.CodeCancelled) hold.
func contextError(ctx context.Context, what string) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	code := CodeCancelled
	if errors.Is(err, context.DeadlineExceeded) {
		code = CodeDeadlineExceeded
	}
	return &Error{Code: code, Message: what + ": " + err.Error(), cause: err}
}

func closedError(what string) error {
	return &Error{Code: CodeCancelled, Message: what + ": " + ErrClosed.Error(), cause: ErrClosed}
}

func invalidArgument(format string, args ...any) error {
	return &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf(format, args...)}
}
