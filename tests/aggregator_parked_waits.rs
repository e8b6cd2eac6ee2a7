//! Parked GetAggregatedTensor calls must not hold the server's threads
//! (issue 10, item 5): one collaborator parks 600 requests for a tensor that
//! is not ready yet, and another collaborator's GetTasks is still answered at
//! once. Before the fix every waiting call held one of the 512 threads of
//! Tokio's blocking pool, and the GetTasks waited seconds for a free one.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use openfl_transport::aggregator::{
    AggregatorLogic, AggregatorServer, Federation, TaskResults, TasksReply, TensorRequest,
};
use openfl_transport::fedavg::{FedAvg, FedAvgOptions, Model, Tensor};
use openfl_transport::proto::aggregator::{GetAggregatedTensorRequest, MessageHeader};
use openfl_transport::proto::NamedTensor;
use tokio::task::JoinHandle;

/// How many requests the impatient collaborator parks.
const PARKED: usize = 600;
/// Spread over this many connections (a server may bound streams per connection).
const CONNECTIONS: usize = 10;
/// GetTasks must answer within this (the bug: until a parked call gave up).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

fn header(sender: &str) -> Option<MessageHeader> {
    Some(MessageHeader {
        sender: sender.into(),
        receiver: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        single_col_cert_common_name: String::new(),
    })
}

/// `PARKED` requests by col1 for round `round`'s model tensor "w", over
/// `CONNECTIONS` connections.
fn park_requests(port: u16, round: i32) -> Vec<JoinHandle<Result<NamedTensor, tonic::Status>>> {
    let clients: Vec<_> = (0..CONNECTIONS).map(|_| raw_client(port, Some(client_tls(&pki().col1)))).collect();
    (0..PARKED)
        .map(|i| {
            let mut client = clients[i % CONNECTIONS].clone();
            tokio::spawn(async move {
                let request = GetAggregatedTensorRequest {
                    header: header("col1"),
                    tensor_name: "w".into(),
                    round_number: round,
                    report: false,
                    tags: vec!["model".into()],
                    require_lossless: true,
                };
                let reply = client.get_aggregated_tensor(request).await?.into_inner();
                Ok(reply.tensor.expect("a tensor"))
            })
        })
        .collect()
}

/// col2's GetTasks, timed; panics if it takes longer than `ANSWER_WITHIN`.
async fn timed_get_tasks(port: u16, collaborator: &str) -> (TasksReply, Duration) {
    let tls = Some(client_tls(identity(collaborator)));
    let client = client(port, tls);
    let started = Instant::now();
    let reply = tokio::time::timeout(ANSWER_WITHIN, client.get_tasks(collaborator)).await;
    let elapsed = started.elapsed();
    let reply = reply.unwrap_or_else(|_| panic!("{collaborator}'s GetTasks not answered within {ANSWER_WITHIN:?}"));
    (reply.expect("GetTasks"), elapsed)
}

fn fedavg_config() -> FedAvgOptions {
    let mut model = Model::new();
    model.insert("w".into(), Tensor::new(vec![2], vec![0.0, 0.0]).unwrap());
    FedAvgOptions {
        aggregator_uuid: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        collaborators: vec!["col1".into(), "col2".into()],
        rounds_to_train: 2,
        initial_model: model,
        tensor_wait: Duration::from_secs(20),
        sleep_time: 1,
        ..FedAvgOptions::default()
    }
}

