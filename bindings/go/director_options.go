package openfl

// #include "shim.h"
import "C"

import (
	"time"
)

// DirectorServerOptions configures StartDirectorServer. Zero fields keep
// the library defaults noted on each field.
type DirectorServerOptions struct {
	// Host and Port to listen on (OpenFL's listen_host, listen_port):
	// default "[::]" (every interface); port 0 picks a free port (see
	// DirectorServer.Port; OpenFL's default is 50051).
	Host string
	Port uint16
	// TLS settings; default mTLS (certificates required). Without TLS, or
	// for a caller that presents no certificate under DisableClientAuth,
	// callers are named by their client_id metadata, which any peer can set.
	TLS TLSConfig
	// SampleShape and TargetShape are the shapes every shard must report
	// to be accepted (UpdateShardInfo), as OpenFL writes them: "28", "28".
	SampleShape, TargetShape []string
	// EnvoyHealthCheckPeriod is how often envoys send health checks
	// (OpenFL's envoy_health_check_period); 0 means 60 s. An envoy is
	// online for two periods after its last check. Millisecond resolution.
	EnvoyHealthCheckPeriod time.Duration
	// ArchiveDir holds the experiment archives as <dir>/<name>.archive
	// (created if missing); "" means a fresh directory under the system's
	// temporary directory (see DirectorServer.ArchiveDir).
	ArchiveDir string
	// MaxArchiveSize is the largest archive SetNewExperiment accepts; 0
	// means 1 GiB (larger uploads get CodeResourceExhausted).
	MaxArchiveSize uint64
	// MaxMessageSize is the largest gRPC message received or sent; 0 means
	// 1 GiB (2^30, as OpenFL).
	MaxMessageSize uint64
	// MaxQueuedMetrics is how many metrics are kept per experiment until a
	// frontend streams them (the oldest is dropped beyond); 0 means 100 000.
	MaxQueuedMetrics int
	// NoEnvoyIdentityCheck lets, under mTLS, envoy RPCs come from any
	// certified peer whatever envoy name they carry (OpenFL checks nothing).
	// By default the certificate CN must be the envoy's name.
	NoEnvoyIdentityCheck bool
	// Limits bounds connections, streams and request sizes.
	Limits ServerLimits
}

func (o *DirectorServerOptions) build() (*C.ofl_director_server_options, error) {
	if err := checkString("Host", o.Host); err != nil {
		return nil, err
	}
	if err := checkString("ArchiveDir", o.ArchiveDir); err != nil {
		return nil, err
	}
	if err := o.TLS.check(); err != nil {
		return nil, err
	}
	if err := checkStrings("SampleShape", o.SampleShape); err != nil {
		return nil, err
	}
	if err := checkStrings("TargetShape", o.TargetShape); err != nil {
		return nil, err
	}
	var opts *C.ofl_director_server_options
	if err := takeError(C.ofl_director_server_options_new(&opts)); err != nil {
		return nil, err
	}
	var mem cstrings
	defer mem.free()
	if err := o.apply(opts, &mem); err != nil {
		C.ofl_director_server_options_free(opts)
		return nil, err
	}
	return opts, nil
}

