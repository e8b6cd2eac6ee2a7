package openfl

// #include "shim.h"
import "C"

import (
	"time"
)

// TLSConfig holds the TLS settings shared by clients and servers (the C
// API's ofl_tls_config). The zero value is OpenFL's default: TLS with
// client authentication (mTLS), which needs certificates (as files or as
// PEM bytes).
type TLSConfig struct {
	// Disabled turns TLS off (OpenFL's tls=False): plain TCP, and the
	// server trusts the header sender (anyone can claim any collaborator).
	Disabled bool
	// Certificate files (OpenFL's root_certificate, certificate,
	// private_key), read when the client or server is created.
	RootCertificate, Certificate, PrivateKey string
	// The same as PEM bytes in memory (copied); used instead of the files
	// when RootCertificatePEM is not empty.
	RootCertificatePEM, CertificatePEM, PrivateKeyPEM []byte
	// DisableClientAuth is one-way TLS (OpenFL's disable_client_auth):
	// a client presents no certificate; a server makes client certificates
	// optional (a presented one is still checked by its CN).
	DisableClientAuth bool
	// CRLFiles and CRLPEM are certificate revocation lists (PEM, signed by
	// a trusted CA): a peer certificate they revoke is refused at the
	// handshake. Read once, when the server starts or the client is made.
	CRLFiles []string
	CRLPEM   [][]byte
}

func (t *TLSConfig) check() error {
	for _, f := range []struct{ what, s string }{
		{"TLS.RootCertificate", t.RootCertificate},
		{"TLS.Certificate", t.Certificate},
		{"TLS.PrivateKey", t.PrivateKey},
	} {
		if err := checkString(f.what, f.s); err != nil {
			return err
		}
	}
	return nil
}

func (t *TLSConfig) usePEM() bool { return len(t.RootCertificatePEM) > 0 }

func (t *TLSConfig) configured() bool { return t.usePEM() || t.RootCertificate != "" }

// attach gives t to one options type's _set_tls (set): a built
// ofl_tls_config, or NULL when Disabled.
func (t *TLSConfig) attach(set func(*C.ofl_tls_config) *C.ofl_error) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := checkStrings("TLS.CRLFiles", t.CRLFiles); err != nil {
		return err
	}
	if t.Disabled {
		return takeError(set(nil))
	}
	var cfg *C.ofl_tls_config
	if err := takeError(C.ofl_tls_config_new(&cfg)); err != nil {
		return err
	}
	defer C.ofl_tls_config_free(cfg)
	var mem cstrings
	defer mem.free()
	steps := []func() *C.ofl_error{}
	switch {
	case t.usePEM():
		steps = append(steps, func() *C.ofl_error {
			return C.ofl_tls_config_set_root_certificate_pem(cfg, mem.bytes(t.RootCertificatePEM), C.size_t(len(t.RootCertificatePEM)))
		})
	case t.RootCertificate != "":
		steps = append(steps, func() *C.ofl_error {
			return C.ofl_tls_config_set_root_certificate_file(cfg, mem.str(t.RootCertificate))
		})
	}
	switch {
	case len(t.CertificatePEM) > 0 || len(t.PrivateKeyPEM) > 0:
		steps = append(steps, func() *C.ofl_error {
			return C.ofl_tls_config_set_identity_pem(cfg, mem.bytes(t.CertificatePEM), C.size_t(len(t.CertificatePEM)),
				mem.bytes(t.PrivateKeyPEM), C.size_t(len(t.PrivateKeyPEM)))
		})
	case t.Certificate != "" || t.PrivateKey != "":
		steps = append(steps, func() *C.ofl_error {
			return C.ofl_tls_config_set_identity_files(cfg, mem.str(t.Certificate), mem.str(t.PrivateKey))
		})
	}
	if t.DisableClientAuth {
		steps = append(steps, func() *C.ofl_error { return C.ofl_tls_config_set_client_auth(cfg, C.OFL_CLIENT_AUTH_NONE) })
	}
	for _, f := range t.CRLFiles {
		f := f
		steps = append(steps, func() *C.ofl_error { return C.ofl_tls_config_add_crl_file(cfg, mem.str(f)) })
	}
	for _, pem := range t.CRLPEM {
		pem := pem
		steps = append(steps, func() *C.ofl_error { return C.ofl_tls_config_add_crl_pem(cfg, mem.bytes(pem), C.size_t(len(pem))) })
	}
	for _, step := range steps {
		if err := takeError(step()); err != nil {
			return err
		}
	}
	return takeError(set(cfg))
}

