//! The deterministic payload of the interop tests, as
//! `tests/interop/common.py` builds it: byte i of pattern(seed, n) is
//! (i*7 + seed) % 256, so every side can build and check it without
//! exchanging anything.

use bytes::Bytes;
use serde_json::{json, Value};

use openfl_transport::proto::aggregator::Task;
use openfl_transport::proto::{MetadataProto, NamedTensor};

pub const MIB: f64 = (1u64 << 20) as f64;

/// The seed of what the aggregator serves (`common.SEED_AGGREGATED`).
pub const SEED_AGGREGATED: u8 = 1;
/// The seed of what a collaborator uploads (`common.SEED_UPLOADED`).
pub const SEED_UPLOADED: u8 = 2;

/// n bytes where byte i is (i*7 + seed) % 256, as `common.pattern`.
pub fn pattern(seed: u8, n: usize) -> Vec<u8> {
    let period: Vec<u8> = (0..256u32).map(|i| ((i * 7 + u32::from(seed)) % 256) as u8).collect();
    let mut out = Vec::with_capacity(n);
    while out.len() + 256 <= n {
        out.extend_from_slice(&period);
    }
    out.extend_from_slice(&period[..n - out.len()]);
    out
}

/// `data` as OpenFL's lossless pipeline describes a flat uint8 array: one
/// `MetadataProto` whose `int_list` is the shape [len], as `common.named_tensor`.
pub fn named_tensor(name: &str, data: Bytes, round_number: i32, tags: Vec<String>) -> NamedTensor {
    NamedTensor {
        name: name.into(),
        round_number,
        lossless: true,
        report: false,
        tags,
        transformer_metadata: vec![MetadataProto { int_list: vec![data.len() as i32], ..Default::default() }],
        data_bytes: data,
    }
}

/// The one task the pattern aggregators hand out, as `openfl_server.py`'s.
pub fn train_task() -> Task {
    Task { name: "train".into(), function_name: "train_task".into(), task_type: "train".into(), apply_local: false }
}

/// `common.describe_tensor` in Rust: a JSON summary of `t` and whether its
/// bytes equal `expected`.
pub fn describe_tensor(t: &NamedTensor, expected: &[u8]) -> Value {
    let int_lists: Vec<&[i32]> = t.transformer_metadata.iter().map(|m| m.int_list.as_slice()).collect();
    json!({
        "name": t.name,
        "round_number": t.round_number,
        "lossless": t.lossless,
        "report": t.report,
        "tags": t.tags,
        "int_list": int_lists,
        "bytes": t.data_bytes.len(),
        "match": t.data_bytes.as_ref() == expected,
    })
}
