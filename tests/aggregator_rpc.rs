//! The aggregator RPCs end to end over mTLS on 127.0.0.1: replies, large
//! transfers, header checks, the server's life cycle, the RPCs OpenFL leaves
//! unimplemented, and malformed upload streams sent with the raw tonic client.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use common::*;
use openfl_transport::aggregator::{TasksReply, TensorRequest};
use openfl_transport::ofl_code;
use openfl_transport::proto::aggregator::{
    aggregator_server::{Aggregator, AggregatorServer as GrpcServer},
    GetExperimentDescriptionRequest, GetMetricStreamRequest, GetTasksRequest, GetTasksResponse,
    GetTrainedModelRequest, MessageHeader, TaskResults as WireTaskResults,
};
use openfl_transport::proto::{aggregator::Task, DataStream, NamedTensor};

const MIB: usize = 1 << 20;

fn train_task() -> Task {
    Task { name: "train".into(), function_name: "train_batches".into(), task_type: "train".into(), apply_local: true }
}

fn validate_task() -> Task {
    Task {
        name: "aggregated_model_validation".into(),
        function_name: "validate".into(),
        task_type: "validate".into(),
        apply_local: false,
    }
}

async fn mtls_server(logic: Arc<TestLogic>) -> openfl_transport::aggregator::AggregatorServer {
    start_server(Some(server_tls()), logic).await
}

fn col1_client(port: u16) -> openfl_transport::aggregator::AggregatorClient {
    client(port, Some(client_tls(&pki().col1)))
}