func (o *DirectorServerOptions) apply(opts *C.ofl_director_server_options, mem *cstrings) error {
	if err := takeError(C.ofl_director_server_options_set_listen(opts, mem.str(listenHost(o.Host)), C.uint16_t(o.Port))); err != nil {
		return err
	}
	if err := o.TLS.attach(func(tls *C.ofl_tls_config) *C.ofl_error {
		return C.ofl_director_server_options_set_tls(opts, tls)
	}); err != nil {
		return err
	}
	if err := takeError(C.ofl_director_server_options_set_sample_shape(opts, mem.strs(o.SampleShape),
		C.size_t(len(o.SampleShape)))); err != nil {
		return err
	}
	if err := takeError(C.ofl_director_server_options_set_target_shape(opts, mem.strs(o.TargetShape),
		C.size_t(len(o.TargetShape)))); err != nil {
		return err
	}
	if o.EnvoyHealthCheckPeriod != 0 {
		ms := o.EnvoyHealthCheckPeriod.Milliseconds()
		if ms <= 0 {
			return invalidArgument("EnvoyHealthCheckPeriod %v is below 1 ms", o.EnvoyHealthCheckPeriod)
		}
		if err := takeError(C.ofl_director_server_options_set_envoy_health_check_period_ms(opts, C.uint64_t(ms))); err != nil {
			return err
		}
	}
	if o.ArchiveDir != "" {
		if err := takeError(C.ofl_director_server_options_set_archive_dir(opts, mem.str(o.ArchiveDir))); err != nil {
			return err
		}
	}
	if o.MaxArchiveSize != 0 {
		if err := takeError(C.ofl_director_server_options_set_max_archive_size(opts, C.uint64_t(o.MaxArchiveSize))); err != nil {
			return err
		}
	}
	if o.MaxMessageSize != 0 {
		if err := takeError(C.ofl_director_server_options_set_max_message_size(opts, C.uint64_t(o.MaxMessageSize))); err != nil {
			return err
		}
	}
	switch {
	case o.MaxQueuedMetrics > 0:
		if err := takeError(C.ofl_director_server_options_set_max_queued_metrics(opts, C.size_t(o.MaxQueuedMetrics))); err != nil {
			return err
		}
	case o.MaxQueuedMetrics < 0:
		return invalidArgument("MaxQueuedMetrics %d is negative", o.MaxQueuedMetrics)
	}
	if o.NoEnvoyIdentityCheck {
		if err := takeError(C.ofl_director_server_options_set_check_envoy_identity(opts, false)); err != nil {
			return err
		}
	}
	return o.Limits.attach(func(l *C.ofl_server_limits) *C.ofl_error {
		return C.ofl_director_server_options_set_limits(opts, l)
	})
}

// DirectorClientOptions configures NewEnvoyClient and NewFrontendClient.
// Zero fields keep the library defaults noted on each field.
type DirectorClientOptions struct {
	// Host and Port of the director (OpenFL's director_host, director_port).
	Host string
	Port uint16
	// TLS settings; default mTLS. An envoy's certificate CN must be its
	// shard name; a frontend's names it to the director (it sees only the
	// experiments submitted under that name).
	TLS TLSConfig
	// Connect: server name, retries, connect timeout, message size. A call
	// is repeated whole: an upload or download restarts from its first byte.
	Connect ConnectOptions
	// MaxArchiveSize (envoys) is the largest archive GetExperimentData
	// writes; 0 means 1 GiB (beyond, CodeResourceExhausted).
	MaxArchiveSize uint64
	// ClientID (frontends) is the client_id metadata sent with every call
	// (printable ASCII): it names the frontend to a director without TLS,
	// or under one-way TLS without a client certificate. "" sends none (the
	// director then says "__default__"). Envoys never send one, as in OpenFL.
	ClientID string
}

func (o *DirectorClientOptions) build() (*C.ofl_director_client_options, error) {
	for _, f := range []struct{ what, s string }{{"Host", o.Host}, {"ClientID", o.ClientID}} {
		if err := checkString(f.what, f.s); err != nil {
			return nil, err
		}
	}
	if err := o.TLS.check(); err != nil {
		return nil, err
	}
	var mem cstrings
	defer mem.free()
	var opts *C.ofl_director_client_options
	if err := takeError(C.ofl_director_client_options_new(mem.str(o.Host), C.uint16_t(o.Port), &opts)); err != nil {
		return nil, err
	}
	if err := o.apply(opts, &mem); err != nil {
		C.ofl_director_client_options_free(opts)
		return nil, err
	}
	return opts, nil
}

func (o *DirectorClientOptions) apply(opts *C.ofl_director_client_options, mem *cstrings) error {
	if err := o.TLS.attach(func(tls *C.ofl_tls_config) *C.ofl_error {
		return C.ofl_director_client_options_set_tls(opts, tls)
	}); err != nil {
		return err
	}
	if err := o.Connect.attach(func(c *C.ofl_connect_options) *C.ofl_error {
		return C.ofl_director_client_options_set_connect(opts, c)
	}); err != nil {
		return err
	}
	if o.MaxArchiveSize != 0 {
		if err := takeError(C.ofl_director_client_options_set_max_archive_size(opts, C.uint64_t(o.MaxArchiveSize))); err != nil {
			return err
		}
	}
	if o.ClientID != "" {
		if err := takeError(C.ofl_director_client_options_set_client_id(opts, mem.str(o.ClientID))); err != nil {
			return err
		}
	}
	return nil
}
