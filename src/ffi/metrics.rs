//! `ofl_metrics`: a snapshot of one server's or client's transport metrics,
//! its accessors, and its Prometheus text rendering.

use std::ffi::{c_char, CString};

use super::aggregator::client::ofl_aggregator_client;
use super::aggregator::server::ofl_aggregator_server;
use super::boundary::{arg_opt_str, arg_ref, check_out, ffi_fn, free_boxed, with_ref, write_out};
use super::director::envoy_client::ofl_envoy_client;
use super::director::frontend_client::ofl_frontend_client;
use super::director::server::ofl_director_server;
use super::director::types::ofl_string;
use crate::error::Result;
use crate::metrics::{AuthFailure, Rejection, Role, TransportMetrics};

/// Whose metrics a snapshot holds.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ofl_role {
    /// An aggregator server (`role="aggregator_server"`).
    AggregatorServer = 0,
    /// A director server (`role="director_server"`).
    DirectorServer = 1,
    /// A collaborator's aggregator client (`role="aggregator_client"`).
    AggregatorClient = 2,
    /// An envoy's director client (`role="envoy_client"`).
    EnvoyClient = 3,
    /// A frontend's director client (`role="frontend_client"`).
    FrontendClient = 4,
}

/// Kinds of authentication failure (`ofl_metrics_auth_failures`; Prometheus
/// `openfl_transport_auth_failures_total{kind=...}`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ofl_auth_failure {
    /// A TLS handshake failed: servers count handshakes that failed with a
    /// TLS error (unknown or missing client certificate, plaintext spoken to
    /// TLS, ...; a peer that just closes is not counted); clients count a
    /// handshake the server refused (`kind="tls_handshake"`).
    TlsHandshake = 0,
    /// The collaborator is not authorized: servers count refusals of a
    /// header sender or certificate CN missing from the authorized list;
    /// clients count UNAUTHENTICATED answers that do not name a CN mismatch
    /// (`kind="unauthorized_collaborator"`).
    UnauthorizedCollaborator = 1,
    /// The certificate CN differs from the identity the call claims (header
    /// sender, envoy name, shared collaborator CN) (`kind="cn_mismatch"`).
    CnMismatch = 2,
}

/// Kinds of call a server refused before its logic saw it
/// (`ofl_metrics_rejected`; `openfl_transport_rejected_calls_total{kind=...}`).
/// Every one is also logged at WARN with the peer's address and certificate
/// CN: the first of each kind, then at most one line per 30 s per kind,
/// which says how many were not logged since.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ofl_rejection {
    /// The caller's identity: UNAUTHENTICATED, or PERMISSION_DENIED for an
    /// unauthorized header sender or envoy (`kind="identity"`).
    Identity = 0,
    /// A request header field that is wrong or missing: receiver,
    /// federation uuid, single-certificate CN, client_id, envoy name
    /// (INVALID_ARGUMENT) (`kind="bad_header"`).
    BadHeader = 1,
    /// A limit: request or message size, upload memory budget, tensors per
    /// upload (RESOURCE_EXHAUSTED) (`kind="limits"`).
    Limits = 2,
}

/// A snapshot of one server's or client's transport metrics, taken when it
/// was created: its numbers do not change. Free with `ofl_metrics_free`;
/// immutable, so it may be read from several threads.
///
/// What is counted:
/// - calls: by RPC (method name, e.g. "GetTasks") and gRPC status code.
///   Servers count the status they answered; clients the status they
///   received, UNAVAILABLE for an attempt that got no answer (connection
///   refused, TLS failure), CANCELLED for one abandoned before its status.
///   A client's retried call counts once per attempt.
/// - bytes in and out: the gRPC messages as framed in HTTP/2 DATA frames,
///   i.e. each serialized protobuf message plus its 5-byte gRPC prefix
///   (HTTP/2 frame headers, HTTP headers, trailers and TLS records are not
///   counted). A GetAggregatedTensor reply is the tensor data plus its
///   fields and header (tens of bytes); an upload of task results is the
///   serialized TaskResults plus at most 16 bytes per 2 MiB chunk. Client
///   and server count the same bytes for the same calls.
/// - auth failures and rejected calls: see `ofl_auth_failure` and
///   `ofl_rejection` (rejected calls are counted by servers only).
/// - active connections (open now), connections (opened in total), calls
///   in flight now, and retries (clients: attempts after the first one of
///   a call).
#[allow(non_camel_case_types)]
pub struct ofl_metrics {
    inner: TransportMetrics,
    rpc_names: Vec<CString>,
}

fn write_metrics(out: *mut *mut ofl_metrics, inner: TransportMetrics) -> Result<()> {
    let rpc_names = inner.rpcs.iter().map(|r| CString::new(r.rpc).expect("method names have no NUL")).collect();
    write_out(out, ofl_metrics { inner, rpc_names });
    Ok(())
}

