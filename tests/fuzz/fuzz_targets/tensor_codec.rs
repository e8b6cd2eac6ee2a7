//! FedAvg's tensor encoding (OpenFL's uncompressed float32 pipeline):
//! decoding arbitrary `NamedTensor`s and metadata, and encode → decode round
//! trips of arbitrary tensors.
//!
//! Oracles: a tensor decodes exactly when its bytes are whole float32 values
//! and the (single) metadata entry's `int_list` is a shape of non-negative
//! dimensions whose product is the value count (no entry: one dimension);
//! the decoded values are the bytes read as little-endian float32; encoding
//! a tensor and decoding it gives back every bit of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openfl_transport::fedavg::Tensor;
use openfl_transport::proto::NamedTensor;
use openfl_transport_fuzz::{same_bits, Input};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(named) = NamedTensor::decode(data) {
        decode_arbitrary(&named);
    }
    round_trip(data);
});

/// The shape a well-formed tensor has, or None when decoding must fail.
fn expected_shape(named: &NamedTensor) -> Option<Vec<usize>> {
    if named.data_bytes.len() % 4 != 0 {
        return None;
    }
    let len = named.data_bytes.len() / 4;
    let shape: Vec<usize> = match named.transformer_metadata.as_slice() {
        [] => vec![len],
        [metadata] => metadata.int_list.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?,
        _ => return None,
    };
    let product = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    (product == len).then_some(shape)
}

fn decode_arbitrary(named: &NamedTensor) {
    let decoded = Tensor::from_named_tensor(named);
    let expected = expected_shape(named);
    assert_eq!(decoded.is_ok(), expected.is_some(), "{named:?} → {decoded:?}");
    let Ok(tensor) = decoded else { return };
    assert_eq!(Some(&tensor.shape), expected.as_ref());
    let values: Vec<f32> =
        named.data_bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert!(same_bits(&tensor.values, &values));
    check_round_trip(&tensor, &named.name, named.round_number, named.report);
}

/// A tensor built from the input: up to 4 small dimensions, then values.
fn round_trip(data: &[u8]) {
    let mut input = Input::new(data);
    let dims = (input.byte() % 5) as usize;
    let shape: Vec<usize> = (0..dims).map(|_| (input.byte() % 9) as usize).collect();
    let values: Vec<f32> = input.rest().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let product: usize = shape.iter().product();
    let tensor = Tensor::new(shape.clone(), values.clone());
    assert_eq!(tensor.is_ok(), product == values.len(), "shape {shape:?}, {} values", values.len());
    if let Ok(tensor) = tensor {
        check_round_trip(&tensor, "t", 3, false);
    }
}

fn check_round_trip(tensor: &Tensor, name: &str, round: i32, report: bool) {
    let tags = ["trained", "model"];
    let named = tensor.to_named_tensor(name, round, report, &tags);
    assert_eq!(named.name, name);
    assert_eq!((named.round_number, named.report, named.lossless), (round, report, true));
    assert_eq!(named.tags, ["compressed", "model", "trained"]);
    assert_eq!(named.data_bytes.len(), tensor.values.len() * 4);
    let wire = NamedTensor::decode(named.encode_to_vec().as_slice()).expect("our encoding decodes");
    let back = Tensor::from_named_tensor(&wire).expect("our encoding is well-formed");
    assert_eq!(back.shape, tensor.shape);
    assert!(same_bits(&back.values, &tensor.values), "values changed in a round trip");
}
