//! Transport metrics (issue 9, item 6): servers and clients count calls by
//! RPC and status code, message bytes, authentication failures, rejected
//! calls, connections, calls in flight and retries; the snapshot renders as
//! Prometheus text; every refused call is logged at WARN with the peer's
//! address and certificate CN, rate-limited.

mod common;
mod director_common;

use std::collections::HashMap;
use std::sync::{Mutex, Once};
use std::time::Duration;

use common::*;
use openfl_transport::aggregator::{AggregatorClient, Federation, TensorRequest};
use openfl_transport::metrics::{AuthFailure, Rejection, Role, TransportMetrics};
use openfl_transport::ofl_code;

// ---------------------------------------------------------------------------
// Captured WARN records (tests run in parallel: each looks for its own)
// ---------------------------------------------------------------------------

static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            RECORDS.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Warn);
    });
}

/// WARN records containing every one of `needles`.
fn warnings(needles: &[&str]) -> usize {
    RECORDS.lock().unwrap().iter().filter(|m| needles.iter().all(|n| m.contains(n))).count()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Polls `metrics` until `done` holds (connections close asynchronously).
async fn eventually(what: &str, metrics: impl Fn() -> TransportMetrics, done: impl Fn(&TransportMetrics) -> bool) {
    for _ in 0..200 {
        if done(&metrics()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: {:?}", metrics());
}

/// Parses Prometheus text back into `name{labels} -> value`, checking the
/// format on the way: every sample belongs to the family declared by the
/// last TYPE line, whose HELP line came first; label values are quoted.
fn parse_prometheus(text: &str) -> HashMap<String, u64> {
    let mut samples = HashMap::new();
    let (mut help, mut family) = (None::<String>, None::<String>);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            assert_eq!(help.as_ref(), Some(&name), "TYPE without HELP: {line}");
            assert!(matches!(parts.next(), Some("counter" | "gauge")), "{line}");
            family = Some(name);
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
            let name = series.split('{').next().unwrap();
            assert!(name.starts_with("openfl_transport_"), "{line}");
            assert_eq!(Some(name), family.as_deref(), "sample outside its family: {line}");
            let labels = series[name.len()..].trim_start_matches('{').trim_end_matches('}');
            for label in labels.split(',') {
                let (key, quoted) = label.split_once('=').unwrap_or_else(|| panic!("bad label in {line}"));
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                assert!(quoted.starts_with('"') && quoted.ends_with('"') && quoted.len() >= 2, "{line}");
            }
            samples.insert(series.to_string(), value.parse().unwrap_or_else(|_| panic!("bad value: {line}")));
        }
    }
    samples
}

fn calls(m: &TransportMetrics, rpc: &str, code: ofl_code) -> u64 {
    m.calls(Some(rpc), code)
}

/// A client of the test federation whose calls fail at once (no retries
/// of UNAVAILABLE beyond 2 s).
fn client_with(port: u16, identity_name: &str, tweak: impl FnOnce(&mut Federation)) -> AggregatorClient {
    let mut config = client_config(port, Some(client_tls(identity(identity_name))));
    config.retry = short_retry();
    tweak(&mut config.federation);
    AggregatorClient::new(config).expect("client")
}

// ---------------------------------------------------------------------------
// Calls, bytes, connections: both sides count the same
// ---------------------------------------------------------------------------

const TENSOR_LEN: usize = 300_000;
const UPLOAD_LEN: usize = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_bytes_and_connections_are_counted_on_both_sides() {
    let logic = TestLogic::new();
    logic.set_tensor(tensor("w", TENSOR_LEN, 7));
    let server = start_server(Some(server_tls()), logic).await;
    let port = server.local_addr().port();
    let client = client_with(port, "col1", |_| {});
    assert_eq!(client.metrics().role, Role::AggregatorClient);
    assert_eq!(client.metrics().calls_total(None), 0);

    for _ in 0..5 {
        within(20, client.get_tasks("col1")).await.expect("GetTasks");
    }
    let request = TensorRequest { tensor_name: "w".into(), ..Default::default() };
    for _ in 0..3 {
        within(20, client.get_aggregated_tensor("col1", &request)).await.expect("GetAggregatedTensor");
    }
    let results = task_results(UPLOAD_LEN, 3);
    for _ in 0..2 {
        within(20, client.send_local_task_results("col1", &results)).await.expect("SendLocalTaskResults");
    }

    let s = server.metrics();
    let c = client.metrics();
    assert_eq!(s.role, Role::AggregatorServer);
    for m in [&s, &c] {
        assert_eq!(calls(m, "GetTasks", ofl_code::Ok), 5, "{m:?}");
        assert_eq!(calls(m, "GetAggregatedTensor", ofl_code::Ok), 3, "{m:?}");
        assert_eq!(calls(m, "SendLocalTaskResults", ofl_code::Ok), 2, "{m:?}");
        assert_eq!(m.calls_total(None), 10, "{m:?}");
        assert_eq!(m.in_flight, 0);
    }
    // Both ends count the same message bytes.
    for rpc in ["GetTasks", "GetAggregatedTensor", "SendLocalTaskResults"] {
        assert_eq!(s.bytes_in(Some(rpc)), c.bytes_out(Some(rpc)), "{rpc} requests");
        assert_eq!(s.bytes_out(Some(rpc)), c.bytes_in(Some(rpc)), "{rpc} replies");
    }
    // A download is the tensor plus its message (prefix, header, fields):
    // exactly TENSOR_LEN plus a small overhead each.
    let down = s.bytes_out(Some("GetAggregatedTensor"));
    assert!(down >= 3 * (TENSOR_LEN as u64 + 5) && down <= 3 * (TENSOR_LEN as u64 + 256), "{down}");
    // An upload is the TaskResults message (both tensors, header, fields) in
    // one chunk: plus at most 16 bytes of framing per chunk.
    let tensors = (UPLOAD_LEN + 64) as u64;
    let up = s.bytes_in(Some("SendLocalTaskResults"));
    assert!(up >= 2 * tensors && up <= 2 * (tensors + 512), "{up}");
    assert_eq!(s.bytes_in(Some("GetTasks")) % 5, 0, "five identical requests");

    // One connection each side while the client lives.
    assert_eq!(c.active_connections, 1);
    assert_eq!(c.connections, 1);
    assert_eq!(s.active_connections, 1);
    assert_eq!(c.retries, 0);
    assert_eq!(s.auth_failures, [0; 3]);
    assert_eq!(s.rejected, [0; 3]);

    // Prometheus text, parsed back.
    let text = parse_prometheus(&s.prometheus());
    let role = "role=\"aggregator_server\"";
    assert_eq!(text[&format!("openfl_transport_calls_total{{{role},rpc=\"GetTasks\",code=\"OK\"}}")], 5);
    assert_eq!(text[&format!("openfl_transport_calls_total{{{role},rpc=\"SendLocalTaskResults\",code=\"OK\"}}")], 2);
    assert_eq!(text[&format!("openfl_transport_sent_bytes_total{{{role},rpc=\"GetAggregatedTensor\"}}")], down);
    assert_eq!(text[&format!("openfl_transport_received_bytes_total{{{role},rpc=\"SendLocalTaskResults\"}}")], up);
    assert_eq!(text[&format!("openfl_transport_active_connections{{{role}}}")], 1);
    assert_eq!(text[&format!("openfl_transport_in_flight_calls{{{role}}}")], 0);
    let client_text = parse_prometheus(&c.prometheus());
    assert_eq!(client_text["openfl_transport_calls_total{role=\"aggregator_client\",rpc=\"GetTasks\",code=\"OK\"}"], 5);

    // Closing the client closes its connection on both sides.
    client.close();
    eventually("client connection closed", || client.metrics(), |m| m.active_connections == 0).await;
    eventually("server connection closed", || server.metrics(), |m| m.active_connections == 0).await;
    assert_eq!(server.metrics().connections, 1);
}

// ---------------------------------------------------------------------------
// Refusals: identity, headers, limits, TLS handshakes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_are_counted_by_kind_and_logged_with_peer_and_cn() {
    capture_logs();
    let mut config = server_config(0, Some(server_tls()));
    config.max_tensors_per_upload = 1;
    let server = start_server_with(config, TestLogic::new()).await;
    let port = server.local_addr().port();

    // col3 is not authorized: twice.
    let stranger = client_with(port, "col3", |_| {});
    for _ in 0..2 {
        assert_error(within(20, stranger.get_tasks("col3")).await, ofl_code::Unauthenticated, "col3");
    }
    // col1's certificate claiming to be col2.
    let impostor = client_with(port, "col1", |_| {});
    assert_error(within(20, impostor.get_tasks("col2")).await, ofl_code::Unauthenticated, "differs");
    // A wrong federation uuid in the header.
    let lost = client_with(port, "col1", |f| f.federation_uuid = "another-federation".into());
    assert_error(within(20, lost.get_tasks("col1")).await, ofl_code::InvalidArgument, "federation_uuid");
    // An upload over the server's tensor limit (task_results has two).
    let big = within(20, impostor.send_local_task_results("col1", &task_results(1000, 1))).await;
    assert_error(big, ofl_code::ResourceExhausted, "");

    let s = server.metrics();
    assert_eq!(s.auth_failures(AuthFailure::UnauthorizedCollaborator), 2, "{s:?}");
    assert_eq!(s.auth_failures(AuthFailure::CnMismatch), 1, "{s:?}");
    assert_eq!(s.auth_failures(AuthFailure::TlsHandshake), 0, "{s:?}");
    assert_eq!(s.rejected(Rejection::Identity), 3, "{s:?}");
    assert_eq!(s.rejected(Rejection::BadHeader), 1, "{s:?}");
    assert_eq!(s.rejected(Rejection::Limits), 1, "{s:?}");
    assert_eq!(calls(&s, "GetTasks", ofl_code::Unauthenticated), 3);
    assert_eq!(calls(&s, "GetTasks", ofl_code::InvalidArgument), 1);
    assert_eq!(calls(&s, "SendLocalTaskResults", ofl_code::ResourceExhausted), 1);
    assert_eq!(s.active_connections, 3);
    // The clients see the same answers; theirs are identity failures too.
    assert_eq!(stranger.metrics().auth_failures(AuthFailure::UnauthorizedCollaborator), 2);
    assert_eq!(impostor.metrics().auth_failures(AuthFailure::CnMismatch), 1);
    assert_eq!(calls(&lost.metrics(), "GetTasks", ofl_code::InvalidArgument), 1);

    // Logged at WARN with the peer's address and certificate CN: the first
    // of each kind, the second unauthorized one suppressed (30 s limit).
    let port_text = format!("aggregator_server: refused a GetTasks call from 127.0.0.1:");
    assert_eq!(warnings(&[&port_text, "certificate CN |col3|", "unauthorized collaborator"]), 1);
    assert_eq!(warnings(&[&port_text, "certificate CN |col1|", "certificate CN mismatch"]), 1);
    assert_eq!(warnings(&[&port_text, "certificate CN |col1|", "bad request header", "federation_uuid"]), 1);
    assert_eq!(warnings(&["refused a SendLocalTaskResults call from 127.0.0.1:", "over a limit"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_handshake_is_counted_on_both_sides_and_logged() {
    capture_logs();
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let port = server.local_addr().port();
    // A client without a certificate, against mTLS: refused in the handshake.
    let mut config = client_config(port, Some(client_tls_without_cert()));
    config.retry = short_retry();
    let client = AggregatorClient::new(config).expect("client");
    let result = within(20, client.get_tasks("col1")).await;
    assert_eq!(result.expect_err("refused").code(), ofl_code::Tls);

    eventually("server counted the handshake", || server.metrics(), |m| {
        m.auth_failures(AuthFailure::TlsHandshake) == 1
    })
    .await;
    let s = server.metrics();
    assert_eq!(s.calls_total(None), 0, "no call reached the server: {s:?}");
    let c = client.metrics();
    assert_eq!(c.auth_failures(AuthFailure::TlsHandshake), 1, "{c:?}");
    assert_eq!(calls(&c, "GetTasks", ofl_code::Unavailable), 1, "{c:?}");
    assert_eq!(c.retries, 0, "TLS failures are not retried");
    assert!(warnings(&["aggregator_server: TLS handshake from 127.0.0.1:"]) >= 1, "{:?}", RECORDS.lock().unwrap());
    eventually("server connection closed", || server.metrics(), |m| m.active_connections == 0).await;
}

// ---------------------------------------------------------------------------
// Client retries
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_retries_count_every_attempt_after_the_first() {
    let port = free_port();
    let mut config = client_config(port, None);
    config.retry = openfl_transport::RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(40),
        deadline: Some(Duration::from_millis(600)),
    };
    let client = AggregatorClient::new(config).expect("client");
    let result = within(20, client.get_tasks("col1")).await;
    assert_eq!(result.expect_err("nobody listens").code(), ofl_code::RetriesExhausted);

    let c = client.metrics();
    assert!(c.retries >= 3, "{c:?}");
    assert_eq!(calls(&c, "GetTasks", ofl_code::Unavailable), c.retries + 1, "one call per attempt: {c:?}");
    assert_eq!(c.calls_total(None), c.retries + 1);
    assert_eq!((c.active_connections, c.connections, c.in_flight), (0, 0, 0));
    let text = parse_prometheus(&c.prometheus());
    assert_eq!(text["openfl_transport_retries_total{role=\"aggregator_client\"}"], c.retries);
}

// ---------------------------------------------------------------------------
// The director and its clients
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_and_envoy_count_the_same_calls() {
    let d = director_common::start_mtls().await;
    let envoy = d.envoy("col1");
    for _ in 0..4 {
        assert!(within(10, envoy.report_shard_info(director_common::shard(None))).await.unwrap());
    }
    // col2's certificate acting as envoy col1: refused for its CN.
    let impostor = d.envoy_as("col1", "col2");
    assert!(within(10, impostor.report_shard_info(director_common::shard(None))).await.is_err());

    let s = d.server.metrics();
    let e = envoy.metrics();
    assert_eq!((s.role, e.role), (Role::DirectorServer, Role::EnvoyClient));
    assert_eq!(calls(&s, "UpdateShardInfo", ofl_code::Ok), 4, "{s:?}");
    assert_eq!(calls(&e, "UpdateShardInfo", ofl_code::Ok), 4, "{e:?}");
    assert_eq!(s.bytes_in(Some("UpdateShardInfo")), e.bytes_out(Some("UpdateShardInfo")) + impostor.metrics().bytes_out(None));
    assert_eq!(calls(&s, "UpdateShardInfo", ofl_code::PermissionDenied), 1, "{s:?}");
    assert_eq!(s.auth_failures(AuthFailure::CnMismatch), 1, "{s:?}");
    assert_eq!(s.rejected(Rejection::Identity), 1, "{s:?}");
    assert_eq!(s.active_connections, 2);
    let frontend = d.frontend("alice");
    within(10, frontend.get_envoys()).await.expect("GetEnvoys");
    assert_eq!(calls(&frontend.metrics(), "GetEnvoys", ofl_code::Ok), 1);
    assert_eq!(frontend.metrics().role, Role::FrontendClient);
    assert_eq!(calls(&d.server.metrics(), "GetEnvoys", ofl_code::Ok), 1);
}
