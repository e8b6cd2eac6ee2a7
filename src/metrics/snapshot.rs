//! The snapshot a host reads: [`TransportMetrics`].

use crate::error::ofl_code;

/// Status codes counted per RPC: the gRPC codes 0..=16.
pub const CODES: usize = 17;

/// Which side of which service the metrics belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// An aggregator server (collaborators call it).
    AggregatorServer,
    /// A director server (envoys and frontends call it).
    DirectorServer,
    /// A collaborator's client of an aggregator.
    AggregatorClient,
    /// An envoy's client of a director.
    EnvoyClient,
    /// A frontend's client of a director.
    FrontendClient,
}

impl Role {
    /// The `role` label: `aggregator_server`, `director_server`,
    /// `aggregator_client`, `envoy_client`, `frontend_client`.
    pub fn label(self) -> &'static str {
        match self {
            Role::AggregatorServer => "aggregator_server",
            Role::DirectorServer => "director_server",
            Role::AggregatorClient => "aggregator_client",
            Role::EnvoyClient => "envoy_client",
            Role::FrontendClient => "frontend_client",
        }
    }

    /// Whether this is a server's side.
    pub fn is_server(self) -> bool {
        matches!(self, Role::AggregatorServer | Role::DirectorServer)
    }
}

/// Why a peer's identity was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// The TLS handshake failed (certificate refused, unknown CA, plaintext
    /// spoken to TLS, ...).
    TlsHandshake = 0,
    /// The collaborator (header sender, or certificate CN) is not authorized.
    UnauthorizedCollaborator = 1,
    /// The certificate CN differs from the identity the call claims (header
    /// sender, envoy name, shared collaborator certificate CN).
    CnMismatch = 2,
}

impl AuthFailure {
    /// Every kind, in index order.
    pub const ALL: [AuthFailure; 3] =
        [AuthFailure::TlsHandshake, AuthFailure::UnauthorizedCollaborator, AuthFailure::CnMismatch];

    /// The `kind` label: `tls_handshake`, `unauthorized_collaborator`, `cn_mismatch`.
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::TlsHandshake => "tls_handshake",
            AuthFailure::UnauthorizedCollaborator => "unauthorized_collaborator",
            AuthFailure::CnMismatch => "cn_mismatch",
        }
    }
}

/// Why a server refused a call before its logic saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The caller's identity (UNAUTHENTICATED, or PERMISSION_DENIED for an
    /// unauthorized header sender).
    Identity = 0,
    /// A request header field that does not match (receiver, federation
    /// uuid, ...) or is missing (INVALID_ARGUMENT).
    BadHeader = 1,
    /// A limit: request or message size, upload memory budget, tensors per
    /// upload (RESOURCE_EXHAUSTED).
    Limits = 2,
}

impl Rejection {
    /// Every kind, in index order.
    pub const ALL: [Rejection; 3] = [Rejection::Identity, Rejection::BadHeader, Rejection::Limits];

    /// The `kind` label: `identity`, `bad_header`, `limits`.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Identity => "identity",
            Rejection::BadHeader => "bad_header",
            Rejection::Limits => "limits",
        }
    }
}

/// One RPC's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcMetrics {
    /// The method name (`GetTasks`, ...); `unknown` for paths that are not
    /// methods of the service.
    pub rpc: &'static str,
    /// Calls by status code: `calls[c]` ended with gRPC code `c` (0 = OK).
    pub calls: [u64; CODES],
    /// Message bytes received (see the module docs for what is counted).
    pub bytes_in: u64,
    /// Message bytes sent.
    pub bytes_out: u64,
}

impl RpcMetrics {
    /// Calls of this RPC, whatever their status.
    pub fn calls_total(&self) -> u64 {
        self.calls.iter().sum()
    }
}

/// A copy of one server's or client's counters at one moment (see
/// [`crate::metrics`] for what each counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportMetrics {
    /// Whose counters these are.
    pub role: Role,
    /// Every RPC of the service (zeros included), in the proto's order, then
    /// `unknown`.
    pub rpcs: Vec<RpcMetrics>,
    /// Authentication failures, indexed by [`AuthFailure`].
    pub auth_failures: [u64; 3],
    /// Rejected calls, indexed by [`Rejection`] (servers only).
    pub rejected: [u64; 3],
    /// Connections open now.
    pub active_connections: u64,
    /// Connections opened since the server or client was created.
    pub connections: u64,
    /// Calls in flight now.
    pub in_flight: u64,
    /// Retried attempts (clients only).
    pub retries: u64,
}

impl TransportMetrics {
    /// The counters of `rpc` (a method name such as `GetTasks`).
    pub fn rpc(&self, rpc: &str) -> Option<&RpcMetrics> {
        self.rpcs.iter().find(|r| r.rpc == rpc)
    }

    /// Calls of `rpc` (every RPC when `None`) that ended with `code`; 0 for
    /// library codes (100 and above), which never travel on the wire.
    pub fn calls(&self, rpc: Option<&str>, code: ofl_code) -> u64 {
        let index = code as usize;
        if index >= CODES {
            return 0;
        }
        self.selected(rpc).map(|r| r.calls[index]).sum()
    }

    /// Calls of `rpc` (every RPC when `None`), whatever their status.
    pub fn calls_total(&self, rpc: Option<&str>) -> u64 {
        self.selected(rpc).map(RpcMetrics::calls_total).sum()
    }

    /// Message bytes received by `rpc` (every RPC when `None`).
    pub fn bytes_in(&self, rpc: Option<&str>) -> u64 {
        self.selected(rpc).map(|r| r.bytes_in).sum()
    }

    /// Message bytes sent by `rpc` (every RPC when `None`).
    pub fn bytes_out(&self, rpc: Option<&str>) -> u64 {
        self.selected(rpc).map(|r| r.bytes_out).sum()
    }

    /// Authentication failures of one kind.
    pub fn auth_failures(&self, kind: AuthFailure) -> u64 {
        self.auth_failures[kind as usize]
    }

    /// Rejected calls of one kind.
    pub fn rejected(&self, kind: Rejection) -> u64 {
        self.rejected[kind as usize]
    }

    /// The Prometheus text exposition format (version 0.0.4) of this
    /// snapshot: metric families `openfl_transport_*` with HELP and TYPE
    /// lines and `role`, `rpc`, `code`, `kind` labels.
    pub fn prometheus(&self) -> String {
        super::prometheus::render(self)
    }

    fn selected<'a>(&'a self, rpc: Option<&'a str>) -> impl Iterator<Item = &'a RpcMetrics> + 'a {
        self.rpcs.iter().filter(move |r| rpc.map_or(true, |name| r.rpc == name))
    }
}

/// The canonical name of gRPC code `code` (`OK`, `CANCELLED`, ...).
pub(crate) fn code_name(code: usize) -> &'static str {
    const NAMES: [&str; CODES] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code).copied().unwrap_or("UNKNOWN")
}
