//! Per-call time limits, cancellation and progress (issue 9, items 1 and 5).
//!
//! A call's time limit bounds the whole call (attempts, retries, backoff)
//! and ends it with DEADLINE_EXCEEDED, distinct from the retry deadline; a
//! cancel token or the client's close ends it with CANCELLED; a progress
//! callback sees a transfer grow monotonically to its total and can abort
//! it. A stopped upload is reset, never finished: the server counts nothing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use openfl_transport::aggregator::{
    AggregatorClient, AggregatorLogic, Federation, TaskResults, TasksReply, TensorRequest,
};
use openfl_transport::proto::NamedTensor;
use openfl_transport::{ofl_code, CallOptions, CancelToken, PROGRESS_STEP};

/// TestLogic whose GetTasks and GetAggregatedTensor stall (while `stalling`)
/// for up to `stall`, or until released.
struct StallLogic {
    inner: Arc<TestLogic>,
    stall: Duration,
    stalling: AtomicBool,
    released: Mutex<bool>,
    wake: Condvar,
}

impl StallLogic {
    fn new(stall: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner: TestLogic::new(),
            stall,
            stalling: AtomicBool::new(true),
            released: Mutex::new(false),
            wake: Condvar::new(),
        })
    }

    fn wait(&self) {
        if !self.stalling.load(Ordering::SeqCst) {
            return;
        }
        let released = self.released.lock().unwrap();
        let _ = self.wake.wait_timeout_while(released, self.stall, |r| !*r).unwrap();
    }

    /// Ends every stall now and later.
    fn release(&self) {
        self.stalling.store(false, Ordering::SeqCst);
        *self.released.lock().unwrap() = true;
        self.wake.notify_all();
    }
}

impl AggregatorLogic for StallLogic {
    fn federation(&self) -> &Federation {
        self.inner.federation()
    }
    fn get_tasks(&self, collaborator: &str) -> openfl_transport::Result<TasksReply> {
        self.wait();
        self.inner.get_tasks(collaborator)
    }
    fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> openfl_transport::Result<NamedTensor> {
        self.wait();
        self.inner.get_aggregated_tensor(collaborator, request)
    }
    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> openfl_transport::Result<()> {
        self.inner.send_local_task_results(collaborator, results)
    }
    fn all_quit_jobs_sent(&self) -> bool {
        self.inner.all_quit_jobs_sent()
    }
}

/// A server whose logic stalls `stall`, and a patient client (retries for
/// 20 s) with the default call time limit `call_timeout`.
async fn stalled(stall: Duration, call_timeout: Option<Duration>) -> (openfl_transport::aggregator::AggregatorServer, Arc<StallLogic>, Arc<AggregatorClient>) {
    let logic = StallLogic::new(stall);
    let server = within(10, openfl_transport::aggregator::AggregatorServer::start(server_config(0, None), logic.clone()))
        .await
        .expect("starting the server");
    let mut config = client_config(server.local_addr().port(), None);
    config.connect.call_timeout = call_timeout;
    let client = Arc::new(AggregatorClient::new(config).expect("client"));
    (server, logic, client)
}

fn tensor_request() -> TensorRequest {
    TensorRequest { tensor_name: "model".into(), round_number: 3, ..TensorRequest::default() }
}

