//! SendLocalTaskResults as the aggregator server receives it: a gRPC body of
//! `DataStream` chunks → `Reassembly` → `TaskResults` decode → header checks
//! → the built-in FedAvg. Also the upload side: `encode_in_chunks` of the
//! decoded message must concatenate to prost's encoding and reassemble to
//! the same message.
//!
//! Oracles: no panic; chunking is exact; when both collaborators upload the
//! same results for every task, the round ends and every trained model
//! tensor of the next model equals the uploaded values (the average of equal
//! values under equal weights is that value).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use openfl_transport::aggregator::checks::check_request;
use openfl_transport::aggregator::upload::encode_in_chunks;
use openfl_transport::aggregator::{AggregatorLogic, TaskResults as Results};
use openfl_transport::fedavg::{FedAvg, FedAvgOptions, Model, Tensor};
use openfl_transport::proto::aggregator::TaskResults;
use openfl_transport::proto::DataStream;
use openfl_transport::fuzzing::{Reassembly, Segments};
use openfl_transport_fuzz::federation::{AGGREGATOR_UUID, COLLABORATORS, FEDERATION_UUID, MODEL};
use openfl_transport_fuzz::{grpc_frames, same_f32};
use prost::Message;

/// Bound on one reassembled message (the server's is 1 GiB).
const MAX_MESSAGE: usize = 1 << 20;

fuzz_target!(|body: &[u8]| {
    let Some(buffer) = reassemble(body) else { return };
    let Ok(results) = TaskResults::decode(buffer) else { return };
    check_upload_chunking(&results);
    aggregate(&results);
});

fn reassemble(body: &[u8]) -> Option<Segments> {
    let mut reassembly = Reassembly::new(MAX_MESSAGE);
    for frame in grpc_frames(body) {
        let chunk = DataStream::decode(frame).ok()?;
        reassembly.push(chunk.size, &chunk.npbytes).ok()?;
    }
    reassembly.finish().ok()
}

fn check_upload_chunking(results: &TaskResults) {
    let encoded = results.encode_to_vec();
    for chunk_size in [1 + encoded.len() / 3, 4096] {
        let chunks = encode_in_chunks(results, chunk_size);
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= chunk_size));
        assert_eq!(chunks.concat(), encoded, "chunks of {chunk_size} bytes");
        let mut reassembly = Reassembly::new(MAX_MESSAGE * 2);
        for chunk in &chunks {
            reassembly.push(chunk.len() as u32, chunk).expect("our own chunks are accepted");
        }
        if encoded.is_empty() {
            assert!(reassembly.finish().is_err(), "an empty stream is refused");
            continue;
        }
        let again = TaskResults::decode(reassembly.finish().expect("non-empty")).expect("our encoding decodes");
        assert_eq!(again.encode_to_vec(), encoded);
    }
}

fn fedavg() -> FedAvg {
    let initial_model: Model = MODEL
        .iter()
        .map(|(name, shape)| {
            let len = shape.iter().product();
            (name.to_string(), Tensor::new(shape.to_vec(), vec![0.0; len]).unwrap())
        })
        .collect();
    FedAvg::new(FedAvgOptions {
        aggregator_uuid: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        collaborators: COLLABORATORS.iter().map(|c| c.to_string()).collect(),
        rounds_to_train: 2,
        initial_model,
        ..Default::default()
    })
    .unwrap()
}

/// Both collaborators upload `results` for every task of round 0.
fn aggregate(results: &TaskResults) {
    let fa = fedavg();
    let header = results.header.clone().unwrap_or_default();
    if check_request(fa.federation(), &header).is_err() {
        return;
    }
    let tasks: Vec<String> = FedAvgOptions::default_tasks().into_iter().map(|t| t.name).collect();
    for collaborator in COLLABORATORS {
        for task in &tasks {
            let upload = Results {
                round_number: 0,
                task_name: task.clone(),
                data_size: results.data_size,
                tensors: results.tensors.clone(),
            };
            if fa.send_local_task_results(collaborator, upload).is_err() {
                assert_eq!(fa.current_round(), 0, "a refused upload ends no round");
                return;
            }
        }
    }
    assert_eq!(fa.current_round(), 1, "every task reported by everyone ends the round");
    // Trained tensors by name; a name sent under several tag sets is skipped
    // (which one becomes the model is not specified).
    let mut trained: BTreeMap<&str, Option<Tensor>> = BTreeMap::new();
    for t in &results.tensors {
        if !t.report && !t.tags.iter().any(|g| g == "metric") && t.tags.iter().any(|g| g == "trained") {
            let tensor = Tensor::from_named_tensor(t).expect("accepted uploads decode");
            trained.entry(t.name.as_str()).and_modify(|e| *e = None).or_insert(Some(tensor));
        }
    }
    let model = fa.last_model();
    for (name, uploaded) in trained.into_iter().filter_map(|(n, t)| Some((n, t?))) {
        let averaged = &model[name];
        assert_eq!(averaged.shape, uploaded.shape, "{name}");
        assert!(
            averaged.values.iter().zip(&uploaded.values).all(|(a, u)| same_f32(*a, *u)),
            "{name}: the average of equal uploads differs from them"
        );
    }
}
