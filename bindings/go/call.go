package openfl

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"runtime/cgo"
	"sync"
	"time"
)

// CallOption is an optional setting of one client call, passed after its
// other arguments (WithProgress). The call's context gives its deadline
// and cancellation.
type CallOption func(*callSettings)

type callSettings struct {
	progress func(done, total uint64) bool
}

// WithProgress reports the progress of a transfer (AggregatorClient's
// GetAggregatedTensor and SendLocalTaskResults, FrontendClient's
// SetNewExperiment, GetBestModel and GetLastModel, EnvoyClient's
// GetExperimentData; other calls never call it). fn gets the bytes done
// and the bytes in all (0 when unknown), at most every 4 MiB and once at
// the end, on a library thread while the call runs; returning false
// aborts the call with CodeCancelled. A panic in fn aborts the call and
// is re-raised by the call, on its goroutine. fn must not Close the
// client (Close waits for the call that runs fn).
func WithProgress(fn func(done, total uint64) bool) CallOption {
	return func(s *callSettings) { s.progress = fn }
}

// progressState is the Go side of one call's progress callback.
type progressState struct {
	fn       func(done, total uint64) bool
	panicked any
	didPanic bool
}

//export oflGoProgress
func oflGoProgress(h C.uintptr_t, done, total C.uint64_t) (more C.bool) {
	st := cgo.Handle(h).Value().(*progressState)
	if st.didPanic {
		return false
	}
	defer func() {
		if r := recover(); r != nil {
			st.panicked, st.didPanic = r, true
			more = false
		}
	}()
	return C.bool(st.fn(uint64(done), uint64(total)))
}

// callState is one library call's ofl_call_options: the context's
// deadline as its timeout, a cancel token that a watcher goroutine
// cancels when the context is done, and the progress callback. end
// releases it all; no goroutine outlives end.
type callState struct {
	opts     *C.ofl_call_options // nil: the client's defaults
	token    *C.ofl_cancel_token
	stop     chan struct{} // closed by end: the watcher exits
	watched  chan struct{} // closed by the watcher when it exits
	progress *progressState
	handle   cgo.Handle
	fromCtx  bool // the timeout is the context's deadline
}

// startCall prepares the options of one call under ctx; clientTimeout is
// the client's default call timeout (0: none), which an earlier context
// deadline overrides.
func startCall(ctx context.Context, what string, clientTimeout time.Duration, opts []CallOption) (*callState, error) {
	var s callSettings
	for _, o := range opts {
		if o != nil {
			o(&s)
		}
	}
	cs := &callState{}
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline && ctx.Done() == nil && s.progress == nil {
		return cs, nil // nothing to set: no allocation, no goroutine
	}
	if err := takeError(C.ofl_call_options_new(&cs.opts)); err != nil {
		return nil, err
	}
	if err := cs.configure(ctx, what, clientTimeout, deadline, hasDeadline, s); err != nil {
		cs.end()
		return nil, err
	}
	return cs, nil
}

func (cs *callState) configure(ctx context.Context, what string, clientTimeout time.Duration,
	deadline time.Time, hasDeadline bool, s callSettings) error {
	if hasDeadline {
		left := time.Until(deadline)
		if left <= 0 {
			return &Error{Code: CodeDeadlineExceeded, Message: what + ": " + context.DeadlineExceeded.Error(),
				cause: context.DeadlineExceeded}
		}
		if clientTimeout <= 0 || left < clientTimeout {
			ms := (left + time.Millisecond - 1) / time.Millisecond // rounded up: never before ctx
			if err := takeError(C.ofl_call_options_set_timeout_ms(cs.opts, C.uint64_t(ms))); err != nil {
				return err
			}
			cs.fromCtx = true
		}
	}
	if s.progress != nil {
		cs.progress = &progressState{fn: s.progress}
		cs.handle = cgo.NewHandle(cs.progress)
		if err := takeError(C.ofl_go_call_options_set_progress(cs.opts, C.uintptr_t(cs.handle))); err != nil {
			return err
		}
	}
	if ctx.Done() != nil {
		if err := takeError(C.ofl_cancel_token_new(&cs.token)); err != nil {
			return err
		}
		if err := takeError(C.ofl_call_options_set_cancel_token(cs.opts, cs.token)); err != nil {
			return err
		}
		cs.stop, cs.watched = make(chan struct{}), make(chan struct{})
		go cs.watch(ctx, cs.token)
	}
	return nil
}