// tlsSetters are the 0.1 TLS setters of one library options type (closures
// over its ofl_*_options); only the director's options still use them,
// until they take an ofl_tls_config too (then attach replaces apply).
type tlsSetters struct {
	enable            func(enabled C.bool) *C.ofl_error
	pem               func(root *C.uint8_t, rootLen C.size_t, cert *C.uint8_t, certLen C.size_t, key *C.uint8_t, keyLen C.size_t) *C.ofl_error
	files             func(root, cert, key *C.char) *C.ofl_error
	disableClientAuth func() *C.ofl_error
}

// apply sets t through set. optionalKeyPair (clients): an empty
// Certificate or PrivateKey file is passed as NULL, not "".
func (t *TLSConfig) apply(mem *cstrings, optionalKeyPair bool, set tlsSetters) error {
	if t.Disabled {
		if err := takeError(set.enable(false)); err != nil {
			return err
		}
	} else if t.usePEM() {
		root, cert, key := mem.bytes(t.RootCertificatePEM), mem.bytes(t.CertificatePEM), mem.bytes(t.PrivateKeyPEM)
		if err := takeError(set.pem(root, C.size_t(len(t.RootCertificatePEM)),
			cert, C.size_t(len(t.CertificatePEM)),
			key, C.size_t(len(t.PrivateKeyPEM)))); err != nil {
			return err
		}
	} else if t.configured() || t.Certificate != "" || t.PrivateKey != "" {
		keyPair := mem.str
		if optionalKeyPair {
			keyPair = mem.optStr
		}
		if err := takeError(set.files(mem.str(t.RootCertificate), keyPair(t.Certificate), keyPair(t.PrivateKey))); err != nil {
			return err
		}
	}
	if t.DisableClientAuth {
		return takeError(set.disableClientAuth())
	}
	return nil
}

// Federation is the identity requests carry and servers check (OpenFL's
// aggregator_uuid, federation_uuid, single_col_cert_common_name).
type Federation struct {
	AggregatorUUID          string
	FederationUUID          string
	SingleColCertCommonName string // "" for none
}

func (f *Federation) check() error {
	if err := checkString("Federation.AggregatorUUID", f.AggregatorUUID); err != nil {
		return err
	}
	if err := checkString("Federation.FederationUUID", f.FederationUUID); err != nil {
		return err
	}
	return checkString("Federation.SingleColCertCommonName", f.SingleColCertCommonName)
}

// RetryPolicy says how a client retries while the aggregator is
// unreachable: exponential backoff from InitialBackoff up to MaxBackoff,
// with jitter, giving up after Deadline (error CodeRetriesExhausted); a
// negative Deadline retries forever. UNAUTHENTICATED and TLS failures are
// never retried. Durations are used with millisecond resolution.
type RetryPolicy struct {
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Deadline       time.Duration
}

// ConnectOptions says how a client reaches its server (the C API's
// ofl_connect_options, shared by every client). Zero fields keep the
// client's defaults noted on each field.
type ConnectOptions struct {
	// ServerName is the name the server certificate must carry; default
	// the host.
	ServerName string
	// Retry bounds retries while the server is unreachable; nil keeps the
	// library default (retry forever, as OpenFL). Set a Deadline to bound
	// every call.
	Retry *RetryPolicy
	// ConnectTimeout bounds TCP + TLS connection set-up; 0 means 10 s.
	ConnectTimeout time.Duration
	// MaxMessageSize is the largest message sent or received; 0 means
	// 1 GiB (2^30, as OpenFL).
	MaxMessageSize uint64
	// CallTimeout bounds every call of the client, all attempts and
	// retries included (CodeDeadlineExceeded when it passes); 0 means no
	// limit (as OpenFL). A call's context deadline, when earlier, wins.
	CallTimeout time.Duration
}

