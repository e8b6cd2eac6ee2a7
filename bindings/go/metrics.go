package openfl

// #include "shim.h"
import "C"

// MetricsRole says whose metrics a Metrics snapshot holds; its String is
// the Prometheus role label.
type MetricsRole int32

const (
	RoleAggregatorServer MetricsRole = 0
	RoleDirectorServer   MetricsRole = 1
	RoleAggregatorClient MetricsRole = 2
	RoleEnvoyClient      MetricsRole = 3
	RoleFrontendClient   MetricsRole = 4
)

func (r MetricsRole) String() string {
	switch r {
	case RoleAggregatorServer:
		return "aggregator_server"
	case RoleDirectorServer:
		return "director_server"
	case RoleAggregatorClient:
		return "aggregator_client"
	case RoleEnvoyClient:
		return "envoy_client"
	case RoleFrontendClient:
		return "frontend_client"
	}
	return "unknown"
}

// RPCMetrics are one RPC's counters.
type RPCMetrics struct {
	// Name is the method name ("GetTasks"), or "unknown" for paths that
	// are no method of the service.
	Name string
	// Calls counts the calls by the gRPC code they ended with (codes 0 to
	// 16; only codes seen are present).
	Calls map[Code]uint64
	// BytesIn and BytesOut are message bytes received and sent: each
	// serialized message plus its 5-byte gRPC prefix.
	BytesIn, BytesOut uint64
}

// AuthFailures are authentication failures by kind (see the C header's
// ofl_auth_failure).
type AuthFailures struct {
	TLSHandshake             uint64
	UnauthorizedCollaborator uint64
	CNMismatch               uint64
}

// Rejections are calls a server refused before its logic saw them, by
// kind (see the C header's ofl_rejection).
type Rejections struct {
	Identity  uint64
	BadHeader uint64
	Limits    uint64
}

// Metrics is a snapshot of one server's or client's transport metrics
// (the C header's ofl_metrics documents every counter). Get one from
// Metrics() on a server or client.
type Metrics struct {
	Role MetricsRole
	// RPCs lists every RPC of the service, in the proto's order, then "unknown".
	RPCs              []RPCMetrics
	AuthFailures      AuthFailures
	Rejected          Rejections
	ActiveConnections uint64 // open now
	Connections       uint64 // opened in total
	InFlight          uint64 // calls in flight now
	Retries           uint64 // client attempts after the first one of a call
	prometheus        string
}

// Calls is the number of calls of rpc ("" for every RPC) that ended with code.
func (m *Metrics) Calls(rpc string, code Code) uint64 {
	var n uint64
	for _, r := range m.RPCs {
		if rpc == "" || r.Name == rpc {
			n += r.Calls[code]
		}
	}
	return n
}

// CallsTotal is the number of calls of rpc ("" for every RPC).
func (m *Metrics) CallsTotal(rpc string) uint64 {
	var n uint64
	for _, r := range m.RPCs {
		if rpc == "" || r.Name == rpc {
			for _, c := range r.Calls {
				n += c
			}
		}
	}
	return n
}

// RPC returns the counters of rpc, if it is a method of the service.
func (m *Metrics) RPC(rpc string) (RPCMetrics, bool) {
	for _, r := range m.RPCs {
		if r.Name == rpc {
			return r, true
		}
	}
	return RPCMetrics{}, false
}

// Prometheus is the snapshot in the Prometheus text exposition format
// (version 0.0.4): openfl_transport_* families with HELP and TYPE lines.
func (m *Metrics) Prometheus() string { return m.prometheus }

