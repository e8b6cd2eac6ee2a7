//! Received tensor data starts on a 64-byte boundary on every receive path
//! (issue 9 item 4): the collaborator's GetAggregatedTensor download, the
//! server's SendLocalTaskResults upload (our client's chunks and a raw
//! stream cut at odd places), and the director's models (SetNewExperiment's
//! initial model as the host sees it, GetTrainedModel on the frontend).
//! Tensors get odd sizes and odd names and tags, so that their data sits at
//! varying offsets of the encoding: before, it landed wherever that was
//! (seen: 33 and 35 modulo 64).

mod common;
mod director_common;

use bytes::Bytes;
use prost::Message;

use common::*;
use director_common::{names, shard, start_mtls};
use openfl_transport::aggregator::{TaskResults, TensorRequest};
use openfl_transport::proto::aggregator::{MessageHeader, TaskResults as WireTaskResults};
use openfl_transport::proto::{DataStream, ModelProto, NamedTensor};

/// Sizes with every remainder modulo 4 and 64, from a metric to 3 MiB
/// (more than one upload chunk).
const SIZES: &[usize] = &[4, 1, 3, 65, 1000, 63, 0, 70_001, 5, 129, 3 << 20, 17];

fn odd_tensor(i: usize, len: usize) -> NamedTensor {
    let mut t = tensor(&format!("layer{i}.{}", "w".repeat(i % 5)), len, i as u8);
    t.tags = (0..1 + i % 3).map(|k| "tag".repeat(k + 1)).collect();
    t
}

fn odd_tensors() -> Vec<NamedTensor> {
    SIZES.iter().enumerate().map(|(i, &len)| odd_tensor(i, len)).collect()
}

fn assert_aligned(tensors: &[NamedTensor], path: &str) {
    for t in tensors {
        let offset = t.data_bytes.as_ptr() as usize % 64;
        assert!(t.data_bytes.is_empty() || offset == 0, "{path}: {:?} data at offset {offset} mod 64", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloaded_tensors_are_aligned() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col1)));
    for want in odd_tensors() {
        logic.set_tensor(want.clone());
        let request = TensorRequest { tensor_name: want.name.clone(), ..Default::default() };
        let got = within(20, client.get_aggregated_tensor("col1", &request)).await.expect("GetAggregatedTensor");
        assert_eq!(got.name, want.name);
        assert_bytes_eq(&got.data_bytes, &want.data_bytes);
        assert_eq!(got, want);
        assert_aligned(&[got], "download");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_tensors_are_aligned() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col1)));
    let results = TaskResults { round_number: 3, task_name: "train_x".into(), data_size: 7, tensors: odd_tensors() };
    within(30, client.send_local_task_results("col1", &results)).await.expect("SendLocalTaskResults");
    let received = logic.results();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].1, results);
    assert_aligned(&received[0].1.tensors, "upload");
}

/// The upload as one serialized message, cut into chunks of `size` bytes
/// (as OpenFL's client cuts it: whatever falls where).
fn raw_chunks(tensors: Vec<NamedTensor>, size: usize) -> Vec<DataStream> {
    let message = WireTaskResults {
        header: Some(MessageHeader {
            sender: "col1".into(),
            receiver: AGGREGATOR_UUID.into(),
            federation_uuid: FEDERATION_UUID.into(),
            single_col_cert_common_name: String::new(),
        }),
        round_number: 1,
        task_name: "train".into(),
        data_size: 1,
        tensors,
    };
    let payload = Bytes::from(message.encode_to_vec());
    (0..payload.len())
        .step_by(size)
        .map(|start| {
            let npbytes = payload.slice(start..(start + size).min(payload.len()));
            DataStream { size: npbytes.len() as u32, npbytes }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_uploads_cut_anywhere_are_aligned() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let small: Vec<NamedTensor> = odd_tensors().into_iter().filter(|t| t.data_bytes.len() < 1 << 20).collect();
    for size in [1usize, 7, 333, 64 << 10, 2 << 20] {
        let mut raw = raw_client(server.local_addr().port(), Some(client_tls(&pki().col1)));
        let stream = tokio_stream::iter(raw_chunks(small.clone(), size));
        within(60, raw.send_local_task_results(stream)).await.expect("a well-formed stream");
    }
    let received = logic.results();
    assert_eq!(received.len(), 5);
    for (_, results) in &received {
        assert_eq!(results.tensors, small);
        assert_aligned(&results.tensors, "raw upload");
    }
}

fn odd_model() -> ModelProto {
    ModelProto { tensors: odd_tensors().into_iter().filter(|t| t.data_bytes.len() < 1 << 20).collect() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_models_are_aligned() {
    let d = start_mtls().await;
    assert!(within(10, d.envoy("col1").report_shard_info(shard(None))).await.unwrap());
    let alice = d.frontend("alice");
    let archive = d.archive("exp", 1000, 3);
    let initial = odd_model();
    assert!(within(20, alice.set_new_experiment("exp", &names(&["col1"]), &archive, Some(&initial))).await.unwrap());
    // The host's start hook runs once the experiment is reviewed.
    for _ in 0..200 {
        if !d.hooks.started.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    {
        let started = d.hooks.started.lock().unwrap();
        let model = started[0].initial_model.as_ref().expect("the initial model");
        assert_eq!(model, &initial);
        assert_aligned(&model.tensors, "SetNewExperiment (director server)");
    }
    let h = d.handle();
    h.set_best_model("exp", odd_model()).unwrap();
    h.set_last_model("exp", ModelProto { tensors: odd_model().tensors.into_iter().rev().collect() }).unwrap();
    for best in [true, false] {
        let got = if best { alice.get_best_model("exp").await } else { alice.get_last_model("exp").await };
        let got = got.unwrap().expect("a model");
        assert_eq!(got.tensors.len(), initial.tensors.len());
        assert_aligned(&got.tensors, "GetTrainedModel (frontend client)");
    }
}