// ---------------------------------------------------------------------------
// The three RPCs
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tasks_returns_the_tasks_of_the_logic() {
    let logic = TestLogic::new();
    let want = TasksReply { round_number: 4, tasks: vec![train_task(), validate_task()], sleep_time: 0, quit: false };
    logic.set_tasks_reply(want.clone());
    let server = mtls_server(logic.clone()).await;
    let client = col1_client(server.local_addr().port());

    let reply = within(20, client.get_tasks("col1")).await.expect("GetTasks");
    assert_eq!(reply, want);
    assert_eq!(logic.get_tasks_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tasks_returns_sleep_time() {
    let logic = TestLogic::new();
    let want = TasksReply { round_number: 2, tasks: vec![], sleep_time: 10, quit: false };
    logic.set_tasks_reply(want.clone());
    let server = mtls_server(logic).await;
    let client = col1_client(server.local_addr().port());

    assert_eq!(within(20, client.get_tasks("col1")).await.expect("GetTasks"), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tasks_returns_quit() {
    let logic = TestLogic::new();
    logic.set_tasks_reply(TasksReply { round_number: 9, ..TasksReply::default() });
    logic.start_quitting();
    let server = mtls_server(logic.clone()).await;
    let client = col1_client(server.local_addr().port());

    let reply = within(20, client.get_tasks("col1")).await.expect("GetTasks");
    assert_eq!(reply, TasksReply { round_number: 9, tasks: vec![], sleep_time: 0, quit: true });
    assert_eq!(logic.quits_sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_aggregated_tensor_passes_the_request_and_returns_the_tensor() {
    let logic = TestLogic::new();
    let served = tensor("conv1.weight", 4096, 11);
    logic.set_tensor(served.clone());
    let server = mtls_server(logic.clone()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col2)));

    let request = TensorRequest {
        tensor_name: "conv1.weight".into(),
        round_number: 3,
        report: false,
        tags: vec!["model".into()],
        require_lossless: true,
    };
    let got = within(20, client.get_aggregated_tensor("col2", &request)).await.expect("GetAggregatedTensor");
    assert_eq!(got, served);
    assert_eq!(logic.tensor_requests(), vec![("col2".to_string(), request)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_local_task_results_delivers_them_to_the_logic() {
    let logic = TestLogic::new();
    let server = mtls_server(logic.clone()).await;
    let client = col1_client(server.local_addr().port());

    let results = task_results(100_000, 5);
    within(20, client.send_local_task_results("col1", &results)).await.expect("SendLocalTaskResults");
    assert_eq!(logic.results(), vec![("col1".to_string(), results)]);
}

// ---------------------------------------------------------------------------
// Large transfers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_64_mib_arrives_byte_exact() {
    let logic = TestLogic::new();
    let server = mtls_server(logic.clone()).await;
    let client = col1_client(server.local_addr().port());

    let results = task_results(64 * MIB, 42);
    within(120, client.send_local_task_results("col1", &results)).await.expect("64 MiB upload");
    let received = logic.results();
    assert_eq!(received.len(), 1);
    let (sender, got) = &received[0];
    assert_eq!(sender, "col1");
    assert_eq!(got.tensors.len(), 2);
    assert_bytes_eq(&got.tensors[0].data_bytes, &results.tensors[0].data_bytes);
    assert_eq!(got.tensors[1], results.tensors[1]);
    assert_eq!((got.round_number, got.task_name.as_str(), got.data_size), (3, "train", 1200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_64_mib_arrives_byte_exact() {
    let logic = TestLogic::new();
    let served = tensor("fc.weight", 64 * MIB, 99);
    logic.set_tensor(served.clone());
    let server = mtls_server(logic).await;
    let client = col1_client(server.local_addr().port());

    let request = TensorRequest { tensor_name: "fc.weight".into(), round_number: 3, ..TensorRequest::default() };
    let got = within(120, client.get_aggregated_tensor("col1", &request)).await.expect("64 MiB download");
    assert_bytes_eq(&got.data_bytes, &served.data_bytes);
    assert_eq!(NamedTensor { data_bytes: Bytes::new(), ..got }, NamedTensor { data_bytes: Bytes::new(), ..served });
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_from_another_federation_is_invalid_argument() {
    let logic = TestLogic::new();
    let server = mtls_server(logic.clone()).await;
    let mut config = client_config(server.local_addr().port(), Some(client_tls(&pki().col1)));
    config.retry = short_retry();
    config.federation.federation_uuid = "some-other-federation".into();
    let client = openfl_transport::aggregator::AggregatorClient::new(config).unwrap();

    let result = within(20, client.get_tasks("col1")).await;
    assert_error(result, ofl_code::InvalidArgument, "header.federation_uuid");
    assert_eq!(logic.get_tasks_calls(), 0, "the logic must not see a rejected request");
}

/// A fake aggregator that answers GetTasks with a header naming another
/// aggregator (everything else is the generated UNIMPLEMENTED default).
struct ImpostorAggregator;

#[tonic::async_trait]
impl Aggregator for ImpostorAggregator {
    async fn get_tasks(
        &self,
        request: tonic::Request<GetTasksRequest>,
    ) -> Result<tonic::Response<GetTasksResponse>, tonic::Status> {
        let sender = request.into_inner().header.unwrap_or_default().sender;
        Ok(tonic::Response::new(GetTasksResponse {
            header: Some(MessageHeader {
                sender: "impostor-aggregator".into(),
                receiver: sender,
                federation_uuid: FEDERATION_UUID.into(),
                single_col_cert_common_name: String::new(),
            }),
            round_number: 1,
            tasks: vec![train_task()],
            sleep_time: 0,
            quit: false,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_from_another_aggregator_is_invalid_response() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let fake = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GrpcServer::new(ImpostorAggregator))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    let client = client(port, None);

    let result = within(20, client.get_tasks("col1")).await;
    assert_error(result, ofl_code::InvalidResponse, "header.sender");

    let _ = stop_tx.send(());
    within(10, fake).await.unwrap().unwrap();
}

// ---------------------------------------------------------------------------
// Server life cycle
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_once_all_quit_jobs_are_sent() {
    let logic = TestLogic::new();
    logic.start_quitting();
    let mut config = server_config(0, Some(server_tls()));
    // Only the notification after a quitting GetTasks can end serve in time.
    config.quit_poll_interval = Duration::from_secs(3600);
    let server = Arc::new(start_server_with(config, logic.clone()).await);
    let port = server.local_addr().port();
    let serving = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.serve().await }
    });

    let col1 = col1_client(port);
    assert!(within(20, col1.get_tasks("col1")).await.expect("col1 GetTasks").quit);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!serving.is_finished(), "serve returned before every collaborator was told to quit");

    let col2 = client(port, Some(client_tls(&pki().col2)));
    assert!(within(20, col2.get_tasks("col2")).await.expect("col2 GetTasks").quit);
    within(20, serving).await.expect("serve task").expect("serve");
    assert_eq!(logic.quits_sent(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_makes_serve_return() {
    let server = Arc::new(mtls_server(TestLogic::new()).await);
    let serving = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.serve().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!serving.is_finished());

    server.stop();
    within(20, serving).await.expect("serve task").expect("serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_refuses_connections() {
    let server = mtls_server(TestLogic::new()).await;
    let port = server.local_addr().port();
    within(20, server.shutdown()).await.expect("shutdown");

    let client = col1_client(port);
    let result = within(20, client.get_tasks("col1")).await;
    assert_error(result, ofl_code::RetriesExhausted, "GetTasks");
}

// ---------------------------------------------------------------------------
// RPCs OpenFL 1.6's aggregator leaves unimplemented
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_stream_trained_model_and_experiment_description_are_unimplemented() {
    let server = mtls_server(TestLogic::new()).await;
    let mut raw = raw_client(server.local_addr().port(), Some(client_tls(&pki().col1)));

    let metric = within(20, raw.get_metric_stream(GetMetricStreamRequest { experiment_name: "x".into() })).await;
    assert_eq!(metric.expect_err("GetMetricStream").code(), tonic::Code::Unimplemented);
    let model = within(20, raw.get_trained_model(GetTrainedModelRequest::default())).await;
    assert_eq!(model.expect_err("GetTrainedModel").code(), tonic::Code::Unimplemented);
    let description =
        within(20, raw.get_experiment_description(GetExperimentDescriptionRequest { name: "x".into() })).await;
    assert_eq!(description.expect_err("GetExperimentDescription").code(), tonic::Code::Unimplemented);
}

// ---------------------------------------------------------------------------
// Malformed upload streams (raw tonic client)
// ---------------------------------------------------------------------------

/// One well-formed TaskResults from col1, serialized.
fn serialized_results(tensor_len: usize) -> Bytes {
    let results = task_results(tensor_len, 1);
    Bytes::from(
        WireTaskResults {
            header: Some(MessageHeader {
                sender: "col1".into(),
                receiver: AGGREGATOR_UUID.into(),
                federation_uuid: FEDERATION_UUID.into(),
                single_col_cert_common_name: String::new(),
            }),
            round_number: results.round_number,
            task_name: results.task_name,
            data_size: results.data_size,
            tensors: results.tensors,
        }
        .encode_to_vec(),
    )
}

fn chunk(bytes: Bytes) -> DataStream {
    DataStream { size: bytes.len() as u32, npbytes: bytes }
}

fn chunks_of(payload: &Bytes, size: usize) -> Vec<DataStream> {
    (0..payload.len()).step_by(size).map(|start| chunk(payload.slice(start..(start + size).min(payload.len())))).collect()
}

async fn send_raw(
    server: &openfl_transport::aggregator::AggregatorServer,
    messages: Vec<DataStream>,
) -> Result<(), tonic::Status> {
    let mut raw = raw_client(server.local_addr().port(), Some(client_tls(&pki().col1)));
    within(30, raw.send_local_task_results(tokio_stream::iter(messages))).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_well_formed_stream_is_accepted() {
    let logic = TestLogic::new();
    let server = mtls_server(logic.clone()).await;
    send_raw(&server, chunks_of(&serialized_results(10_000), 1000)).await.expect("a well-formed stream");
    assert_eq!(logic.results().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_stream_is_invalid_argument() {
    let logic = TestLogic::new();
    let server = mtls_server(logic.clone()).await;
    assert_status(send_raw(&server, vec![]).await, tonic::Code::InvalidArgument, "empty stream");
    assert!(logic.results().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_of_empty_chunks_is_invalid_argument() {
    let server = mtls_server(TestLogic::new()).await;
    let empties = vec![chunk(Bytes::new()), chunk(Bytes::new())];
    assert_status(send_raw(&server, empties).await, tonic::Code::InvalidArgument, "empty stream");
}

/// OpenFL 1.6's aggregator ignores a chunk's `size` field (it concatenates
/// `npbytes`): a stream whose size fields lie is accepted as OpenFL accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_size_field_differing_from_its_bytes_is_ignored_as_openfl_does() {
    let logic = TestLogic::new();
    let server = mtls_server(logic.clone()).await;
    let payload = serialized_results(10_000);
    let mut messages = chunks_of(&payload, 1000);
    messages[2].size += 1;
    messages[3].size = 0;
    messages[4].size = u32::MAX;
    send_raw(&server, messages).await.expect("accepted as OpenFL accepts it");
    let results = logic.results();
    assert_eq!(results.len(), 1);
    let expected = task_results(10_000, 1);
    assert_eq!(results[0].1.tensors, expected.tensors, "the bytes decide, not the size fields");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_over_the_maximum_message_size_is_resource_exhausted() {
    let logic = TestLogic::new();
    let mut config = server_config(0, Some(server_tls()));
    config.max_message_size = 256 * 1024;
    let server = start_server_with(config, logic.clone()).await;
    // Each chunk is under the limit; together they are twice over it.
    let messages = chunks_of(&serialized_results(512 * 1024), 64 * 1024);
    assert_status(send_raw(&server, messages).await, tonic::Code::ResourceExhausted, "maximum message size");
    assert!(logic.results().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_stream_is_invalid_argument() {
    let logic = TestLogic::new();
    let server = mtls_server(logic.clone()).await;
    // Eleven continuation bytes: an over-long varint where a field key must be.
    let garbage = Bytes::from_static(&[0xff; 11]);
    assert_status(send_raw(&server, vec![chunk(garbage)]).await, tonic::Code::InvalidArgument, "TaskResults");
    assert!(logic.results().is_empty());
}

// ---------------------------------------------------------------------------
// Size limits: every path answers RESOURCE_EXHAUSTED (tonic's own checks say
// OUT_OF_RANGE; gRPC's C core, OpenFL's peer, says RESOURCE_EXHAUSTED).
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_chunk_over_the_server_limit_is_resource_exhausted() {
    let logic = TestLogic::new();
    let mut config = server_config(0, Some(server_tls()));
    config.max_message_size = 256 * 1024;
    let server = start_server_with(config, logic.clone()).await;
    let messages = chunks_of(&serialized_results(512 * 1024), 1 << 20);
    assert_status(send_raw(&server, messages).await, tonic::Code::ResourceExhausted, "too large");
    assert!(logic.results().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_over_the_server_limit_is_resource_exhausted() {
    let logic = TestLogic::new();
    logic.set_tensor(tensor("big", 512 * 1024, 3));
    let mut config = server_config(0, Some(server_tls()));
    config.max_message_size = 256 * 1024;
    let server = start_server_with(config, logic).await;
    let client = col1_client(server.local_addr().port());
    let request = TensorRequest { tensor_name: "big".into(), ..Default::default() };
    let result = within(20, client.get_aggregated_tensor("col1", &request)).await;
    assert_error(result, ofl_code::ResourceExhausted, "maximum message size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_over_the_client_limit_is_resource_exhausted() {
    let logic = TestLogic::new();
    logic.set_tensor(tensor("big", 512 * 1024, 3));
    let server = mtls_server(logic).await;
    let mut config = client_config(server.local_addr().port(), Some(client_tls(&pki().col1)));
    config.max_message_size = 256 * 1024;
    let client = openfl_transport::aggregator::AggregatorClient::new(config).unwrap();
    let request = TensorRequest { tensor_name: "big".into(), ..Default::default() };
    let result = within(20, client.get_aggregated_tensor("col1", &request)).await;
    assert_error(result, ofl_code::ResourceExhausted, "too large");
}
