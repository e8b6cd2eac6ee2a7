//! Transport metrics: what every server and client of this crate counts
//! (calls by RPC and status code, message bytes, authentication failures,
//! rejected calls, connections, calls in flight, retries), read as a
//! [`TransportMetrics`] snapshot and rendered in the Prometheus text format.
//!
//! Counting is lock-free (relaxed atomics, a few per call and one per body
//! frame); only a rejected call takes a lock, for its rate-limited WARN line
//! (`refusal.rs`). Servers count in the connection layer (`connection.rs`),
//! clients in a channel wrapper ([`client`]).
//!
//! What the counters mean:
//! - calls: one per call that reached the wire, by the status it ended with
//!   (servers: the status answered; clients: the status received, UNAVAILABLE
//!   when the call failed before an answer, CANCELLED when it was dropped
//!   before its status). A client's retried call counts once per attempt.
//! - bytes in and out: the bytes of gRPC messages as framed in HTTP/2 DATA
//!   frames: each serialized protobuf message plus its 5-byte gRPC prefix
//!   (HTTP/2 frame headers, HTTP headers, trailers and TLS records are not
//!   counted). A SendLocalTaskResults upload of an `n`-byte TaskResults in
//!   `k` chunks is `n` plus at most 16 bytes per chunk (prefix, DataStream
//!   field tags and lengths).
//! - auth failures: TLS handshakes that failed (servers: a TLS error from the
//!   peer's handshake, e.g. an unknown or missing client certificate, or a
//!   peer speaking plaintext; clients: the handshake or the server's alert
//!   after it), calls refused because the collaborator is not authorized,
//!   and calls whose certificate CN does not match the identity claimed.
//! - rejected calls (servers): refused before the logic saw them, by
//!   identity, by a bad request header, or by a limit (request size, upload
//!   memory budget, tensors per upload).
//! - connections: open now (gauge) and opened in total (counter).
//! - in flight: calls started whose status is not known yet.
//! - retries (clients): attempts after the first one of a call.

pub(crate) mod body;
pub(crate) mod client;
mod prometheus;
pub(crate) mod recorder;
pub(crate) mod refusal;
mod snapshot;

pub(crate) use recorder::Recorder;
pub(crate) use refusal::{refused, Refusal};
pub use snapshot::{AuthFailure, Rejection, Role, RpcMetrics, TransportMetrics, CODES};

/// The aggregator service's methods, in the order of the proto.
pub(crate) const AGGREGATOR_RPCS: &[&str] = &[
    "GetTasks",
    "GetAggregatedTensor",
    "SendLocalTaskResults",
    "GetMetricStream",
    "GetTrainedModel",
    "GetExperimentDescription",
];

/// The director's methods an envoy calls.
pub(crate) const ENVOY_RPCS: &[&str] =
    &["UpdateShardInfo", "WaitExperiment", "GetExperimentData", "UpdateEnvoyStatus", "SetExperimentFailed"];

/// The director's methods a frontend calls.
pub(crate) const FRONTEND_RPCS: &[&str] = &[
    "GetExperimentDescription",
    "GetExperimentsList",
    "SetNewExperiment",
    "GetExperimentStatus",
    "GetDatasetInfo",
    "GetTrainedModel",
    "GetMetricStream",
    "RemoveExperimentData",
    "GetEnvoys",
];

/// Every director method, in the order of the proto.
pub(crate) const DIRECTOR_RPCS: &[&str] = &[
    "UpdateShardInfo",
    "WaitExperiment",
    "GetExperimentData",
    "UpdateEnvoyStatus",
    "SetExperimentFailed",
    "GetExperimentDescription",
    "GetExperimentsList",
    "SetNewExperiment",
    "GetExperimentStatus",
    "GetDatasetInfo",
    "GetTrainedModel",
    "GetMetricStream",
    "RemoveExperimentData",
    "GetEnvoys",
];
