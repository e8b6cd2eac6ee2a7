//! Uploads that the client abandons are never taken as complete.
//!
//! A client stream counts only when the client ended it with END_STREAM. One
//! that it reset (RST_STREAM CANCEL, as grpcio's `future.cancel()` or a
//! dropped call sends; or NO_ERROR) must not reach the aggregation logic or
//! register an experiment, even when its chunks stop on a message boundary so
//! that the partial bytes decode. The raw HTTP/2 peer sends the frames
//! exactly as such a client would.

mod common;
mod director_common;
mod raw_h2;

use std::time::Duration;

use bytes::Bytes;
use h2::Reason;
use prost::Message;

use common::*;
use openfl_transport::proto::aggregator::{MessageHeader, TaskResults};
use openfl_transport::proto::director::{ExperimentData, ExperimentInfo};
use openfl_transport::proto::DataStream;

const UPLOAD: &str = "/openfl.aggregator.Aggregator/SendLocalTaskResults";
const NEW_EXPERIMENT: &str = "/openfl.director.Director/SetNewExperiment";

/// col1's TaskResults with two tensors, as OpenFL serializes them (tensors
/// last), and the length of its prefix that ends right after the first
/// tensor: that prefix alone decodes as a valid one-tensor TaskResults.
fn results_and_first_tensor_end() -> (Bytes, usize) {
    let header = MessageHeader {
        sender: "col1".into(),
        receiver: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        single_col_cert_common_name: String::new(),
    };
    let full = TaskResults {
        header: Some(header),
        round_number: 1,
        task_name: "train".into(),
        data_size: 100,
        tensors: vec![tensor("w", 4096, 1), tensor("b", 4096, 2)],
    };
    let mut one = full.clone();
    one.tensors.truncate(1);
    let encoded = Bytes::from(full.encode_to_vec());
    let first_end = one.encoded_len();
    assert_eq!(TaskResults::decode(encoded.slice(..first_end)).unwrap(), one, "the prefix decodes");
    (encoded, first_end)
}

fn chunk(bytes: Bytes) -> DataStream {
    DataStream { size: bytes.len() as u32, npbytes: bytes }
}

/// Uploads the first tensor's worth of col1's results, then ends the stream
/// with `end`: `None` for END_STREAM, `Some(reason)` for RST_STREAM.
async fn upload_first_tensor(port: u16, end: Option<Reason>) -> Option<i32> {
    let (encoded, first_end) = results_and_first_tensor_end();
    let mut connection = raw_h2::connect(port).await;
    let mut call = raw_h2::start_call(&mut connection, UPLOAD, &[]).await;
    call.send_message(&chunk(encoded.slice(..first_end)), end.is_none());
    match end {
        None => call.grpc_status(10).await,
        Some(reason) => {
            // Let the DATA frame reach the server before the reset.
            tokio::time::sleep(Duration::from_millis(300)).await;
            call.reset(reason);
            // Whatever the server does with it, it does it within this time.
            tokio::time::sleep(Duration::from_millis(700)).await;
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_uploads_never_reach_the_logic() {
    let logic = TestLogic::new();
    let server = start_server(None, logic.clone()).await;
    let port = server.local_addr().port();

    for reason in [Reason::CANCEL, Reason::NO_ERROR] {
        within(20, upload_first_tensor(port, Some(reason))).await;
        assert_eq!(logic.results().len(), 0, "an upload reset with {reason:?} was counted");
    }

    // The same bytes ended with END_STREAM are a complete (one-tensor) upload.
    assert_eq!(within(20, upload_first_tensor(port, None)).await, Some(0), "status OK");
    let results = logic.results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "col1");
    assert_eq!(results[0].1.tensors.len(), 1);
}

fn experiment_chunk(data: &[u8]) -> ExperimentInfo {
    ExperimentInfo {
        name: "mnist".into(),
        collaborator_names: vec!["col1".into()],
        experiment_data: Some(ExperimentData { size: data.len() as u32, npbytes: Bytes::copy_from_slice(data) }),
        model_proto: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_archive_uploads_register_no_experiment() {
    let d = director_common::start_with(false, |_| {}).await;
    let port = d.port();
    for reason in [Reason::CANCEL, Reason::NO_ERROR] {
        let mut connection = raw_h2::connect(port).await;
        let mut call = raw_h2::start_call(&mut connection, NEW_EXPERIMENT, &[("client_id", "alice")]).await;
        call.send_message(&experiment_chunk(&pattern(50_000, 3)), false);
        tokio::time::sleep(Duration::from_millis(300)).await;
        call.reset(reason);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let listed = within(10, d.frontend("alice").get_experiments_list()).await.expect("listing experiments");
        assert!(listed.is_empty(), "an archive upload reset with {reason:?} registered {listed:?}");
        let leftovers: Vec<_> = std::fs::read_dir(d.archive_dir()).unwrap().collect();
        assert!(leftovers.is_empty(), "files left after a reset upload: {leftovers:?}");
    }

    // The same chunk ended with END_STREAM registers the experiment.
    let mut connection = raw_h2::connect(port).await;
    let mut call = raw_h2::start_call(&mut connection, NEW_EXPERIMENT, &[("client_id", "alice")]).await;
    call.send_message(&experiment_chunk(&pattern(50_000, 3)), true);
    assert_eq!(call.grpc_status(10).await, Some(0));
    let listed = within(10, d.frontend("alice").get_experiments_list()).await.expect("listing experiments");
    assert_eq!(listed.len(), 1);
}