/// One collaborator's three uploads of round 0, training "w" to `w`.
async fn report_round_zero(port: u16, collaborator: &str, w: f32) {
    let client = client(port, Some(client_tls(identity(collaborator))));
    let metric = |name: &str, tags: &[&str]| Tensor::scalar(0.5).to_named_tensor(name, 0, true, tags);
    let trained = Tensor::new(vec![2], vec![w, w]).unwrap().to_named_tensor("w", 0, false, &["trained"]);
    let uploads = [
        ("aggregated_model_validation", vec![metric("acc", &["metric", "validate_agg"])]),
        ("train", vec![trained]),
        ("locally_tuned_model_validation", vec![metric("acc", &["metric", "validate_local"])]),
    ];
    for (task, tensors) in uploads {
        let results = TaskResults { round_number: 0, task_name: task.into(), data_size: 1, tensors };
        within(20, client.send_local_task_results(collaborator, &results)).await.expect("upload");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_fedavg_tensor_requests_do_not_delay_other_collaborators() {
    let fedavg = Arc::new(FedAvg::new(fedavg_config()).unwrap());
    let config = server_config(0, Some(server_tls()));
    let server = within(10, AggregatorServer::start(config, fedavg.clone())).await.expect("server");
    let port = server.local_addr().port();

    // col1 asks 600 times for round 1's model, which needs round 0 to end.
    let parked = park_requests(port, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (reply, elapsed) = timed_get_tasks(port, "col2").await;
    assert_eq!((reply.round_number, reply.tasks.len()), (0, 3));
    eprintln!("col2's GetTasks with {PARKED} parked requests: {elapsed:?}");
    let (_, elapsed) = timed_get_tasks(port, "col1").await;
    eprintln!("col1's own GetTasks: {elapsed:?}");
    assert!(parked.iter().all(|p| !p.is_finished()), "the requests must still be waiting");

    // Round 0 ends: every parked request gets the new model (mean of 1 and 3).
    report_round_zero(port, "col1", 1.0).await;
    report_round_zero(port, "col2", 3.0).await;
    for request in parked {
        let tensor = within(20, request).await.expect("request task").expect("GetAggregatedTensor");
        let tensor = Tensor::from_named_tensor(&tensor).unwrap();
        assert_eq!(tensor.values, vec![2.0, 2.0]);
    }
    assert_eq!(fedavg.current_round(), 1);
}

/// Logic that blocks in GetAggregatedTensor until released, as a C callback
/// that waits for its tensor may.
struct BlockingLogic {
    federation: Federation,
    entered: AtomicUsize,
    released: Mutex<bool>,
    release: Condvar,
}

impl BlockingLogic {
    fn release_all(&self) {
        *self.released.lock().unwrap() = true;
        self.release.notify_all();
    }
}

/// Releases the blocked callbacks when the test ends, also on a failure (the
/// runtime waits for blocking threads when it shuts down).
struct ReleaseOnDrop(Arc<BlockingLogic>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release_all();
    }
}

impl AggregatorLogic for BlockingLogic {
    fn federation(&self) -> &Federation {
        &self.federation
    }

    fn get_tasks(&self, _: &str) -> openfl_transport::Result<TasksReply> {
        Ok(TasksReply { round_number: 4, sleep_time: 1, ..TasksReply::default() })
    }

    fn get_aggregated_tensor(&self, _: &str, request: &TensorRequest) -> openfl_transport::Result<NamedTensor> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let guard = self.released.lock().unwrap();
        let _released = self.release.wait_while(guard, |released| !*released).unwrap();
        Ok(Tensor::scalar(1.0).to_named_tensor(&request.tensor_name, request.round_number, false, &["model"]))
    }

    fn send_local_task_results(&self, _: &str, _: TaskResults) -> openfl_transport::Result<()> {
        Ok(())
    }

    fn all_quit_jobs_sent(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_logic_cannot_be_exhausted_by_one_collaborator() {
    let logic = Arc::new(BlockingLogic {
        federation: federation(),
        entered: AtomicUsize::new(0),
        released: Mutex::new(false),
        release: Condvar::new(),
    });
    let _release = ReleaseOnDrop(Arc::clone(&logic));
    let config = server_config(0, Some(server_tls()));
    let server = within(10, AggregatorServer::start(config, logic.clone())).await.expect("server");
    let port = server.local_addr().port();

    let parked = park_requests(port, 1);
    // Wait until the server has let in as many as it will.
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = logic.entered.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    eprintln!("blocking callbacks entered for col1: {last}");

    let (reply, elapsed) = timed_get_tasks(port, "col2").await;
    assert_eq!(reply.round_number, 4);
    eprintln!("col2's GetTasks with {PARKED} parked requests: {elapsed:?}");
    let (_, elapsed) = timed_get_tasks(port, "col1").await;
    eprintln!("col1's own GetTasks: {elapsed:?}");

    // Once released, every request is answered (the queued ones in turn).
    logic.release_all();
    for request in parked {
        within(20, request).await.expect("request task").expect("GetAggregatedTensor");
    }
    assert_eq!(logic.entered.load(Ordering::SeqCst), PARKED);
}
