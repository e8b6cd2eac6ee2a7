package openfl

// #include "shim.h"
import "C"

import (
	"context"
	"runtime"
	"sync"
)

// guarded is a library handle that calls use concurrently: acquire counts
// a call in, and refuses once the handle is closed. What a call's end and
// closing do (free the handle, wake a waiter) is up to the owner, under mu.
type guarded[P any] struct {
	mu     sync.Mutex
	ptr    *P
	users  int // calls in progress
	closed bool
}

// acquire returns the handle for one call; the owner's release must follow.
func (g *guarded[P]) acquire(what string) (*P, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, closedError(what)
	}
	g.users++
	return g.ptr, nil
}

// serverOps are the library functions of one server type.
type serverOps[P any] struct {
	serve func(p *P) *C.ofl_error
	stop  func(p *P) *C.ofl_error
	free  func(p *P)
}

// serverLifecycle is the life cycle AggregatorServer and DirectorServer
// share: Serve, Stop and Close over a library server that their methods
// acquire while they use it. Close frees the server once no method uses it.
type serverLifecycle[P any] struct {
	guarded[P]
	idle   sync.Cond // signalled when users drops to 0
	ops    serverOps[P]
	cancel context.CancelFunc // cancels the context given to the logic or hooks
}

func (l *serverLifecycle[P]) init(ops serverOps[P], cancel context.CancelFunc) {
	l.idle.L = &l.mu
	l.ops, l.cancel = ops, cancel
}

func (l *serverLifecycle[P]) release() {
	l.mu.Lock()
	l.users--
	if l.users == 0 {
		l.idle.Broadcast()
	}
	l.mu.Unlock()
}

// serve is Serve: it blocks until the server stops, and stops it when ctx
// is done; nil, or a context error when ctx ended it.
func (l *serverLifecycle[P]) serve(ctx context.Context) error {
	if err := contextError(ctx, "Serve"); err != nil {
		return err
	}
	p, err := l.acquire("Serve")
	if err != nil {
		return err
	}
	defer l.release()
	served := make(chan struct{})
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				_ = l.stop()
			case <-served:
			}
		}()
	}
	err = takeError(l.ops.serve(p))
	close(served)
	runtime.KeepAlive(l) // the server (l is a field of it): no finalizer while serving
	if err == nil {
		err = contextError(ctx, "Serve")
	}
	return err
}

// stop is Stop: cancel the context, ask the server to stop; a closed
// server is stopped already.
func (l *serverLifecycle[P]) stop() error {
	p, err := l.acquire("Stop")
	if err != nil {
		return nil // closed: stopped already
	}
	defer l.release()
	l.cancel()
	return takeError(l.ops.stop(p))
}

// close is Close (once the owner has dropped its finalizer): stop, wait
// until no method uses the server, free it. Idempotent.
func (l *serverLifecycle[P]) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	p := l.ptr
	l.mu.Unlock()
	l.cancel()
	_ = takeError(l.ops.stop(p)) // only close frees p
	l.mu.Lock()
	for l.users > 0 {
		l.idle.Wait()
	}
	l.ptr = nil
	l.mu.Unlock()
	l.ops.free(p)
}