// watch cancels the call's token when ctx is done, and exits when the
// call ends (or at once after cancelling).
func (cs *callState) watch(ctx context.Context, token *C.ofl_cancel_token) {
	defer close(cs.watched)
	select {
	case <-ctx.Done():
		_ = takeError(C.ofl_cancel_token_cancel(token))
	case <-cs.stop:
	}
}

// end releases the call's options once the library call has returned:
// the watcher has exited when end returns.
func (cs *callState) end() {
	if cs.stop != nil {
		close(cs.stop)
		<-cs.watched
	}
	if cs.token != nil {
		C.ofl_cancel_token_free(cs.token)
	}
	if cs.opts != nil {
		C.ofl_call_options_free(cs.opts)
	}
	if cs.handle != 0 {
		cs.handle.Delete()
	}
}

// outcome names the cause of a call's failure: its context (the error
// wraps ctx.Err()), Close (it wraps ErrClosed), or the library's error.
func (cs *callState) outcome(ctx context.Context, what string, err error, closed bool) error {
	code := CodeOf(err)
	if err == nil || (code != CodeCancelled && code != CodeDeadlineExceeded) {
		return err
	}
	if cerr := contextError(ctx, what); cerr != nil {
		return cerr
	}
	var e *Error
	if code == CodeDeadlineExceeded && cs.fromCtx && errors.As(err, &e) {
		// The library's timer, set from the context's deadline, can fire
		// just before the context's own.
		return &Error{Code: CodeDeadlineExceeded, Message: e.Message, cause: context.DeadlineExceeded}
	}
	if code == CodeCancelled && closed {
		return closedError(what)
	}
	return err
}

// clientCore is a client handle that calls share: Close cancels the calls
// in progress through the library's close and waits until they have all
// returned before freeing the handle.
type clientCore[H any] struct {
	guarded[H]
	idle        sync.Cond     // signalled when users drops to 0
	freed       chan struct{} // closed once the handle is freed
	closeFn     func(*H)      // cancels calls in progress, refuses new ones
	freeFn      func(*H)
	callTimeout time.Duration // the client's default (ConnectOptions.CallTimeout)
}

func (c *clientCore[H]) init(p *H, closeFn, freeFn func(*H), callTimeout time.Duration) {
	c.ptr, c.closeFn, c.freeFn, c.callTimeout = p, closeFn, freeFn, callTimeout
	c.idle.L = &c.mu
	c.freed = make(chan struct{})
}

func (c *clientCore[H]) release() {
	c.mu.Lock()
	c.users--
	if c.users == 0 {
		c.idle.Broadcast()
	}
	c.mu.Unlock()
}

func (c *clientCore[H]) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// close cancels every call in progress, waits until they have returned
// (so that no call, nor goroutine of one, outlives it) and frees the
// handle. Idempotent: a second close waits for the first.
func (c *clientCore[H]) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.freed
		return
	}
	c.closed = true
	p := c.ptr
	c.mu.Unlock()
	c.closeFn(p) // thread-safe; only close frees p
	c.mu.Lock()
	for c.users > 0 {
		c.idle.Wait()
	}
	c.ptr = nil
	c.mu.Unlock()
	c.freeFn(p)
	close(c.freed)
}

// callsInProgress is the number of calls using the handle (tests).
func (c *clientCore[H]) callsInProgress() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.users
}

// doCall makes one library call on c's handle under ctx: an already done
// ctx or a closed client fail at once; ctx's deadline and cancellation
// and the call options reach the library through co (nil: the client's
// defaults). A panic of the progress callback is re-raised here.
func doCall[H, T any](ctx context.Context, c *clientCore[H], what string, opts []CallOption,
	call func(p *H, co *C.ofl_call_options) (T, error)) (T, error) {
	var zero T
	if err := contextError(ctx, what); err != nil {
		return zero, err
	}
	p, err := c.acquire(what)
	if err != nil {
		return zero, err
	}
	defer c.release()
	cs, err := startCall(ctx, what, c.callTimeout, opts)
	if err != nil {
		return zero, err
	}
	v, err := call(p, cs.opts)
	cs.end()
	if cs.progress != nil && cs.progress.didPanic {
		panic(cs.progress.panicked) // on the caller's goroutine, the C frames gone
	}
	return v, cs.outcome(ctx, what, err, c.isClosed())
}