#[track_caller]
fn assert_took(started: Instant, at_least_ms: u64, at_most_ms: u64) {
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(at_least_ms) && took <= Duration::from_millis(at_most_ms),
        "took {took:?}, expected {at_least_ms}..{at_most_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_gives_deadline_exceeded_at_the_call_timeout() {
    let (_server, logic, client) = stalled(Duration::from_secs(6), Some(Duration::from_secs(1))).await;
    let started = Instant::now();
    let result = within(10, client.get_tasks("col1")).await;
    assert_took(started, 950, 1900);
    assert_error(result, ofl_code::DeadlineExceeded, "GetTasks: not done within its call timeout of 1000 ms");
    // The same for a download.
    let started = Instant::now();
    let result = within(10, client.get_aggregated_tensor("col1", &tensor_request())).await;
    assert_took(started, 950, 1900);
    assert_error(result, ofl_code::DeadlineExceeded, "GetAggregatedTensor");
    logic.release();
    within(10, client.get_tasks("col1")).await.expect("a released server answers within the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_call_timeout_beats_the_client_default() {
    let (_server, logic, client) = stalled(Duration::from_millis(2500), Some(Duration::from_secs(1))).await;
    // Shorter than the default.
    let started = Instant::now();
    let result = within(10, client.get_tasks_with("col1", &CallOptions::default().timeout(Duration::from_millis(300)))).await;
    assert_took(started, 280, 1000);
    assert_error(result, ofl_code::DeadlineExceeded, "300 ms");
    // Zero: no limit, although the default is 1 s; the stall ends at 2.5 s.
    let started = Instant::now();
    within(10, client.get_tasks_with("col1", &CallOptions::default().timeout(Duration::ZERO))).await.expect("no limit");
    assert_took(started, 2400, 6000);
    logic.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_timeout_bounds_retries_and_backoff() {
    // Nothing listens: a 20 s retry budget, but the call has 1 s.
    let mut config = client_config(free_port(), None);
    config.connect.call_timeout = Some(Duration::from_secs(1));
    let client = AggregatorClient::new(config).unwrap();
    let started = Instant::now();
    let result = within(10, client.get_tasks("col1")).await;
    assert_took(started, 950, 1900);
    assert_error(result, ofl_code::DeadlineExceeded, "1000 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_token_from_another_thread_ends_a_waiting_download() {
    let (_server, logic, client) = stalled(Duration::from_secs(6), None).await;
    let token = CancelToken::new();
    let canceller = {
        let token = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            token.cancel();
        })
    };
    let started = Instant::now();
    let options = CallOptions::default().cancel(&token);
    let result = within(10, client.get_aggregated_tensor_with("col1", &tensor_request(), &options)).await;
    assert_took(started, 280, 1500);
    assert_error(result, ofl_code::Cancelled, "cancelled by its cancel token");
    canceller.join().unwrap();
    // A cancelled token fails later calls at once; other calls are unaffected.
    assert_error(within(10, client.get_tasks_with("col1", &options)).await, ofl_code::Cancelled, "cancel token");
    logic.release();
    within(10, client.get_tasks("col1")).await.expect("the client still works");
}

/// Progress reports of one call.
/// Progress reports `(bytes_done, bytes_total)` as recorded.
type Reports = Arc<Mutex<Vec<(u64, u64)>>>;

fn recorder() -> (Reports, CallOptions) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let options = CallOptions::default().progress(move |done, total| {
        log.lock().unwrap().push((done, total));
        true
    });
    (seen, options)
}

