package openfl

// #include "shim.h"
import "C"

// The director's options take TLS, server limits and connection settings
// as the C API's shared objects (ofl_tls_config, ofl_server_limits,
// ofl_connect_options). This file builds them from the binding's TLS,
// ServerLimits and connection fields.
// TODO(0.2): use the shared TLSConfig / ServerLimits / ConnectOptions
// wrappers once they are on main (the aggregator options take them too).

// attachTLS builds an ofl_tls_config from t and hands it to attach (which
// copies it); t.Disabled attaches NULL (TLS off). Settings with no
// certificate attach nothing: the library then refuses to start, naming
// its set_tls setter. optionalKeyPair (clients): the identity is optional.
func attachTLS(t *TLS, mem *cstrings, optionalKeyPair bool, attach func(*C.ofl_tls_config) *C.ofl_error) error {
	if t.Disabled {
		return takeError(attach(nil))
	}
	if !t.configured() && t.Certificate == "" && t.PrivateKey == "" && !t.DisableClientAuth {
		return nil
	}
	var tls *C.ofl_tls_config
	if err := takeError(C.ofl_tls_config_new(&tls)); err != nil {
		return err
	}
	defer C.ofl_tls_config_free(tls)
	if err := t.apply(mem, optionalKeyPair, tlsSetters{
		enable: func(C.bool) *C.ofl_error { return nil },
		pem: func(root *C.uint8_t, rootLen C.size_t, cert *C.uint8_t, certLen C.size_t, key *C.uint8_t, keyLen C.size_t) *C.ofl_error {
			if err := C.ofl_tls_config_set_root_certificate_pem(tls, root, rootLen); err != nil {
				return err
			}
			if certLen == 0 && keyLen == 0 {
				return nil
			}
			return C.ofl_tls_config_set_identity_pem(tls, cert, certLen, key, keyLen)
		},
		files: func(root, cert, key *C.char) *C.ofl_error {
			if err := C.ofl_tls_config_set_root_certificate_file(tls, root); err != nil {
				return err
			}
			if cert == nil && key == nil {
				return nil
			}
			return C.ofl_tls_config_set_identity_files(tls, cert, key)
		},
		disableClientAuth: func() *C.ofl_error {
			return C.ofl_tls_config_set_client_auth(tls, C.int32_t(C.OFL_CLIENT_AUTH_NONE))
		},
	}); err != nil {
		return err
	}
	return takeError(attach(tls))
}

// directorLimits sets l on a director's options through one ofl_server_limits.
func directorLimits(l *ServerLimits, opts *C.ofl_director_server_options) error {
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
	}); err != nil {
		return err
	}
	return takeError(C.ofl_director_server_options_set_limits(opts, limits))
}

// directorConnect sets a director client's connection settings through one
// ofl_connect_options.
func directorConnect(o *DirectorClientOptions, opts *C.ofl_director_client_options, mem *cstrings) error {
	var connect *C.ofl_connect_options
	if err := takeError(C.ofl_connect_options_new(&connect)); err != nil {
		return err
	}
	defer C.ofl_connect_options_free(connect)
	if o.ServerName != "" {
		if err := takeError(C.ofl_connect_options_set_server_name(connect, mem.str(o.ServerName))); err != nil {
			return err
		}
	}
	if err := applyConnection(o.Retry, o.ConnectTimeout, o.MaxMessageSize, connectionSetters{
		retry: func(initialMs, maxMs C.uint64_t, deadlineMs C.int64_t) *C.ofl_error {
			return C.ofl_connect_options_set_retry(connect, initialMs, maxMs, deadlineMs)
		},
		connectTimeout: func(ms C.uint64_t) *C.ofl_error { return C.ofl_connect_options_set_connect_timeout_ms(connect, ms) },
		maxMessageSize: func(bytes C.uint64_t) *C.ofl_error { return C.ofl_connect_options_set_max_message_size(connect, bytes) },
	}); err != nil {
		return err
	}
	return takeError(C.ofl_director_client_options_set_connect(opts, connect))
}