// attach gives c to one client options type's _set_connect (set).
func (c *ConnectOptions) attach(set func(*C.ofl_connect_options) *C.ofl_error) error {
	if err := checkString("Connect.ServerName", c.ServerName); err != nil {
		return err
	}
	var opts *C.ofl_connect_options
	if err := takeError(C.ofl_connect_options_new(&opts)); err != nil {
		return err
	}
	defer C.ofl_connect_options_free(opts)
	if c.ServerName != "" {
		var mem cstrings
		defer mem.free()
		if err := takeError(C.ofl_connect_options_set_server_name(opts, mem.str(c.ServerName))); err != nil {
			return err
		}
	}
	if err := applyConnection(c.Retry, c.ConnectTimeout, c.MaxMessageSize, connectionSetters{
		retry: func(initialMs, maxMs C.uint64_t, deadlineMs C.int64_t) *C.ofl_error {
			return C.ofl_connect_options_set_retry(opts, initialMs, maxMs, deadlineMs)
		},
		connectTimeout: func(ms C.uint64_t) *C.ofl_error { return C.ofl_connect_options_set_connect_timeout_ms(opts, ms) },
		maxMessageSize: func(bytes C.uint64_t) *C.ofl_error { return C.ofl_connect_options_set_max_message_size(opts, bytes) },
	}); err != nil {
		return err
	}
	if c.CallTimeout != 0 {
		ms := c.CallTimeout.Milliseconds()
		if ms <= 0 {
			return invalidArgument("Connect.CallTimeout %v is below 1 ms", c.CallTimeout)
		}
		if err := takeError(C.ofl_connect_options_set_call_timeout_ms(opts, C.uint64_t(ms))); err != nil {
			return err
		}
	}
	return takeError(set(opts))
}

// AggregatorClientOptions configures NewAggregatorClient. Zero fields keep the library
// defaults noted on each field.
type AggregatorClientOptions struct {
	// Host and Port of the aggregator (OpenFL's agg_addr, agg_port).
	Host string
	Port uint16
	// TLS settings; default mTLS.
	TLS TLSConfig
	// Connect: server name, retries, connect timeout, message size, call
	// timeout.
	Connect ConnectOptions
	// Federation is the identity requests carry and replies must match.
	Federation Federation
	// ReconnectEveryCall opens a new connection for every call, as
	// OpenFL 1.6 does (default: one connection is reused).
	ReconnectEveryCall bool
}