/// Reports grow by at least a step each, never backwards, and end at the total.
#[track_caller]
fn assert_progress(reports: &[(u64, u64)], total: Option<u64>) {
    assert!(reports.len() >= 2, "too few reports: {reports:?}");
    let last = *reports.last().unwrap();
    assert_eq!(last.0, last.1, "the last report is complete: {reports:?}");
    if let Some(total) = total {
        assert_eq!(last.1, total);
    }
    for pair in reports.windows(2) {
        assert!(pair[1].0 >= pair[0].0, "progress went backwards: {reports:?}");
    }
    for pair in reports[..reports.len() - 1].windows(2) {
        assert!(pair[1].0 - pair[0].0 >= PROGRESS_STEP, "reports closer than a step: {reports:?}");
    }
    assert!(reports.iter().all(|r| r.1 == last.1), "the total changed: {reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_download_and_an_upload_is_monotonic_and_ends_at_the_total() {
    let logic = TestLogic::new();
    let model = tensor("model", 40 << 20, 9);
    logic.set_tensor(model.clone());
    let server = start_server(None, logic.clone()).await;
    let client = AggregatorClient::new(client_config(server.local_addr().port(), None)).unwrap();

    let (seen, options) = recorder();
    let got = within(30, client.get_aggregated_tensor_with("col1", &tensor_request(), &options)).await.unwrap();
    assert_bytes_eq(&got.data_bytes, &model.data_bytes);
    let reports = seen.lock().unwrap().clone();
    assert_progress(&reports, None);
    assert!(reports.last().unwrap().1 > 40 << 20, "the total is the reply's length: {reports:?}");
    assert!(reports.len() >= 10, "about one report per 4 MiB: {reports:?}");

    let (seen, options) = recorder();
    let results = task_results(24 << 20, 4);
    within(30, client.send_local_task_results_with("col1", &results, &options)).await.unwrap();
    let reports = seen.lock().unwrap().clone();
    assert_progress(&reports, None);
    assert!(reports.last().unwrap().1 > 24 << 20, "{reports:?}");
    assert_eq!(logic.results().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_abort_cancels_and_the_server_counts_nothing() {
    let logic = TestLogic::new();
    logic.set_tensor(tensor("model", 32 << 20, 2));
    let server = start_server(None, logic.clone()).await;
    let client = AggregatorClient::new(client_config(server.local_addr().port(), None)).unwrap();
    let stop_at_second = || CallOptions::default().progress(|done, _| done < 2 * PROGRESS_STEP);

    let result = within(30, client.send_local_task_results_with("col1", &task_results(32 << 20, 1), &stop_at_second())).await;
    assert_error(result, ofl_code::Cancelled, "the progress callback asked to stop");
    let result = within(30, client.get_aggregated_tensor_with("col1", &tensor_request(), &stop_at_second())).await;
    assert_error(result, ofl_code::Cancelled, "the progress callback asked to stop");

    // Aborting at the final report (everything handed over) still resets the upload.
    let stop_at_end = CallOptions::default().progress(|done, total| done < total);
    let result = within(30, client.send_local_task_results_with("col1", &task_results(1 << 20, 1), &stop_at_end)).await;
    assert_error(result, ofl_code::Cancelled, "progress");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(logic.results().len(), 0, "an aborted upload was counted");
    within(30, client.send_local_task_results("col1", &task_results(1 << 20, 1))).await.unwrap();
    assert_eq!(logic.results().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_token_from_another_thread_resets_an_upload_in_flight() {
    let logic = TestLogic::new();
    let server = start_server(None, logic.clone()).await;
    let client = AggregatorClient::new(client_config(server.local_addr().port(), None)).unwrap();
    let token = CancelToken::new();
    // The first report asks another thread to cancel and waits until it has.
    let (ask, asked) = mpsc::channel::<()>();
    let (done, cancelled) = mpsc::channel::<()>();
    let canceller = {
        let token = token.clone();
        std::thread::spawn(move || {
            if asked.recv().is_ok() {
                token.cancel();
                let _ = done.send(());
            }
        })
    };
    let ask = Mutex::new(Some(ask));
    let cancelled = Mutex::new(cancelled);
    let options = CallOptions::default().cancel(&token).progress(move |_, _| {
        if let Some(ask) = ask.lock().unwrap().take() {
            ask.send(()).unwrap();
            cancelled.lock().unwrap().recv_timeout(Duration::from_secs(5)).unwrap();
        }
        true
    });
    let result = within(30, client.send_local_task_results_with("col1", &task_results(64 << 20, 3), &options)).await;
    assert_error(result, ofl_code::Cancelled, "cancelled by its cancel token");
    canceller.join().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(logic.results().len(), 0, "a cancelled upload was counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_cancels_every_call_of_the_client() {
    let (_server, logic, client) = stalled(Duration::from_secs(6), None).await;
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                if i == 0 {
                    client.get_aggregated_tensor("col1", &tensor_request()).await.map(|_| ())
                } else {
                    client.get_tasks("col1").await.map(|_| ())
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let closer = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || client.close())
    };
    for call in calls {
        let result = within(5, call).await.unwrap();
        assert_error(result, ofl_code::Cancelled, "the client was closed");
    }
    assert_took(started, 0, 1000);
    closer.join().unwrap();
    logic.release();
}

/// A gRPC `grpc-timeout` value as a duration.
fn parse_grpc_timeout(value: &str) -> Duration {
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().expect("grpc-timeout digits");
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        other => panic!("bad grpc-timeout unit {other:?} in {value:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_tells_the_server_the_time_left() {
    // A bare HTTP/2 server that reads the first request's headers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(tcp).await.unwrap();
        let (request, _respond) = connection.accept().await.unwrap().unwrap();
        request.headers().get("grpc-timeout").map(|v| v.to_str().unwrap().to_owned())
    });
    let mut config = client_config(port, None);
    config.connect.call_timeout = Some(Duration::from_secs(2));
    let client = AggregatorClient::new(config).unwrap();
    let call = tokio::spawn(async move { client.get_tasks("col1").await });
    let value = within(10, server).await.unwrap().expect("the request carries grpc-timeout");
    let left = parse_grpc_timeout(&value);
    assert!(left > Duration::from_millis(1000) && left <= Duration::from_secs(2), "grpc-timeout {value}");
    // The server went away: the call still ends at its limit.
    assert_error(within(10, call).await.unwrap(), ofl_code::DeadlineExceeded, "2000 ms");
}
