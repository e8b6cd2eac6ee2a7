//! Errors that name their cause (issue 9, item 7): a collaborator missing
//! from the authorized list is told so, distinct from a certificate CN that
//! differs from the header sender; a server that authorizes nobody warns at
//! start; FedAvg refuses (INVALID_ARGUMENT) and logs at WARN an upload it
//! cannot use instead of dropping it silently, while still taking metrics.

mod common;

use std::sync::{Arc, Mutex, Once};

use common::*;
use openfl_transport::aggregator::{AggregatorServer, Federation, TaskResults};
use openfl_transport::fedavg::{FedAvg, FedAvgOptions, Model, Tensor};
use openfl_transport::ofl_code;

// ---------------------------------------------------------------------------
// Captured log records (this binary's logger; tests run in parallel, so each
// looks for its own record by content)
// ---------------------------------------------------------------------------

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            RECORDS.lock().unwrap().push((record.level(), record.args().to_string()));
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

/// Whether a WARN record contains every one of `needles`.
fn warned(needles: &[&str]) -> bool {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .any(|(level, message)| *level == log::Level::Warn && needles.iter().all(|n| message.contains(n)))
}

// ---------------------------------------------------------------------------
// Identity refusals
// ---------------------------------------------------------------------------

const NOT_AUTHORIZED: &str = "|col3| is not among the authorized collaborators";
const CN_DIFFERS: &str = "certificate CN |col1| differs from header sender |col2|";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_missing_from_the_authorized_list_is_told_so() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let client = client(server.local_addr().port(), Some(client_tls(identity("col3"))));

    let e = assert_error(within(20, client.get_tasks("col3")).await, ofl_code::Unauthenticated, NOT_AUTHORIZED);
    assert!(!e.message().contains("differs"), "{}", e.message());
    // The upload is refused before it is read, with the same cause.
    let result = within(20, client.send_local_task_results("col3", &task_results(1000, 1))).await;
    assert_error(result, ofl_code::Unauthenticated, NOT_AUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_cn_differing_from_sender_is_told_so() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let client = client(server.local_addr().port(), Some(client_tls(identity("col1"))));

    let e = assert_error(within(20, client.get_tasks("col2")).await, ofl_code::Unauthenticated, CN_DIFFERS);
    assert!(!e.message().contains("authorized"), "{}", e.message());
    let result = within(20, client.send_local_task_results("col2", &task_results(1000, 1))).await;
    assert_error(result, ofl_code::Unauthenticated, CN_DIFFERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_missing_from_the_authorized_list_without_tls_is_told_so() {
    let server = start_server(None, TestLogic::new()).await;
    let client = client(server.local_addr().port(), None);

    let result = within(20, client.get_tasks("col3")).await;
    assert_error(result, ofl_code::PermissionDenied, NOT_AUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_authorizing_nobody_warns_at_start_and_says_so_when_refusing() {
    capture_logs();
    let nobody = Federation { authorized_collaborators: Default::default(), ..federation() };
    let server = start_server(Some(server_tls()), TestLogic::with_federation(nobody)).await;
    assert!(warned(&["authorizes no collaborator"]), "no start-up warning: {:?}", RECORDS.lock().unwrap());

    let client = client(server.local_addr().port(), Some(client_tls(identity("col1"))));
    let result = within(20, client.get_tasks("col1")).await;
    assert_error(result, ofl_code::Unauthenticated, "this aggregator authorizes none");
}

// ---------------------------------------------------------------------------
// FedAvg: uploads it cannot use
// ---------------------------------------------------------------------------

async fn start_fedavg() -> (AggregatorServer, Arc<FedAvg>) {
    let mut model = Model::new();
    model.insert("w".into(), Tensor::new(vec![2], vec![0.0, 0.0]).unwrap());
    let options = FedAvgOptions {
        aggregator_uuid: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        collaborators: vec!["col1".into(), "col2".into()],
        rounds_to_train: 1,
        initial_model: model,
        ..FedAvgOptions::default()
    };
    let fedavg = Arc::new(FedAvg::new(options).unwrap());
    let server = within(10, AggregatorServer::start(server_config(0, Some(server_tls())), fedavg.clone()))
        .await
        .expect("server");
    (server, fedavg)
}

fn upload(task: &str, tensors: Vec<openfl_transport::proto::NamedTensor>) -> TaskResults {
    TaskResults { round_number: 0, task_name: task.into(), data_size: 4, tensors }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedavg_refuses_and_logs_a_weight_tensor_without_the_trained_tag() {
    capture_logs();
    let (server, fedavg) = start_fedavg().await;
    let client = client(server.local_addr().port(), Some(client_tls(identity("col2"))));
    let weights = |tags: &[&str]| Tensor::new(vec![2], vec![1.0, 2.0]).unwrap().to_named_tensor("w", 0, false, tags);
    let loss = Tensor::scalar(0.5).to_named_tensor("loss", 0, true, &["metric"]);

    // Weights tagged only "compressed" (no "trained"): refused whole.
    let bad = upload("train", vec![loss.clone(), weights(&[])]);
    let result = within(20, client.send_local_task_results("col2", &bad)).await;
    assert_error(result, ofl_code::InvalidArgument, "FedAvg cannot use it");
    assert!(warned(&["col2", "\"train\"", "FedAvg cannot use it"]), "no warning: {:?}", RECORDS.lock().unwrap());
    assert!(fedavg.metrics().is_empty(), "part of a refused upload was kept: {:?}", fedavg.metrics());

    // Metrics alone (a validation task) and metrics with trained weights are taken.
    let score = Tensor::scalar(0.75).to_named_tensor("acc", 0, true, &["metric", "validate_agg"]);
    within(20, client.send_local_task_results("col2", &upload("aggregated_model_validation", vec![score])))
        .await
        .expect("a metric-only upload");
    within(20, client.send_local_task_results("col2", &upload("train", vec![loss, weights(&["trained"])])))
        .await
        .expect("the corrected upload");
    assert_eq!(fedavg.metrics().len(), 2, "{:?}", fedavg.metrics());
}