ffi_fn! {
    /// A snapshot of the aggregator server's transport metrics, written to
    /// `*out` (free with `ofl_metrics_free`). Cheap (a copy of counters); may
    /// be called from any thread at any time, while the server serves.
    fn ofl_aggregator_server_metrics(
        server: *const ofl_aggregator_server,
        out: *mut *mut ofl_metrics,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        write_metrics(out, arg_ref(server, "server")?.inner.metrics())
    }
}

ffi_fn! {
    /// A snapshot of the director server's transport metrics (as
    /// `ofl_aggregator_server_metrics`).
    fn ofl_director_server_metrics(server: *const ofl_director_server, out: *mut *mut ofl_metrics) -> *mut ofl_error {
        check_out(out, "out")?;
        write_metrics(out, arg_ref(server, "server")?.inner.metrics())
    }
}

ffi_fn! {
    /// A snapshot of the collaborator client's transport metrics (as
    /// `ofl_aggregator_server_metrics`; calls in progress on other threads
    /// count as in flight).
    fn ofl_aggregator_client_metrics(client: *const ofl_aggregator_client, out: *mut *mut ofl_metrics) -> *mut ofl_error {
        check_out(out, "out")?;
        write_metrics(out, arg_ref(client, "client")?.inner.metrics())
    }
}

ffi_fn! {
    /// A snapshot of the envoy client's transport metrics.
    fn ofl_envoy_client_metrics(client: *const ofl_envoy_client, out: *mut *mut ofl_metrics) -> *mut ofl_error {
        check_out(out, "out")?;
        write_metrics(out, arg_ref(client, "client")?.inner.metrics())
    }
}

ffi_fn! {
    /// A snapshot of the frontend client's transport metrics.
    fn ofl_frontend_client_metrics(client: *const ofl_frontend_client, out: *mut *mut ofl_metrics) -> *mut ofl_error {
        check_out(out, "out")?;
        write_metrics(out, arg_ref(client, "client")?.inner.metrics())
    }
}

ffi_fn! {
    /// Frees a snapshot. NULL is a no-op.
    fn ofl_metrics_free(metrics: *mut ofl_metrics) {
        free_boxed(metrics)
    }
}

ffi_fn! {
    /// Whose metrics these are. NULL gives OFL_ROLE_AGGREGATOR_SERVER.
    fn ofl_metrics_role(metrics: *const ofl_metrics) -> ofl_role {
        with_ref(metrics, ofl_role::AggregatorServer, |m| match m.inner.role {
            Role::AggregatorServer => ofl_role::AggregatorServer,
            Role::DirectorServer => ofl_role::DirectorServer,
            Role::AggregatorClient => ofl_role::AggregatorClient,
            Role::EnvoyClient => ofl_role::EnvoyClient,
            Role::FrontendClient => ofl_role::FrontendClient,
        })
    } ?= ofl_role::AggregatorServer
}

ffi_fn! {
    /// How many RPCs the snapshot lists: every method of the service
    /// (aggregator: GetTasks, GetAggregatedTensor, SendLocalTaskResults,
    /// GetMetricStream, GetTrainedModel, GetExperimentDescription; envoy and
    /// frontend clients: the director methods each calls; director: all),
    /// in the proto's order, then "unknown" (paths that are no method of the
    /// service). 0 for NULL.
    fn ofl_metrics_rpc_count(metrics: *const ofl_metrics) -> usize {
        with_ref(metrics, 0, |m| m.rpc_names.len())
    } ?= 0
}

ffi_fn! {
    /// The name of RPC `index` (e.g. "GetTasks"), valid until
    /// `ofl_metrics_free`; NULL when out of range or `metrics` is NULL.
    fn ofl_metrics_rpc_name(metrics: *const ofl_metrics, index: usize) -> *const c_char {
        with_ref(metrics, std::ptr::null(), |m| m.rpc_names.get(index).map_or(std::ptr::null(), |n| n.as_ptr()))
    } ?= std::ptr::null()
}

/// The RPC filter of an accessor: NULL is every RPC; a name that is not
/// valid UTF-8 matches none.
fn rpc_filter<'a>(rpc: *const c_char) -> std::result::Result<Option<&'a str>, ()> {
    arg_opt_str(rpc, "rpc").map_err(|_| ())
}

fn by_rpc(metrics: *const ofl_metrics, rpc: *const c_char, f: impl Fn(&TransportMetrics, Option<&str>) -> u64) -> u64 {
    with_ref(metrics, 0, |m| rpc_filter(rpc).map_or(0, |rpc| f(&m.inner, rpc)))
}

ffi_fn! {
    /// Calls of `rpc` (a name from `ofl_metrics_rpc_name`, e.g. "GetTasks";
    /// NULL for every RPC) that ended with `code` (an `ofl_code` value from
    /// 0 to 16, the gRPC codes). 0 for other codes, unknown names, or NULL
    /// `metrics`.
    fn ofl_metrics_calls(metrics: *const ofl_metrics, rpc: *const c_char, code: i32) -> u64 {
        by_rpc(metrics, rpc, |m, rpc| {
            let index = usize::try_from(code).ok().filter(|c| *c < crate::metrics::CODES);
            index.map_or(0, |c| m.rpcs.iter().filter(|r| rpc.map_or(true, |n| r.rpc == n)).map(|r| r.calls[c]).sum())
        })
    } ?= 0
}

