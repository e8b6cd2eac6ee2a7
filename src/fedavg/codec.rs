//! OpenFL's tensor encoding (the uncompressed `NoCompressionPipeline`) and
//! back: [`Tensor`] (shape + float32 values) <-> [`NamedTensor`] on the
//! wire, plus the tag rules an upload and a served tensor follow. See the
//! module docs of [`crate::fedavg`] ("Tensor encoding") for the format.
//!
//! This is the only part of FedAvg other layers use (the director's C API
//! builds and reads models with it).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::proto::{MetadataProto, NamedTensor};

pub(super) const TAG_MODEL: &str = "model";
pub(super) const TAG_TRAINED: &str = "trained";
pub(super) const TAG_METRIC: &str = "metric";
pub(super) const TAG_COMPRESSED: &str = "compressed";
pub(super) const TAG_LOSSY_COMPRESSED: &str = "lossy_compressed";
pub(super) const TAG_DELTA: &str = "delta";
pub(super) const TAG_AGGREGATED: &str = "aggregated";

/// A float32 tensor: its shape and its values in C (row-major) order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor {
    /// Dimensions; empty for a scalar. Each must fit an `i32` (the wire type).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values (1 for a scalar).
    pub values: Vec<f32>,
}

/// A model: tensor name → tensor, in name order.
pub type Model = BTreeMap<String, Tensor>;

impl Tensor {
    /// A tensor, checked: the values must number the product of the shape,
    /// and every dimension must fit an `i32`. Errors: `InvalidArgument`.
    pub fn new(shape: Vec<usize>, values: Vec<f32>) -> Result<Self> {
        check_shape("tensor", &shape, values.len())?;
        Ok(Self { shape, values })
    }

    /// A scalar (shape `[]`), as OpenFL's task runners report metrics.
    pub fn scalar(value: f32) -> Self {
        Self { shape: Vec::new(), values: vec![value] }
    }

    /// The values as little-endian float32 bytes (OpenFL's
    /// `Float32NumpyArrayToBytes`).
    pub fn to_le_bytes(&self) -> Bytes {
        encode_f32_le(self.values.iter().copied())
    }

    /// The tensor as OpenFL's lossless pipeline sends it: `tags` plus
    /// `compressed` (sorted, deduplicated), the shape in
    /// `transformer_metadata[0].int_list`, `lossless = true`.
    pub fn to_named_tensor(&self, name: &str, round_number: i32, report: bool, tags: &[&str]) -> NamedTensor {
        let tags = normalize_tags(tags.iter().copied().chain([TAG_COMPRESSED]));
        named_tensor(name, round_number, report, tags, &self.shape, self.to_le_bytes(), true)
    }

    /// Decodes a tensor encoded as OpenFL's uncompressed pipeline does (see
    /// the module docs). Errors: `InvalidArgument` naming the tensor.
    pub fn from_named_tensor(tensor: &NamedTensor) -> Result<Self> {
        Ok(decode_named_tensor(tensor)?.to_tensor())
    }
}

/// Checks that `len` values fill `shape` and that every dimension fits the
/// wire's `i32`.
pub(super) fn check_shape(what: &str, shape: &[usize], len: usize) -> Result<()> {
    if let Some(d) = shape.iter().find(|&&d| i32::try_from(d).is_err()) {
        return Err(invalid(format!("{what}: dimension {d} does not fit an int32")));
    }
    let product = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if product != Some(len) {
        return Err(invalid(format!("{what}: shape {shape:?} does not hold {len} values")));
    }
    Ok(())
}

pub(super) fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_argument(message)
}


/// Little-endian float32 bytes of `values`.
pub(super) fn encode_f32_le(values: impl Iterator<Item = f32>) -> Bytes {
    let mut out = Vec::with_capacity(values.size_hint().0 * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}

/// The float32 values of little-endian bytes (length a multiple of 4).
fn decode_f32_le(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Sorted, deduplicated tags (OpenFL's `change_tags` sorts too).
pub(super) fn normalize_tags<S: Into<String>>(tags: impl IntoIterator<Item = S>) -> Vec<String> {
    let set: BTreeSet<String> = tags.into_iter().map(Into::into).collect();
    set.into_iter().collect()
}

fn wire_shape(shape: &[usize]) -> Vec<i32> {
    shape.iter().map(|&d| i32::try_from(d).unwrap_or(i32::MAX)).collect()
}

pub(super) fn named_tensor(
    name: &str,
    round_number: i32,
    report: bool,
    tags: Vec<String>,
    shape: &[usize],
    data_bytes: Bytes,
    lossless: bool,
) -> NamedTensor {
    NamedTensor {
        name: name.to_string(),
        round_number,
        lossless,
        report,
        tags,
        transformer_metadata: vec![MetadataProto { int_list: wire_shape(shape), ..Default::default() }],
        data_bytes,
    }
}

/// Float32 values as they travel: little-endian bytes, read in place (no
/// copy). What an [`Aggregation`](super::Aggregation) is given.
#[derive(Clone, Copy, Debug)]
pub struct F32Values<'a> {
    bytes: &'a [u8],
}

impl<'a> F32Values<'a> {
    /// The values held by `bytes` (little-endian float32). Errors:
    /// `InvalidArgument` when the length is not a multiple of 4.
    pub fn from_le_bytes(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() % 4 != 0 {
            return Err(invalid(format!("{} bytes is not a whole number of float32 values", bytes.len())));
        }
        Ok(Self { bytes })
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The values, decoded one by one.
    pub fn iter(&self) -> impl Iterator<Item = f32> + 'a {
        decode_f32_le(self.bytes)
    }
}

/// A tensor as the aggregator keeps it: shape plus float32 LE bytes (for an
/// upload, a slice of the received buffer: no copy).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StoredTensor {
    pub(super) shape: Vec<usize>,
    pub(super) data: Bytes,
}

impl StoredTensor {
    pub(super) fn from_tensor(tensor: &Tensor) -> Self {
        Self { shape: tensor.shape.clone(), data: tensor.to_le_bytes() }
    }

    pub(super) fn len(&self) -> usize {
        self.data.len() / 4
    }

    pub(super) fn values(&self) -> impl Iterator<Item = f32> + '_ {
        decode_f32_le(&self.data)
    }

    /// The values, read in place.
    pub(super) fn f32_values(&self) -> F32Values<'_> {
        F32Values { bytes: &self.data }
    }

    pub(super) fn to_tensor(&self) -> Tensor {
        Tensor { shape: self.shape.clone(), values: self.values().collect() }
    }
}

