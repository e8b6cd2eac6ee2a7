use bytes::{BufMut, Bytes};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use super::*;
use crate::proto::aggregator::{GetAggregatedTensorResponse, MessageHeader, TaskResults};
use crate::proto::director::{ExperimentData, ExperimentInfo, TrainedModelResponse};
use crate::proto::{MetadataProto, ModelProto, NamedTensor};

/// A tensor whose name, tags and metadata have odd lengths, so the offset
/// of its data in the encoding varies from one tensor to the next.
fn tensor(i: usize, len: usize) -> NamedTensor {
    NamedTensor {
        name: "n".repeat(1 + i * 7 % 13),
        round_number: i as i32,
        lossless: i % 2 == 0,
        report: false,
        tags: (0..i % 3).map(|t| "t".repeat(t + i)).collect(),
        transformer_metadata: vec![MetadataProto { int_list: vec![len as i32; i % 4], ..Default::default() }],
        data_bytes: Bytes::from((0..len).map(|b| (b * 31 + i) as u8).collect::<Vec<_>>()),
    }
}

fn tensors() -> Vec<NamedTensor> {
    [4usize, 1, 3, 65, 1000, 63, 0, 70_001, 5, 129].iter().enumerate().map(|(i, &n)| tensor(i, n)).collect()
}

fn results() -> TaskResults {
    TaskResults {
        header: Some(MessageHeader { sender: "col-odd".into(), receiver: "agg".into(), ..Default::default() }),
        round_number: 3,
        task_name: "train_odd".into(),
        data_size: 77,
        tensors: tensors(),
    }
}

fn place(path: &'static [u32], encoded: &[u8], chunk: usize) -> Segments {
    let mut placement = Placement::new(path, 1 << 30);
    for piece in encoded.chunks(chunk) {
        placement.push(piece).unwrap();
    }
    placement.finish()
}

fn assert_all_aligned(tensors: &[NamedTensor]) {
    for t in tensors {
        assert!(t.data_bytes.is_empty() || t.data_bytes.as_ptr() as usize % 64 == 0, "{:?} misaligned", t.name);
    }
}

#[test]
fn task_results_decode_equal_with_every_tensor_aligned() {
    let message = results();
    let encoded = message.encode_to_vec();
    for chunk in [1, 2, 7, 777, 65_536, encoded.len()] {
        let segments = place(TASK_RESULTS, &encoded, chunk);
        assert_eq!(segments.to_vec(), encoded, "chunk {chunk}: the placement keeps the encoding");
        let decoded: TaskResults = decode(segments).unwrap();
        assert_eq!(decoded, message, "chunk {chunk}");
        assert_all_aligned(&decoded.tensors);
    }
}

#[test]
fn the_unaligned_decode_of_today_is_misaligned() {
    // What the test above guards against: prost over one buffer puts data
    // wherever the encoding does.
    let encoded = Bytes::from(results().encode_to_vec());
    let decoded = TaskResults::decode(encoded).unwrap();
    assert!(decoded.tensors.iter().any(|t| !t.data_bytes.is_empty() && t.data_bytes.as_ptr() as usize % 64 != 0));
}

#[test]
fn responses_and_models_are_aligned() {
    let response = GetAggregatedTensorResponse { header: None, round_number: 2, tensor: Some(tensor(5, 333)) };
    let decoded: GetAggregatedTensorResponse = decode(place(AGGREGATED_TENSOR, &response.encode_to_vec(), 100)).unwrap();
    assert_eq!(decoded, response);
    assert_all_aligned(&[decoded.tensor.unwrap()]);

    let model = TrainedModelResponse { model_proto: Some(ModelProto { tensors: tensors() }) };
    let decoded: TrainedModelResponse = decode(place(TRAINED_MODEL, &model.encode_to_vec(), 999)).unwrap();
    assert_eq!(decoded, model);
    assert_all_aligned(&decoded.model_proto.unwrap().tensors);

    let info = ExperimentInfo {
        name: "exp".into(),
        collaborator_names: vec!["a".into(), "bcd".into()],
        experiment_data: Some(ExperimentData { size: 5, npbytes: Bytes::from_static(b"abcde") }),
        model_proto: Some(ModelProto { tensors: tensors() }),
    };
    let decoded: ExperimentInfo = decode(place(EXPERIMENT_INFO, &info.encode_to_vec(), 4096)).unwrap();
    assert_eq!(decoded, info);
    assert_all_aligned(&decoded.model_proto.unwrap().tensors);
}

