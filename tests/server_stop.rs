//! A hard stop with a grace (issue 9, item 3): whatever the peers do, a
//! stopping server returns within `ServerLimits::shutdown_grace` plus a
//! second. Calls in flight may finish during the grace; after it they are
//! cancelled (clients see UNAVAILABLE), their connections are reset, and an
//! upload cut by the stop never reaches the logic.
//!
//! The peers: an upload stalled by its client (raw HTTP/2: a few chunks,
//! then nothing), a download whose client never releases flow-control
//! window (slow reader), a client whose socket stops reading altogether
//! (frozen: the server's writes block), a director long poll, and host logic
//! still running when the grace ends (abandoned: its answer is dropped, and
//! the logic is released once it returns).
//!
//! Before this item, `shutdown` waited for every call in flight: the stalled
//! and frozen peers held it until HTTP/2 keepalive dropped them (40–50 s),
//! and the callback for as long as it ran.

mod common;
mod director_common;
mod raw_h2;

use std::io::Read;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use common::*;
use openfl_transport::aggregator::{AggregatorLogic, AggregatorServer, Federation, TaskResults as LogicTaskResults, TasksReply, TensorRequest};
use openfl_transport::proto::aggregator::{GetAggregatedTensorRequest, GetTasksRequest, MessageHeader, TaskResults};
use openfl_transport::proto::director::{ExperimentData, ExperimentInfo, WaitExperimentRequest};
use openfl_transport::proto::{DataStream, NamedTensor};
use openfl_transport::ServerLimits;

const UPLOAD: &str = "/openfl.aggregator.Aggregator/SendLocalTaskResults";
const DOWNLOAD: &str = "/openfl.aggregator.Aggregator/GetAggregatedTensor";
const NEW_EXPERIMENT: &str = "/openfl.director.Director/SetNewExperiment";
const UNAVAILABLE: i32 = 14;
const MIB: usize = 1 << 20;

fn header() -> MessageHeader {
    MessageHeader {
        sender: "col1".into(),
        receiver: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        single_col_cert_common_name: String::new(),
    }
}

fn chunk(bytes: Bytes) -> DataStream {
    DataStream { size: bytes.len() as u32, npbytes: bytes }
}

async fn aggregator_with_grace(grace: Duration, logic: Arc<dyn AggregatorLogic>) -> AggregatorServer {
    let mut config = server_config(0, None);
    config.limits.shutdown_grace = grace;
    within(10, AggregatorServer::start(config, logic)).await.expect("starting the aggregator server")
}

/// How long `stop` took, checked against the bound: at most `grace` + 1 s,
/// and at least `grace` when `waits_for_grace` (calls that cannot finish).
#[track_caller]
fn assert_within_grace(elapsed: Duration, grace: Duration, waits_for_grace: bool) {
    assert!(elapsed <= grace + Duration::from_secs(1), "stopping took {elapsed:?}, over the grace {grace:?} + 1 s");
    if waits_for_grace {
        assert!(elapsed + Duration::from_millis(50) >= grace, "stopping took {elapsed:?}: the grace {grace:?} was cut");
    }
}

// ---------------------------------------------------------------------------
// A client socket that can be frozen (as a SIGSTOPped process: it neither
// reads nor writes any more)
// ---------------------------------------------------------------------------

struct Freezable {
    inner: tokio::net::TcpStream,
    frozen: Arc<AtomicBool>,
}