// takeMetrics copies a library snapshot into Go and frees it.
func takeMetrics(raw *C.ofl_metrics) (*Metrics, error) {
	defer C.ofl_metrics_free(raw)
	m := &Metrics{
		Role: MetricsRole(C.ofl_metrics_role(raw)),
		AuthFailures: AuthFailures{
			TLSHandshake:             uint64(C.ofl_metrics_auth_failures(raw, C.OFL_AUTH_FAILURE_TLS_HANDSHAKE)),
			UnauthorizedCollaborator: uint64(C.ofl_metrics_auth_failures(raw, C.OFL_AUTH_FAILURE_UNAUTHORIZED_COLLABORATOR)),
			CNMismatch:               uint64(C.ofl_metrics_auth_failures(raw, C.OFL_AUTH_FAILURE_CN_MISMATCH)),
		},
		Rejected: Rejections{
			Identity:  uint64(C.ofl_metrics_rejected(raw, C.OFL_REJECTION_IDENTITY)),
			BadHeader: uint64(C.ofl_metrics_rejected(raw, C.OFL_REJECTION_BAD_HEADER)),
			Limits:    uint64(C.ofl_metrics_rejected(raw, C.OFL_REJECTION_LIMITS)),
		},
		ActiveConnections: uint64(C.ofl_metrics_active_connections(raw)),
		Connections:       uint64(C.ofl_metrics_connections(raw)),
		InFlight:          uint64(C.ofl_metrics_in_flight(raw)),
		Retries:           uint64(C.ofl_metrics_retries(raw)),
	}
	n := int(C.ofl_metrics_rpc_count(raw))
	for i := 0; i < n; i++ {
		name := C.ofl_metrics_rpc_name(raw, C.size_t(i))
		r := RPCMetrics{
			Name:     C.GoString(name),
			Calls:    map[Code]uint64{},
			BytesIn:  uint64(C.ofl_metrics_bytes_in(raw, name)),
			BytesOut: uint64(C.ofl_metrics_bytes_out(raw, name)),
		}
		for code := Code(0); code <= CodeUnauthenticated; code++ {
			if c := uint64(C.ofl_metrics_calls(raw, name, C.int32_t(code))); c > 0 {
				r.Calls[code] = c
			}
		}
		m.RPCs = append(m.RPCs, r)
	}
	var text *C.ofl_string
	if err := takeError(C.ofl_metrics_prometheus(raw, &text)); err != nil {
		return nil, err
	}
	defer C.ofl_string_free(text)
	m.prometheus = C.GoStringN(C.ofl_string_get(text), C.int(C.ofl_string_len(text)))
	return m, nil
}

// metricsOf takes a snapshot through get (one of the ofl_*_metrics).
func metricsOf[P any](p *P, get func(*P, **C.ofl_metrics) *C.ofl_error) (*Metrics, error) {
	var raw *C.ofl_metrics
	if err := takeError(get(p, &raw)); err != nil {
		return nil, err
	}
	return takeMetrics(raw)
}

// Metrics is a snapshot of the client's transport metrics.
func (c *AggregatorClient) Metrics() (*Metrics, error) {
	p, err := c.core.acquire("Metrics")
	if err != nil {
		return nil, err
	}
	defer c.core.release()
	return metricsOf(p, func(p *C.ofl_aggregator_client, out **C.ofl_metrics) *C.ofl_error {
		return C.ofl_aggregator_client_metrics(p, out)
	})
}

// Metrics is a snapshot of the server's transport metrics.
func (s *AggregatorServer) Metrics() (*Metrics, error) {
	p, err := s.life.acquire("Metrics")
	if err != nil {
		return nil, err
	}
	defer s.life.release()
	return metricsOf(p, func(p *C.ofl_aggregator_server, out **C.ofl_metrics) *C.ofl_error {
		return C.ofl_aggregator_server_metrics(p, out)
	})
}

// Metrics is a snapshot of the server's transport metrics.
func (s *DirectorServer) Metrics() (*Metrics, error) {
	p, err := s.life.acquire("Metrics")
	if err != nil {
		return nil, err
	}
	defer s.life.release()
	return metricsOf(p, func(p *C.ofl_director_server, out **C.ofl_metrics) *C.ofl_error {
		return C.ofl_director_server_metrics(p, out)
	})
}

// Metrics is a snapshot of the client's transport metrics (every call
// counts: calls under a cancellable context use the same client).
func (c *EnvoyClient) Metrics() (*Metrics, error) {
	p, err := c.core.acquire("Metrics")
	if err != nil {
		return nil, err
	}
	defer c.core.release()
	return metricsOf(p, func(p *C.ofl_envoy_client, out **C.ofl_metrics) *C.ofl_error {
		return C.ofl_envoy_client_metrics(p, out)
	})
}

// Metrics is a snapshot of the client's transport metrics.
func (c *FrontendClient) Metrics() (*Metrics, error) {
	p, err := c.core.acquire("Metrics")
	if err != nil {
		return nil, err
	}
	defer c.core.release()
	return metricsOf(p, func(p *C.ofl_frontend_client, out **C.ofl_metrics) *C.ofl_error {
		return C.ofl_frontend_client_metrics(p, out)
	})
}