ffi_fn! {
    /// Calls of `rpc` (NULL: every RPC), whatever their status.
    fn ofl_metrics_calls_total(metrics: *const ofl_metrics, rpc: *const c_char) -> u64 {
        by_rpc(metrics, rpc, TransportMetrics::calls_total)
    } ?= 0
}

ffi_fn! {
    /// Message bytes received by `rpc` (NULL: every RPC): requests on a
    /// server, replies on a client (see `ofl_metrics` for what is counted).
    fn ofl_metrics_bytes_in(metrics: *const ofl_metrics, rpc: *const c_char) -> u64 {
        by_rpc(metrics, rpc, TransportMetrics::bytes_in)
    } ?= 0
}

ffi_fn! {
    /// Message bytes sent by `rpc` (NULL: every RPC): replies on a server,
    /// requests on a client.
    fn ofl_metrics_bytes_out(metrics: *const ofl_metrics, rpc: *const c_char) -> u64 {
        by_rpc(metrics, rpc, TransportMetrics::bytes_out)
    } ?= 0
}

ffi_fn! {
    /// Authentication failures of `kind` (an `ofl_auth_failure` value); 0
    /// for other values or NULL.
    fn ofl_metrics_auth_failures(metrics: *const ofl_metrics, kind: i32) -> u64 {
        with_ref(metrics, 0, |m| {
            let kind = AuthFailure::ALL.into_iter().find(|k| *k as i32 == kind);
            kind.map_or(0, |k| m.inner.auth_failures(k))
        })
    } ?= 0
}

ffi_fn! {
    /// Calls a server rejected, of `kind` (an `ofl_rejection` value); 0 for
    /// other values, NULL, and clients.
    fn ofl_metrics_rejected(metrics: *const ofl_metrics, kind: i32) -> u64 {
        with_ref(metrics, 0, |m| {
            let kind = Rejection::ALL.into_iter().find(|k| *k as i32 == kind);
            kind.map_or(0, |k| m.inner.rejected(k))
        })
    } ?= 0
}

ffi_fn! {
    /// Connections open when the snapshot was taken (a server: accepted
    /// connections, TLS handshakes in progress included; a client: 0 or 1,
    /// its one shared connection). 0 for NULL.
    fn ofl_metrics_active_connections(metrics: *const ofl_metrics) -> u64 {
        with_ref(metrics, 0, |m| m.inner.active_connections)
    } ?= 0
}

ffi_fn! {
    /// Connections opened since the server or client was created. 0 for NULL.
    fn ofl_metrics_connections(metrics: *const ofl_metrics) -> u64 {
        with_ref(metrics, 0, |m| m.inner.connections)
    } ?= 0
}

ffi_fn! {
    /// Calls in flight when the snapshot was taken. 0 for NULL.
    fn ofl_metrics_in_flight(metrics: *const ofl_metrics) -> u64 {
        with_ref(metrics, 0, |m| m.inner.in_flight)
    } ?= 0
}

ffi_fn! {
    /// Retried attempts of a client's calls (attempts after the first of
    /// each call); 0 for servers and NULL.
    fn ofl_metrics_retries(metrics: *const ofl_metrics) -> u64 {
        with_ref(metrics, 0, |m| m.inner.retries)
    } ?= 0
}

ffi_fn! {
    /// The snapshot in the Prometheus text exposition format (version
    /// 0.0.4: serve it with `Content-Type: text/plain; version=0.0.4`),
    /// written to `*out` (free with `ofl_string_free`). Families, each with
    /// HELP and TYPE lines, every sample labelled `role` (see
    /// `ofl_role`):
    /// `openfl_transport_calls_total{rpc,code}` (counter; code is the gRPC
    /// name, e.g. "OK", "UNAVAILABLE"; listed for the pairs seen),
    /// `openfl_transport_received_bytes_total{rpc}` and
    /// `openfl_transport_sent_bytes_total{rpc}` (counters, every RPC),
    /// `openfl_transport_auth_failures_total{kind}` (tls_handshake,
    /// unauthorized_collaborator, cn_mismatch),
    /// `openfl_transport_rejected_calls_total{kind}` (identity, bad_header,
    /// limits), `openfl_transport_active_connections` (gauge),
    /// `openfl_transport_connections_total`,
    /// `openfl_transport_in_flight_calls` (gauge),
    /// `openfl_transport_retries_total`. Several servers and clients in
    /// one process differ by `role`; a host exposing two of the same role
    /// adds its own label.
    fn ofl_metrics_prometheus(metrics: *const ofl_metrics, out: *mut *mut ofl_string) -> *mut ofl_error {
        check_out(out, "out")?;
        let metrics = arg_ref(metrics, "metrics")?;
        write_out(out, ofl_string::new(&metrics.inner.prometheus()));
        Ok(())
    }
}