impl AsyncRead for Freezable {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Freezable {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.frozen.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A frozen download: its request sent with large HTTP/2 windows (so the
/// server may push megabytes), its response head received, then its socket
/// frozen. Returns a second handle on the socket to look at it afterwards.
async fn frozen_download(port: u16) -> std::net::TcpStream {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    tcp.set_nodelay(true).unwrap();
    let spare = tcp.try_clone().unwrap();
    tcp.set_nonblocking(true).unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let io = Freezable { inner: tokio::net::TcpStream::from_std(tcp).unwrap(), frozen: Arc::clone(&frozen) };
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(256 << 20)
        .initial_connection_window_size(256 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send;
    let mut call = raw_h2::start_call(&mut send, DOWNLOAD, &[]).await;
    let request = GetAggregatedTensorRequest { header: Some(header()), tensor_name: "big".into(), ..Default::default() };
    call.send_message(&request, true);
    let response = within(10, call.response).await.expect("a response head");
    assert!(response.headers().get("grpc-status").is_none(), "a trailers-only error: {response:?}");
    frozen.store(true, Ordering::SeqCst);
    std::mem::forget((send, response)); // nothing of this client moves again
    spare
}

/// Reads what the server left on `socket` until it ends; true when it
/// ended with a reset (ECONNRESET) rather than an orderly close.
fn ended_by_reset(mut socket: std::net::TcpStream) -> bool {
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; MIB];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("reading the frozen socket after the stop: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Logic whose GetTasks blocks until the test opens its gate
// ---------------------------------------------------------------------------

struct GatedLogic {
    inner: Arc<TestLogic>,
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicUsize,
    returned: AtomicUsize,
}

impl GatedLogic {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: TestLogic::new(),
            open: Mutex::new(false),
            opened: Condvar::new(),
            entered: AtomicUsize::new(0),
            returned: AtomicUsize::new(0),
        })
    }

    fn open_gate(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Opens the gate `after` from now, from another thread.
    fn open_gate_after(self: &Arc<Self>, after: Duration) {
        let logic = Arc::clone(self);
        std::thread::spawn(move || {
            std::thread::sleep(after);
            logic.open_gate();
        });
    }
}

impl AggregatorLogic for GatedLogic {
    fn federation(&self) -> &Federation {
        self.inner.federation()
    }

    fn get_tasks(&self, collaborator: &str) -> openfl_transport::Result<TasksReply> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let open = self.open.lock().unwrap();
        let _open = self.opened.wait_timeout_while(open, Duration::from_secs(20), |open| !*open).unwrap();
        self.returned.fetch_add(1, Ordering::SeqCst);
        self.inner.get_tasks(collaborator)
    }

    fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> openfl_transport::Result<NamedTensor> {
        self.inner.get_aggregated_tensor(collaborator, request)
    }

    fn send_local_task_results(&self, collaborator: &str, results: LogicTaskResults) -> openfl_transport::Result<()> {
        self.inner.send_local_task_results(collaborator, results)
    }

    fn all_quit_jobs_sent(&self) -> bool {
        false
    }
}

/// A GetTasks of col1 on a raw tonic client, in the background.
fn get_tasks_in_background(port: u16) -> tokio::task::JoinHandle<Result<(), tonic::Status>> {
    let mut client = raw_client(port, None);
    tokio::spawn(async move {
        client.get_tasks(GetTasksRequest { header: Some(header()) }).await.map(|_| ())
    })
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(10), "waited 10 s for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn the_grace_defaults_to_five_seconds_and_is_bounded() {
    let limits = ServerLimits::default();
    assert_eq!(limits.shutdown_grace, Duration::from_secs(5));
    assert!(ServerLimits { shutdown_grace: Duration::ZERO, ..limits.clone() }.check().is_ok());
    let error = ServerLimits { shutdown_grace: Duration::from_secs(366 * 24 * 3600), ..limits }.check().unwrap_err();
    assert!(error.message().contains("shutdown_grace"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cancelled_after_the_grace_and_never_reaches_the_logic() {
    let grace = Duration::from_millis(1500);
    let logic = TestLogic::new();
    let server = aggregator_with_grace(grace, logic.clone()).await;
    let port = server.local_addr().port();

    // A few chunks of a complete TaskResults, then nothing: the client stalls.
    let results = TaskResults { header: Some(header()), tensors: vec![tensor("w", 3 * MIB, 1)], ..Default::default() };
    let encoded = Bytes::from(results.encode_to_vec());
    let mut connection = raw_h2::connect(port).await;
    let mut call = raw_h2::start_call(&mut connection, UPLOAD, &[]).await;
    for piece in 0..3 {
        call.send_message(&chunk(encoded.slice(piece * MIB..(piece + 1) * MIB)), false);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::spawn(call.grpc_status(10));

    let started = Instant::now();
    within(30, server.shutdown()).await.expect("shutdown");
    assert_within_grace(started.elapsed(), grace, true);
    assert_eq!(within(5, status).await.unwrap(), Some(UNAVAILABLE), "the stalled client is told UNAVAILABLE");
    assert!(logic.results().is_empty(), "the cut upload reached the logic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_and_a_frozen_client_do_not_hold_the_stop() {
    let grace = Duration::from_secs(1);
    let logic = TestLogic::new();
    logic.set_tensor(tensor("big", 64 * MIB, 7));
    let server = aggregator_with_grace(grace, logic.clone()).await;
    let port = server.local_addr().port();

    // A slow reader: default 64 KiB windows, and no window ever released.
    let mut slow = raw_h2::connect(port).await;
    let mut call = raw_h2::start_call(&mut slow, DOWNLOAD, &[]).await;
    call.send_message(&GetAggregatedTensorRequest { header: Some(header()), tensor_name: "big".into(), ..Default::default() }, true);
    let slow_response = within(10, call.response).await.expect("a response head");
    // A frozen client: its socket full, the server's writes block.
    let frozen = frozen_download(port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    within(30, server.shutdown()).await.expect("shutdown");
    assert_within_grace(started.elapsed(), grace, true);

    // The slow reader gets part of the tensor, never all of it.
    let mut body = slow_response.into_body();
    let mut received = 0;
    let ended = within(10, async {
        while let Some(data) = body.data().await {
            match data {
                Ok(data) => {
                    received += data.len();
                    let _ = body.flow_control().release_capacity(data.len());
                }
                Err(_) => return None,
            }
        }
        body.trailers().await.ok().flatten()
    })
    .await;
    assert!(received < 64 * MIB, "the slow reader got the whole tensor after the stop");
    if let Some(trailers) = ended {
        assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"14"[..]), "{trailers:?}");
    }
    // The frozen client's connection was reset, not left to drain.
    assert!(tokio::task::spawn_blocking(move || ended_by_reset(frozen)).await.unwrap(), "no reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_lets_a_short_call_finish() {
    let grace = Duration::from_secs(3);
    let logic = GatedLogic::new();
    let server = aggregator_with_grace(grace, logic.clone()).await;
    let call = get_tasks_in_background(server.local_addr().port());
    wait_until("the call to reach the logic", || logic.entered.load(Ordering::SeqCst) == 1).await;
    logic.open_gate_after(Duration::from_millis(500));

    let started = Instant::now();
    within(30, server.shutdown()).await.expect("shutdown");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "stop waited {elapsed:?}: longer than the call needed");
    assert!(elapsed >= Duration::from_millis(400), "stop took {elapsed:?}: it did not wait for the call");
    within(5, call).await.unwrap().expect("the call in flight finished during the grace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logic_still_running_after_the_grace_is_abandoned_and_released_when_it_returns() {
    let grace = Duration::from_millis(300);
    let logic = GatedLogic::new();
    let server = aggregator_with_grace(grace, logic.clone()).await;
    let call = get_tasks_in_background(server.local_addr().port());
    wait_until("the call to reach the logic", || logic.entered.load(Ordering::SeqCst) == 1).await;

    let started = Instant::now();
    within(30, server.shutdown()).await.expect("shutdown");
    assert_within_grace(started.elapsed(), grace, true);
    let status = within(5, call).await.unwrap().expect_err("the cancelled call failed");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    assert_eq!(logic.returned.load(Ordering::SeqCst), 0, "the host callback is still running, abandoned");

    // Still in use by the running callback: the server's share is released
    // only once it returns.
    drop(server);
    assert!(Arc::strong_count(&logic) > 1, "the logic was released while a callback still ran");
    logic.open_gate();
    wait_until("the logic to be released", || Arc::strong_count(&logic) == 1).await;
    assert_eq!(logic.returned.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_grace_cancels_at_once() {
    let logic = GatedLogic::new();
    let server = aggregator_with_grace(Duration::ZERO, logic.clone()).await;
    let call = get_tasks_in_background(server.local_addr().port());
    wait_until("the call to reach the logic", || logic.entered.load(Ordering::SeqCst) == 1).await;
    logic.open_gate_after(Duration::from_millis(1500));

    let started = Instant::now();
    within(30, server.shutdown()).await.expect("shutdown");
    assert_within_grace(started.elapsed(), Duration::ZERO, false);
    let status = within(5, call).await.unwrap().expect_err("the cancelled call failed");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_within_the_grace_of_a_stop() {
    let grace = Duration::from_millis(800);
    let logic = TestLogic::new();
    let server = Arc::new(aggregator_with_grace(grace, logic.clone()).await);
    let port = server.local_addr().port();
    let mut connection = raw_h2::connect(port).await;
    let mut call = raw_h2::start_call(&mut connection, UPLOAD, &[]).await;
    call.send_message(&chunk(pattern(MIB, 2)), false);

    let serving = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.serve().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.stop();
    within(30, serving).await.unwrap().expect("serve");
    assert_within_grace(started.elapsed(), grace, true);
    assert_eq!(within(5, call.grpc_status(5)).await, Some(UNAVAILABLE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_director_stops_within_its_grace_despite_a_stalled_upload_and_a_long_poll() {
    let grace = Duration::from_secs(1);
    let d = director_common::start_with(false, |c| c.limits.shutdown_grace = grace).await;
    let port = d.port();
    assert!(within(10, d.envoy("col1").report_shard_info(director_common::shard(None))).await.unwrap());

    // A long poll: WaitExperiment with no experiment coming.
    let mut envoy = d.raw("col1");
    let wait = tokio::spawn(async move {
        envoy.wait_experiment(WaitExperimentRequest { collaborator_name: "col1".into() }).await.map(|_| ())
    });
    // An archive upload stalled after its first chunk.
    let mut connection = raw_h2::connect(port).await;
    let mut upload = raw_h2::start_call(&mut connection, NEW_EXPERIMENT, &[("client_id", "alice")]).await;
    let info = ExperimentInfo {
        name: "mnist".into(),
        collaborator_names: vec!["col1".into()],
        experiment_data: Some(ExperimentData { size: 50_000, npbytes: pattern(50_000, 3) }),
        model_proto: None,
    };
    upload.send_message(&info, false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upload_status = tokio::spawn(upload.grpc_status(10));

    let started = Instant::now();
    within(30, d.server.shutdown()).await.expect("shutdown");
    assert_within_grace(started.elapsed(), grace, true);

    let status = within(5, wait).await.unwrap().expect_err("the long poll ended");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(within(5, upload_status).await.unwrap(), Some(UNAVAILABLE));
    assert!(d.handle().experiment_names().is_empty(), "the cut upload registered an experiment");
    let leftovers: Vec<_> = std::fs::read_dir(d.archive_dir()).unwrap().collect();
    assert!(leftovers.is_empty(), "files left by the cut upload: {leftovers:?}");
}
