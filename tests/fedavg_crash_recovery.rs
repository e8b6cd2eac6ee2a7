//! Crash recovery of the built-in FedAvg (issue 10, item 8): a real
//! aggregator process with a state directory is killed with SIGKILL
//! mid-round, mid-upload, and between saving an upload and acknowledging
//! it; restarted on the same port with the same directory, it resumes, and
//! the federation of Rust collaborator clients ends with exactly the model
//! and metrics of an undisturbed run.
//!
//! The model is known in closed form: each round, collaborator `colK`
//! uploads the model it was served plus its constant `C[K]` with data size
//! `N[K]`, so every round adds the weighted mean of the constants
//! (`(1*1 + 3*10) / 4 = 7.75`) to every value: after 3 rounds every value is
//! 23.25. A lost result stalls the round or changes the weights, a doubled
//! one changes the weights: either shows as a wrong number.
//!
//! The aggregator process is this test binary run again with
//! `OFL_RECOVERY_CHILD=1` (the `aggregator_child_process` test), so it needs
//! nothing but this file to build.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::*;
use openfl_transport::aggregator::{
    AggregatorClient, AggregatorLogic, AggregatorServer, Federation, LogicCall, TaskResults, TasksReply, TensorPoll,
    TensorRequest,
};
use openfl_transport::fedavg::{FedAvg, FedAvgOptions, Model, Tensor};
use openfl_transport::proto::NamedTensor;
use openfl_transport::tls::{PemSource, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const ROUNDS: i32 = 3;
/// Values of the model tensor "w" (8 MiB: uploads take several chunks).
const W_LEN: usize = 2 << 20;
const VALIDATE: &str = "aggregated_model_validation";
const TRAIN: &str = "train";
const LOCAL: &str = "locally_tuned_model_validation";

/// Each collaborator's constant and data size.
fn constant(collaborator: &str) -> (f32, i32) {
    match collaborator {
        "col1" => (1.0, 1),
        "col2" => (10.0, 3),
        other => panic!("no collaborator {other}"),
    }
}

fn fedavg_config(state_dir: Option<&Path>) -> FedAvgOptions {
    let mut model = Model::new();
    model.insert("w".into(), Tensor::new(vec![W_LEN], vec![0.0; W_LEN]).unwrap());
    model.insert("b".into(), Tensor::scalar(0.5));
    FedAvgOptions {
        aggregator_uuid: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        collaborators: vec!["col1".into(), "col2".into()],
        rounds_to_train: ROUNDS,
        initial_model: model,
        tensor_wait: Duration::from_secs(30),
        sleep_time: 1,
        state_dir: state_dir.map(Path::to_path_buf),
        ..FedAvgOptions::default()
    }
}

/// The model and metrics of a FedAvg, exactly (f32/f64 bits); metrics
/// sorted, since their order is the order uploads arrived in.
fn outcome(fa: &FedAvg) -> String {
    let model: Vec<String> = fa
        .last_model()
        .iter()
        .map(|(name, t)| {
            let sum: u64 = t.values.iter().map(|v| u64::from(v.to_bits())).sum();
            format!("{name}{:?}:first={:08x}:sum={sum:x}", t.shape, t.values[0].to_bits())
        })
        .collect();
    let mut metrics: Vec<String> = fa
        .metrics()
        .iter()
        .map(|m| format!("{}/{}/{}/{}/{}={:016x}", m.round, m.origin, m.aggregated, m.task, m.name, m.value.to_bits()))
        .collect();
    metrics.sort();
    let best = fa.best_model_score().map(|(round, score)| format!("{round}:{:016x}", score.to_bits()));
    format!("round={} model={} metrics={} best={best:?}", fa.current_round(), model.join(","), metrics.join(","))
}

// ---------------------------------------------------------------------------
// The aggregator process

/// FedAvg that kills its own process right after the `n`-th upload was
/// accepted (and saved), before the collaborator hears back.
struct KillAfterUploads {
    inner: Arc<FedAvg>,
    uploads: AtomicUsize,
    kill_after: Option<usize>,
}

impl AggregatorLogic for KillAfterUploads {
    fn federation(&self) -> &Federation {
        self.inner.federation()
    }
    fn get_tasks(&self, collaborator: &str) -> openfl_transport::Result<TasksReply> {
        self.inner.get_tasks(collaborator)
    }
    fn get_aggregated_tensor(&self, c: &str, r: &TensorRequest) -> openfl_transport::Result<NamedTensor> {
        self.inner.get_aggregated_tensor(c, r)
    }
    fn poll_aggregated_tensor(&self, c: &str, r: &TensorRequest, s: Instant) -> openfl_transport::Result<TensorPoll> {
        self.inner.poll_aggregated_tensor(c, r, s)
    }
    fn may_block(&self, call: LogicCall) -> bool {
        self.inner.may_block(call)
    }
    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> openfl_transport::Result<()> {
        let outcome = self.inner.send_local_task_results(collaborator, results);
        let n = self.uploads.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(n) == self.kill_after {
            println!("KILLING after upload {n}");
            // SAFETY: kill(2) on our own pid; nothing after it runs.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        outcome
    }
    fn all_quit_jobs_sent(&self) -> bool {
        self.inner.all_quit_jobs_sent()
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Not a test on its own: the aggregator process the other tests start.
#[test]
fn aggregator_child_process() {
    if std::env::var_os("OFL_RECOVERY_CHILD").is_none() {
        return;
    }
    let port: u16 = env("OFL_RECOVERY_PORT").parse().unwrap();
    let certs = std::path::PathBuf::from(env("OFL_RECOVERY_CERTS"));
    let state_dir = std::path::PathBuf::from(env("OFL_RECOVERY_STATE_DIR"));
    let kill_after = std::env::var("OFL_RECOVERY_KILL_AFTER").ok().map(|n| n.parse().unwrap());
    let fedavg = Arc::new(FedAvg::new(fedavg_config(Some(&state_dir))).expect("FedAvg with the state directory"));
    println!("RESUMED round={}", fedavg.current_round());
    let logic = Arc::new(KillAfterUploads { inner: Arc::clone(&fedavg), uploads: AtomicUsize::new(0), kill_after });
    let tls = TlsConfig {
        root_certificate: Some(PemSource::File(certs.join("ca.crt"))),
        certificate: Some(PemSource::File(certs.join("server.crt"))),
        private_key: Some(PemSource::File(certs.join("server.key"))),
        disable_client_auth: false,
        crls: Vec::new(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let server = AggregatorServer::start(server_config(port, Some(tls)), logic).await.expect("listening");
        println!("LISTENING {}", server.local_addr().port());
        server.serve().await.expect("serving");
    });
    println!("FINAL {}", outcome(&fedavg));
}

/// A running aggregator process and its stdout lines.
struct Aggregator {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Aggregator {
    fn start(port: u16, certs: &Path, state_dir: &Path, kill_after: Option<usize>) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["aggregator_child_process", "--exact", "--nocapture", "--test-threads=1"])
            .env("OFL_RECOVERY_CHILD", "1")
            .env("OFL_RECOVERY_PORT", port.to_string())
            .env("OFL_RECOVERY_CERTS", certs)
            .env("OFL_RECOVERY_STATE_DIR", state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(n) = kill_after {
            command.env("OFL_RECOVERY_KILL_AFTER", n.to_string());
        }
        let mut child = command.spawn().expect("starting the aggregator process");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut aggregator = Self { child, lines };
        aggregator.expect_line("LISTENING", Duration::from_secs(30));
        aggregator
    }

    /// The first line starting with `prefix` (others are skipped).
    fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line[prefix.len()..].trim().to_string(),
                Ok(_) => {}
                Err(e) => panic!("no {prefix} line from the aggregator process: {e}"),
            }
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the killed aggregator");
    }

    /// Waits for the process to end by itself; its exit status.
    fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the aggregator process did not end within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Collaborators

fn collaborator(port: u16, name: &str) -> Arc<AggregatorClient> {
    let mut config = client_config(port, Some(client_tls(identity(name))));
    config.retry.deadline = Some(Duration::from_secs(60));
    Arc::new(AggregatorClient::new(config).unwrap())
}

async fn fetch_model(client: &AggregatorClient, name: &str, round: i32) -> Tensor {
    let request = TensorRequest {
        tensor_name: "w".into(),
        round_number: round,
        report: false,
        tags: vec!["model".into()],
        require_lossless: true,
    };
    let tensor = within(60, client.get_aggregated_tensor(name, &request)).await.expect("fetching the model");
    Tensor::from_named_tensor(&tensor).unwrap()
}

/// The upload of `task` in `round` for the model `w`.
fn task_results(name: &str, round: i32, task: &str, w: &Tensor) -> TaskResults {
    let (c, n) = constant(name);
    let metric = |metric: &str, value: f32, tags: &[&str]| Tensor::scalar(value).to_named_tensor(metric, round, true, tags);
    let tensors = match task {
        VALIDATE => vec![metric("acc", w.values[0] / 100.0, &["metric", "validate_agg"])],
        TRAIN => {
            let trained = Tensor::new(w.shape.clone(), w.values.iter().map(|v| v + c).collect()).unwrap();
            vec![trained.to_named_tensor("w", round, false, &["trained"]), metric("loss", c, &["metric"])]
        }
        LOCAL => vec![metric("acc", (w.values[0] + c) / 100.0, &["metric", "validate_local"])],
        other => panic!("unexpected task {other}"),
    };
    TaskResults { round_number: round, task_name: task.into(), data_size: n, tensors }
}

async fn do_task(client: &AggregatorClient, name: &str, round: i32, task: &str) {
    let w = fetch_model(client, name, round).await;
    let results = task_results(name, round, task, &w);
    within(60, client.send_local_task_results(name, &results)).await.expect("uploading results");
}

async fn get_tasks(client: &AggregatorClient, name: &str) -> TasksReply {
    within(60, client.get_tasks(name)).await.expect("GetTasks")
}

fn task_names(reply: &TasksReply) -> Vec<&str> {
    reply.tasks.iter().map(|t| t.name.as_str()).collect()
}

/// Runs the collaborator until it is told to quit.
async fn run_until_quit(client: Arc<AggregatorClient>, name: &'static str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "{name} did not finish");
        let reply = get_tasks(&client, name).await;
        if reply.quit {
            return;
        }
        if reply.tasks.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for task in task_names(&reply) {
            do_task(&client, name, reply.round_number, task).await;
        }
    }
}

async fn run_both_until_quit(port: u16) {
    let one = tokio::spawn(run_until_quit(collaborator(port, "col1"), "col1"));
    let two = tokio::spawn(run_until_quit(collaborator(port, "col2"), "col2"));
    one.await.expect("col1");
    two.await.expect("col2");
}

/// The outcome of the same federation, undisturbed, in this process.
async fn undisturbed_outcome() -> String {
    let fedavg = Arc::new(FedAvg::new(fedavg_config(None)).unwrap());
    let server = within(10, AggregatorServer::start(server_config(0, Some(server_tls())), fedavg.clone()))
        .await
        .expect("reference server");
    run_both_until_quit(server.local_addr().port()).await;
    let expected = 7.75 * ROUNDS as f32;
    assert!(fedavg.last_model()["w"].values.iter().all(|v| *v == expected), "closed form");
    outcome(&fedavg)
}

/// Waits for the restarted aggregator to finish and checks its outcome.
async fn assert_finishes_like_undisturbed(aggregator: Aggregator) {
    let mut aggregator = aggregator;
    let outcome = aggregator.expect_line("FINAL", Duration::from_secs(60));
    assert!(aggregator.wait(Duration::from_secs(30)).success());
    let expected = undisturbed_outcome().await;
    assert_eq!(outcome, expected, "the resumed federation differs from the undisturbed one");
    let first = format!("w[{W_LEN}]:first={:08x}", (7.75 * ROUNDS as f32).to_bits());
    assert!(outcome.contains(&first), "closed form: {outcome}");
}

// ---------------------------------------------------------------------------
// A proxy that stalls an upload

/// Forwards 127.0.0.1:<port> to the aggregator; once armed, lets `budget`
/// more client bytes through and then holds the rest (an upload in flight).
struct StallingProxy {
    port: u16,
    budget: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    stalled: Arc<Notify>,
}

impl StallingProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            budget: Arc::new(AtomicU64::new(0)),
            armed: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(Notify::new()),
        };
        let (budget, armed, stalled) = (proxy.budget.clone(), proxy.armed.clone(), proxy.stalled.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (budget, armed, stalled) = (budget.clone(), armed.clone(), stalled.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        relay(client, server, budget, armed, stalled).await;
                    }
                });
            }
        });
        proxy
    }

    fn arm(&self, budget: u64) {
        self.budget.store(budget, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

/// Copies both ways until either side ends; then closes both.
async fn relay(client: TcpStream, server: TcpStream, budget: Arc<AtomicU64>, armed: Arc<AtomicBool>, stalled: Arc<Notify>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if armed.load(Ordering::SeqCst) {
                let left = budget.load(Ordering::SeqCst);
                if (n as u64) > left {
                    let _ = server_write.write_all(&buffer[..left as usize]).await;
                    stalled.notify_one();
                    std::future::pending::<()>().await; // hold the rest
                }
                budget.fetch_sub(n as u64, Ordering::SeqCst);
            }
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

// ---------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_round_resumes_the_round() {
    let certs = PkiFiles::write();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = Aggregator::start(port, certs.dir.path(), state.path(), None);
    let (col1, col2) = (collaborator(port, "col1"), collaborator(port, "col2"));

    // Round 0 by both; round 1 by col1, and col2's first task of round 1.
    for (client, name) in [(&col1, "col1"), (&col2, "col2")] {
        let reply = get_tasks(client, name).await;
        for task in task_names(&reply) {
            do_task(client, name, 0, task).await;
        }
    }
    let reply = get_tasks(&col1, "col1").await;
    assert_eq!((reply.round_number, task_names(&reply)), (1, vec![VALIDATE, TRAIN, LOCAL]));
    for task in [VALIDATE, TRAIN, LOCAL] {
        do_task(&col1, "col1", 1, task).await;
    }
    do_task(&col2, "col2", 1, VALIDATE).await;

    first.kill();
    let second = Aggregator::start(port, certs.dir.path(), state.path(), None);

    // col1 reported everything: it sleeps; col2 owes two tasks of round 1.
    let reply = get_tasks(&col1, "col1").await;
    assert_eq!((reply.round_number, reply.tasks.len(), reply.sleep_time), (1, 0, 1));
    let reply = get_tasks(&col2, "col2").await;
    assert_eq!((reply.round_number, task_names(&reply)), (1, vec![TRAIN, LOCAL]));
    // col1 resending its round-1 training (its ack was lost, say) counts once.
    let w1 = fetch_model(&col1, "col1", 1).await;
    assert!(w1.values.iter().all(|v| *v == 7.75), "the round-1 model survived");
    let resend = task_results("col1", 1, TRAIN, &w1);
    within(60, col1.send_local_task_results("col1", &resend)).await.expect("resend");

    run_both_until_quit(port).await;
    assert_finishes_like_undisturbed(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_counts_the_resent_upload_once() {
    let certs = PkiFiles::write();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = Aggregator::start(port, certs.dir.path(), state.path(), None);
    let proxy = StallingProxy::start(port).await;
    let col1 = collaborator(proxy.port, "col1");
    let col2 = collaborator(port, "col2");

    for (client, name) in [(&col1, "col1"), (&col2, "col2")] {
        let reply = get_tasks(client, name).await;
        for task in task_names(&reply) {
            do_task(client, name, 0, task).await;
        }
    }
    // col1's round-1 training upload (8 MiB) stalls after 3 MiB...
    do_task(&col1, "col1", 1, VALIDATE).await;
    let w1 = fetch_model(&col1, "col1", 1).await;
    let upload = task_results("col1", 1, TRAIN, &w1);
    proxy.arm(3 << 20);
    let stalled = proxy.stalled.notified();
    let in_flight = tokio::spawn({
        let col1 = Arc::clone(&col1);
        async move { col1.send_local_task_results("col1", &upload).await }
    });
    within(30, stalled).await;
    // ...and the aggregator dies with the upload half received.
    first.kill();
    proxy.disarm();
    let second = Aggregator::start(port, certs.dir.path(), state.path(), None);

    // The client resends the whole upload to the restarted aggregator.
    within(60, in_flight).await.expect("upload task").expect("the resent upload");
    let reply = get_tasks(&col1, "col1").await;
    assert_eq!((reply.round_number, task_names(&reply)), (1, vec![LOCAL]));

    run_both_until_quit(port).await;
    assert_finishes_like_undisturbed(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_saving_and_acknowledging_an_upload() {
    let certs = PkiFiles::write();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    // Uploads 1-6 are round 0; the 8th is in round 1 (order varies).
    let first = Aggregator::start(port, certs.dir.path(), state.path(), Some(8));
    let federation = tokio::spawn(run_both_until_quit(port));
    // The aggregator kills itself after saving upload 8, before answering.
    let status = tokio::task::spawn_blocking(move || first.wait(Duration::from_secs(120))).await.unwrap();
    assert!(!status.success(), "the first aggregator must have been killed");
    let second = Aggregator::start(port, certs.dir.path(), state.path(), None);
    within(120, federation).await.expect("collaborators");
    assert_finishes_like_undisturbed(second).await;
}