/// A `NamedTensor` written by hand: data before the name, and data twice.
fn odd_tensor() -> Vec<u8> {
    let mut t = Vec::new();
    for data in [&b"first!"[..], &[9u8; 37][..]] {
        encode_key(7, WireType::LengthDelimited, &mut t);
        encode_varint(data.len() as u64, &mut t);
        t.put_slice(data);
    }
    encode_key(1, WireType::LengthDelimited, &mut t);
    encode_varint(3, &mut t);
    t.put_slice(b"odd");
    t
}

#[test]
fn fields_out_of_order_and_repeated_are_still_placed() {
    let mut encoded = Vec::new();
    encode_key(2, WireType::Varint, &mut encoded);
    encode_varint(4, &mut encoded);
    for _ in 0..3 {
        let t = odd_tensor();
        encode_key(5, WireType::LengthDelimited, &mut encoded);
        encode_varint(t.len() as u64, &mut encoded);
        encoded.extend_from_slice(&t);
    }
    let mut placement = Placement::new(TASK_RESULTS, 1 << 20);
    placement.push(&encoded).unwrap();
    assert_eq!(placement.top_count(), 3);
    let decoded: TaskResults = decode(placement.finish()).unwrap();
    assert_eq!(decoded, TaskResults::decode(&encoded[..]).unwrap());
    assert_eq!(decoded.tensors.len(), 3);
    assert_eq!(&decoded.tensors[2].data_bytes[..], &[9u8; 37][..], "the last data_bytes wins, as in prost");
    assert_all_aligned(&decoded.tensors);
}

#[test]
fn what_the_scanner_cannot_follow_decodes_and_is_realigned() {
    // A group (wire type 3) in the middle: the scanner stops placing, prost
    // skips the group, and the fallback copies the data aligned.
    let mut encoded = Vec::new();
    encode_key(9, WireType::StartGroup, &mut encoded);
    encode_key(9, WireType::EndGroup, &mut encoded);
    encode_key(2, WireType::Varint, &mut encoded);
    encode_varint(1, &mut encoded);
    results().encode(&mut encoded).unwrap();
    let mut decoded: TaskResults = decode(place(TASK_RESULTS, &encoded, 10)).unwrap();
    assert_eq!(decoded.tensors, results().tensors);
    align_tensors(&mut decoded.tensors, "test").unwrap();
    assert_all_aligned(&decoded.tensors);
}

#[test]
fn the_maximum_size_counts_every_byte() {
    let encoded = results().encode_to_vec();
    let mut placement = Placement::new(TASK_RESULTS, encoded.len() - 1);
    let (a, b) = encoded.split_at(encoded.len() - 1);
    placement.push(a).unwrap();
    let error = placement.push(b).unwrap_err();
    assert_eq!(error.code(), crate::ofl_code::ResourceExhausted);
    assert!(error.message().contains("maximum message size"), "{}", error.message());
}

#[test]
fn a_length_past_its_parent_is_left_to_the_decoder() {
    // A tensor whose data_bytes announces more than the tensor holds.
    let mut encoded = Vec::new();
    encode_key(5, WireType::LengthDelimited, &mut encoded);
    encode_varint(3, &mut encoded);
    encode_key(7, WireType::LengthDelimited, &mut encoded);
    encode_varint(1 << 29, &mut encoded);
    encoded.push(1);
    let mut placement = Placement::new(TASK_RESULTS, 1 << 30);
    placement.push(&encoded).unwrap();
    assert!(decode::<TaskResults>(placement.finish()).is_err());
}

#[test]
fn unary_frames_are_read_across_any_split() {
    let response = GetAggregatedTensorResponse { header: None, round_number: 2, tensor: Some(tensor(3, 70_001)) };
    let encoded = response.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    framed.extend_from_slice(&encoded);
    for split in [1usize, 3, 5, 6, 4096] {
        let chunks: Vec<Bytes> = framed.chunks(split).map(Bytes::copy_from_slice).collect();
        let placement = unary::read_all(&chunks, AGGREGATED_TENSOR, 1 << 20).unwrap().unwrap();
        let decoded: GetAggregatedTensorResponse = decode(placement.finish()).unwrap();
        assert_eq!(decoded, response);
        assert_all_aligned(&[decoded.tensor.unwrap()]);
    }
    let too_big = unary::read_all(&[Bytes::from(framed.clone())], AGGREGATED_TENSOR, 1000).unwrap_err();
    assert_eq!(too_big.code(), tonic::Code::ResourceExhausted);
    let cut = unary::read_all(&[Bytes::copy_from_slice(&framed[..framed.len() - 1])], AGGREGATED_TENSOR, 1 << 20);
    assert_eq!(cut.unwrap_err().code(), tonic::Code::Internal, "a cut message is never complete");
    assert!(unary::read_all(&[], AGGREGATED_TENSOR, 10).unwrap().is_none());
}