func millis(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

// connectionSetters are the connection setters of ofl_connect_options and,
// until it takes an ofl_connect_options too, of the director's client
// options (closures over the C object).
type connectionSetters struct {
	retry          func(initialMs, maxMs C.uint64_t, deadlineMs C.int64_t) *C.ofl_error
	connectTimeout func(ms C.uint64_t) *C.ofl_error
	maxMessageSize func(bytes C.uint64_t) *C.ofl_error
}

// applyConnection sets a client's Retry, ConnectTimeout and MaxMessageSize
// (zero values keep the library defaults).
func applyConnection(retry *RetryPolicy, connectTimeout time.Duration, maxMessageSize uint64, set connectionSetters) error {
	if r := retry; r != nil {
		if err := takeError(set.retry(C.uint64_t(millis(r.InitialBackoff)),
			C.uint64_t(millis(r.MaxBackoff)), C.int64_t(millis(r.Deadline)))); err != nil {
			return err
		}
	}
	if connectTimeout != 0 {
		ms := connectTimeout.Milliseconds()
		if ms <= 0 {
			return invalidArgument("ConnectTimeout %v is below 1 ms", connectTimeout)
		}
		if err := takeError(set.connectTimeout(C.uint64_t(ms))); err != nil {
			return err
		}
	}
	if maxMessageSize != 0 {
		return takeError(set.maxMessageSize(C.uint64_t(maxMessageSize)))
	}
	return nil
}

// listenHost is the host a server listens on: host, or "[::]" (every
// interface) for "".
func listenHost(host string) string {
	if host == "" {
		return "[::]"
	}
	return host
}

// build makes the library's ofl_aggregator_client_options (caller frees).
func (o *AggregatorClientOptions) build() (*C.ofl_aggregator_client_options, error) {
	if err := checkString("Host", o.Host); err != nil {
		return nil, err
	}
	if err := o.Federation.check(); err != nil {
		return nil, err
	}
	var mem cstrings
	defer mem.free()
	var opts *C.ofl_aggregator_client_options
	if err := takeError(C.ofl_aggregator_client_options_new(mem.str(o.Host), C.uint16_t(o.Port), &opts)); err != nil {
		return nil, err
	}
	err := o.apply(opts, &mem)
	if err != nil {
		C.ofl_aggregator_client_options_free(opts)
		return nil, err
	}
	return opts, nil
}

func (o *AggregatorClientOptions) apply(opts *C.ofl_aggregator_client_options, mem *cstrings) error {
	if err := o.TLS.attach(func(t *C.ofl_tls_config) *C.ofl_error {
		return C.ofl_aggregator_client_options_set_tls(opts, t)
	}); err != nil {
		return err
	}
	if err := o.Connect.attach(func(c *C.ofl_connect_options) *C.ofl_error {
		return C.ofl_aggregator_client_options_set_connect(opts, c)
	}); err != nil {
		return err
	}
	f := &o.Federation
	if err := takeError(C.ofl_aggregator_client_options_set_federation(opts, mem.str(f.AggregatorUUID),
		mem.str(f.FederationUUID), mem.optStr(f.SingleColCertCommonName))); err != nil {
		return err
	}
	if o.ReconnectEveryCall {
		if err := takeError(C.ofl_aggregator_client_options_set_reconnect_every_call(opts, true)); err != nil {
			return err
		}
	}
	return nil
}

// AggregatorServerOptions configures StartAggregatorServer. Zero fields keep the
// library defaults noted on each field.
type AggregatorServerOptions struct {
	// Host and Port to listen on: default "[::]" (every interface, IPv4
	// and IPv6); port 0 picks a free port (see AggregatorServer.Port).
	Host string
	Port uint16
	// TLS settings; default mTLS (certificates required).
	TLS TLSConfig
	// Federation is the aggregator's identity, checked on every request.
	Federation Federation
	// AuthorizedCollaborators are the collaborator names allowed to call
	// (OpenFL's authorized_cols).
	AuthorizedCollaborators []string
	// AuthFailureMaxDelay bounds the random delay before an
	// UNAUTHENTICATED answer; 0 means the default 5 s (as OpenFL). Set
	// NoAuthFailureDelay to answer at once.
	AuthFailureMaxDelay time.Duration
	NoAuthFailureDelay  bool
	// MaxMessageSize is the largest message accepted or sent, streamed
	// uploads included; 0 means 1 GiB (2^30, as OpenFL).
	MaxMessageSize uint64
	// Limits bounds connections, streams and request sizes.
	Limits ServerLimits
	// UploadMemoryBudget is how many bytes of SendLocalTaskResults uploads
	// the server holds in memory at once; an upload that would go over gets
	// CodeResourceExhausted. 0 means 2 GiB; at least 1 MiB.
	UploadMemoryBudget uint64
	// MaxTensorsPerUpload is the most tensors one upload may carry (more
	// get CodeResourceExhausted before they are decoded). 0 means 100 000.
	MaxTensorsPerUpload uint64
	// QuitPollInterval is how often Serve asks the logic's AllQuitJobsSent
	// whether the federation is over (it also asks right after each
	// GetTasks that told a collaborator to quit). 0 means 1 s (OpenFL 1.6:
	// 5 s). Millisecond resolution, at most a year.
	QuitPollInterval time.Duration
}

func (o *AggregatorServerOptions) build() (*C.ofl_aggregator_server_options, error) {
	if err := checkString("Host", o.Host); err != nil {
		return nil, err
	}
	if err := o.Federation.check(); err != nil {
		return nil, err
	}
	if err := checkStrings("AuthorizedCollaborators", o.AuthorizedCollaborators); err != nil {
		return nil, err
	}
	var opts *C.ofl_aggregator_server_options
	if err := takeError(C.ofl_aggregator_server_options_new(&opts)); err != nil {
		return nil, err
	}
	var mem cstrings
	defer mem.free()
	if err := o.apply(opts, &mem); err != nil {
		C.ofl_aggregator_server_options_free(opts)
		return nil, err
	}
	return opts, nil
}

func (o *AggregatorServerOptions) apply(opts *C.ofl_aggregator_server_options, mem *cstrings) error {
	if err := takeError(C.ofl_aggregator_server_options_set_listen(opts, mem.str(listenHost(o.Host)), C.uint16_t(o.Port))); err != nil {
		return err
	}
	if err := o.TLS.attach(func(t *C.ofl_tls_config) *C.ofl_error {
		return C.ofl_aggregator_server_options_set_tls(opts, t)
	}); err != nil {
		return err
	}
	f := &o.Federation
	if err := takeError(C.ofl_aggregator_server_options_set_federation(opts, mem.str(f.AggregatorUUID),
		mem.str(f.FederationUUID), mem.optStr(f.SingleColCertCommonName))); err != nil {
		return err
	}
	for _, name := range o.AuthorizedCollaborators {
		if err := takeError(C.ofl_aggregator_server_options_add_collaborator(opts, mem.str(name))); err != nil {
			return err
		}
	}
	switch {
	case o.NoAuthFailureDelay:
		if err := takeError(C.ofl_aggregator_server_options_set_auth_failure_max_delay_ms(opts, 0)); err != nil {
			return err
		}
	case o.AuthFailureMaxDelay > 0:
		if err := takeError(C.ofl_aggregator_server_options_set_auth_failure_max_delay_ms(opts,
			C.uint64_t(o.AuthFailureMaxDelay.Milliseconds()))); err != nil {
			return err
		}
	case o.AuthFailureMaxDelay < 0:
		return invalidArgument("AuthFailureMaxDelay %v is negative", o.AuthFailureMaxDelay)
	}
	if o.MaxMessageSize != 0 {
		if err := takeError(C.ofl_aggregator_server_options_set_max_message_size(opts, C.uint64_t(o.MaxMessageSize))); err != nil {
			return err
		}
	}
	if o.UploadMemoryBudget != 0 {
		if err := takeError(C.ofl_aggregator_server_options_set_upload_memory_budget(opts, C.uint64_t(o.UploadMemoryBudget))); err != nil {
			return err
		}
	}
	if o.MaxTensorsPerUpload != 0 {
		if err := takeError(C.ofl_aggregator_server_options_set_max_tensors_per_upload(opts, C.uint64_t(o.MaxTensorsPerUpload))); err != nil {
			return err
		}
	}
	if o.QuitPollInterval != 0 {
		ms, err := limitMillis("QuitPollInterval", o.QuitPollInterval)
		if err != nil {
			return err
		}
		if err := takeError(C.ofl_aggregator_server_options_set_quit_poll_interval_ms(opts, ms)); err != nil {
			return err
		}
	}
	return o.Limits.attach(func(l *C.ofl_server_limits) *C.ofl_error {
		return C.ofl_aggregator_server_options_set_limits(opts, l)
	})
}