pub(super) fn decode_named_tensor(tensor: &NamedTensor) -> Result<StoredTensor> {
    let name = &tensor.name;
    if tensor.data_bytes.len() % 4 != 0 {
        return Err(invalid(format!(
            "tensor {name:?}: {} bytes is not a whole number of float32 values",
            tensor.data_bytes.len()
        )));
    }
    let len = tensor.data_bytes.len() / 4;
    let shape = match tensor.transformer_metadata.as_slice() {
        [] => vec![len],
        [metadata] => decode_shape(name, &metadata.int_list)?,
        more => {
            return Err(invalid(format!(
                "tensor {name:?}: {} transformer metadata entries; only the uncompressed \
                 float32 pipeline (one entry) is supported",
                more.len()
            )))
        }
    };
    check_shape(&format!("tensor {name:?}"), &shape, len)?;
    Ok(StoredTensor { shape, data: tensor.data_bytes.clone() })
}

fn decode_shape(name: &str, int_list: &[i32]) -> Result<Vec<usize>> {
    int_list
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| invalid(format!("tensor {name:?}: negative dimension {d}"))))
        .collect()
}


/// The tags an upload is stored under: `compressed` dropped; lossy and delta
/// encodings refused.
pub(super) fn upload_tags(tensor: &NamedTensor) -> Result<Vec<String>> {
    for refused in [TAG_LOSSY_COMPRESSED, TAG_DELTA] {
        if tensor.tags.iter().any(|t| t == refused) {
            return Err(invalid(format!(
                "tensor {:?}: tag {refused:?} is not supported (only uncompressed full tensors: \
                 no compression pipeline, delta_updates: false)",
                tensor.name
            )));
        }
    }
    Ok(normalize_tags(tensor.tags.iter().filter(|t| *t != TAG_COMPRESSED).cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ofl_code;

    #[test]
    fn f32_encoding_round_trips() {
        let values =
            vec![0.0, -0.0, 1.0, -1.5, f32::MIN_POSITIVE / 2.0, f32::MAX, f32::INFINITY, f32::NAN, 0.1];
        let tensor = Tensor::new(vec![3, 3], values.clone()).unwrap();
        let bytes = tensor.to_le_bytes();
        assert_eq!(bytes.len(), 36);
        assert_eq!(&bytes[8..12], &[0x00, 0x00, 0x80, 0x3f]); // 1.0f32, little-endian
        let decoded = Tensor::from_named_tensor(&tensor.to_named_tensor("t", 0, false, &[])).unwrap();
        assert_eq!(decoded.shape, vec![3, 3]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&decoded.values), bits(&values));
    }

    #[test]
    fn decoding_rejects_malformed_tensors() {
        let mut t = Tensor::new(vec![2], vec![1.0, 2.0]).unwrap().to_named_tensor("t", 0, false, &[]);
        t.data_bytes = Bytes::from_static(&[0; 7]);
        assert_eq!(Tensor::from_named_tensor(&t).unwrap_err().code(), ofl_code::InvalidArgument);
        t.data_bytes = Bytes::from_static(&[0; 12]);
        assert_eq!(Tensor::from_named_tensor(&t).unwrap_err().code(), ofl_code::InvalidArgument);
        t.transformer_metadata[0].int_list = vec![-3];
        assert_eq!(Tensor::from_named_tensor(&t).unwrap_err().code(), ofl_code::InvalidArgument);
        t.transformer_metadata.clear(); // no metadata: one-dimensional
        assert_eq!(Tensor::from_named_tensor(&t).unwrap().shape, vec![3]);
        t.transformer_metadata = vec![MetadataProto::default(), MetadataProto::default()];
        assert_eq!(Tensor::from_named_tensor(&t).unwrap_err().code(), ofl_code::InvalidArgument);
    }

    #[test]
    fn f32_values_read_in_place() {
        assert_eq!(F32Values::from_le_bytes(&[0; 7]).unwrap_err().code(), ofl_code::InvalidArgument);
        let bytes = Tensor::new(vec![2], vec![1.5, -2.0]).unwrap().to_le_bytes();
        let values = F32Values::from_le_bytes(&bytes).unwrap();
        assert_eq!((values.len(), values.is_empty()), (2, false));
        assert_eq!(values.iter().collect::<Vec<_>>(), vec![1.5, -2.0]);
    }
}
