package openfl

// #include "shim.h"
import "C"

import (
	"time"
)

// ServerLimits bounds what a hostile or unlucky peer can take from a server
// (aggregator or director). Zero fields keep the library defaults noted on
// each field. Requests over a size bound get CodeResourceExhausted.
type ServerLimits struct {
	// MaxConcurrentStreams is the number of calls served at once on one
	// connection; more are refused with REFUSED_STREAM. 0 means 100.
	MaxConcurrentStreams uint32
	// MaxConnections is the number of connections served at once; further
	// connections wait in the listen backlog. 0 means 1000.
	MaxConnections uint32
	// HandshakeTimeout is the time a new connection has to finish its TLS
	// handshake and send the HTTP/2 preface before it is closed. 0 means
	// 10 s. Millisecond resolution, at most a year.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection with no call in flight for this long
	// (clients reconnect on their next call). 0 means 60 s. Millisecond
	// resolution, at most a year.
	IdleTimeout time.Duration
	// MaxUnaryRequestSize is the largest request of a call that is not a
	// streamed upload, gRPC framing included (refused before it is
	// buffered). 0 means 4 MiB; at least 1024.
	MaxUnaryRequestSize uint64
	// ShutdownGrace is how long a stopping server lets calls in flight
	// finish. After it they are cancelled (clients see CodeUnavailable; an
	// upload cut short never reaches the logic) and their connections reset,
	// so Stop followed by Serve returning, and Close, take at most about this
	// grace plus half a second whatever the peers do. Logic still running
	// then is abandoned: it runs to its end and its answer is dropped.
	// 0 means 5 s; set NoShutdownGrace to cancel at once. Millisecond
	// resolution, at most a year.
	ShutdownGrace   time.Duration
	NoShutdownGrace bool
}

// limitSetters are the C setters for ServerLimits' fields (of an
// ofl_server_limits, or of the director's options until they take one).
type limitSetters struct {
	streams, connections func(C.uint32_t) *C.ofl_error
	handshake, idle      func(C.uint64_t) *C.ofl_error
	unary                func(C.uint64_t) *C.ofl_error
	grace                func(C.uint64_t) *C.ofl_error
}

// limitMillis converts a non-zero duration for a C setter; below 1 ms is an error.
func limitMillis(name string, d time.Duration) (C.uint64_t, error) {
	ms := d.Milliseconds()
	if ms <= 0 {
		return 0, invalidArgument("%s %v is below 1 ms", name, d)
	}
	return C.uint64_t(ms), nil
}

func (l *ServerLimits) apply(set limitSetters) error {
	if l.MaxConcurrentStreams != 0 {
		if err := takeError(set.streams(C.uint32_t(l.MaxConcurrentStreams))); err != nil {
			return err
		}
	}
	if l.MaxConnections != 0 {
		if err := takeError(set.connections(C.uint32_t(l.MaxConnections))); err != nil {
			return err
		}
	}
	for _, timeout := range []struct {
		name   string
		value  time.Duration
		setter func(C.uint64_t) *C.ofl_error
	}{{"HandshakeTimeout", l.HandshakeTimeout, set.handshake}, {"IdleTimeout", l.IdleTimeout, set.idle}} {
		if timeout.value == 0 {
			continue
		}
		ms, err := limitMillis(timeout.name, timeout.value)
		if err != nil {
			return err
		}
		if err := takeError(timeout.setter(ms)); err != nil {
			return err
		}
	}
	if l.MaxUnaryRequestSize != 0 {
		if err := takeError(set.unary(C.uint64_t(l.MaxUnaryRequestSize))); err != nil {
			return err
		}
	}
	return l.applyGrace(set.grace)
}

// applyGrace sets ShutdownGrace (or none, for NoShutdownGrace).
func (l *ServerLimits) applyGrace(set func(C.uint64_t) *C.ofl_error) error {
	switch {
	case l.NoShutdownGrace:
		return takeError(set(0))
	case l.ShutdownGrace < 0:
		return invalidArgument("ShutdownGrace %v is negative", l.ShutdownGrace)
	case l.ShutdownGrace > 0:
		ms, err := limitMillis("ShutdownGrace", l.ShutdownGrace)
		if err != nil {
			return err
		}
		return takeError(set(ms))
	}
	return nil
}

// attach gives l to one server options type's _set_limits (set), as an
// ofl_server_limits with the non-zero fields set.
func (l *ServerLimits) attach(set func(*C.ofl_server_limits) *C.ofl_error) error {
	var limits *C.ofl_server_limits
	if err := takeError(C.ofl_server_limits_new(&limits)); err != nil {
		return err
	}
	defer C.ofl_server_limits_free(limits)
	if err := l.apply(limitSetters{
		streams:     func(v C.uint32_t) *C.ofl_error { return C.ofl_server_limits_set_max_concurrent_streams(limits, v) },
		connections: func(v C.uint32_t) *C.ofl_error { return C.ofl_server_limits_set_max_connections(limits, v) },
		handshake:   func(v C.uint64_t) *C.ofl_error { return C.ofl_server_limits_set_handshake_timeout_ms(limits, v) },
		idle:        func(v C.uint64_t) *C.ofl_error { return C.ofl_server_limits_set_idle_timeout_ms(limits, v) },
		unary:       func(v C.uint64_t) *C.ofl_error { return C.ofl_server_limits_set_max_unary_request_size(limits, v) },
		grace:       func(v C.uint64_t) *C.ofl_error { return C.ofl_server_limits_set_shutdown_grace_ms(limits, v) },
	}); err != nil {
		return err
	}
	return takeError(set(limits))
}
