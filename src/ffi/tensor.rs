//! Tensors across the C boundary: `ofl_tensor_view` describes a tensor the
//! caller owns (borrowed for one call, never kept), `ofl_tensor` is a tensor
//! the library owns (its data is a pointer into the received buffer).

use std::ffi::{c_char, CString};

use bytes::Bytes;

use super::boundary::{arg_slice, arg_str, c_string, ffi_fn, free_boxed, with_ref};
use crate::aligned::aligned_copy;
use crate::error::Result;
use crate::proto::{MetadataProto, NamedTensor};

/// One transformer-metadata entry (OpenFL's `MetadataProto`) the caller
/// owns. For OpenFL's uncompressed pipeline, `int_list` is the tensor shape.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_metadata_view {
    /// `int_list_len` integers (may be NULL when the length is 0).
    pub int_list: *const i32,
    /// Number of entries in `int_list`.
    pub int_list_len: usize,
    /// `bool_list_len` booleans (may be NULL when the length is 0).
    pub bool_list: *const bool,
    /// Number of entries in `bool_list`.
    pub bool_list_len: usize,
    /// Keys of the `int_to_float` map (`int_to_float_len` entries).
    pub int_to_float_keys: *const i32,
    /// Values of the `int_to_float` map, in the order of the keys.
    pub int_to_float_values: *const f32,
    /// Number of `int_to_float` entries.
    pub int_to_float_len: usize,
}

/// A tensor the caller owns, borrowed for the duration of one call: the
/// library copies what it keeps and never keeps the pointers.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_tensor_view {
    /// Tensor name (NUL-terminated UTF-8, required).
    pub name: *const c_char,
    /// Round the tensor belongs to.
    pub round_number: i32,
    /// Whether the encoding is lossless.
    pub lossless: bool,
    /// Whether this is a report (metric) tensor.
    pub report: bool,
    /// `tags_len` NUL-terminated UTF-8 tags.
    pub tags: *const *const c_char,
    /// Number of tags.
    pub tags_len: usize,
    /// `metadata_len` transformer-metadata entries.
    pub metadata: *const ofl_metadata_view,
    /// Number of metadata entries.
    pub metadata_len: usize,
    /// The tensor's bytes (`data_len` of them; NULL allowed when 0).
    pub data: *const u8,
    /// Number of bytes at `data`.
    pub data_len: usize,
}

fn metadata_from_view(view: &ofl_metadata_view) -> Result<MetadataProto> {
    let keys = arg_slice(view.int_to_float_keys, view.int_to_float_len, "int_to_float_keys")?;
    let values = arg_slice(view.int_to_float_values, view.int_to_float_len, "int_to_float_values")?;
    Ok(MetadataProto {
        int_to_float: keys.iter().copied().zip(values.iter().copied()).collect(),
        int_list: arg_slice(view.int_list, view.int_list_len, "int_list")?.to_vec(),
        bool_list: arg_slice(view.bool_list, view.bool_list_len, "bool_list")?.to_vec(),
    })
}

/// Reads `count` C strings from `ptr`, naming them `what[i]` in errors.
pub fn string_list(ptr: *const *const c_char, count: usize, what: &str) -> Result<Vec<String>> {
    arg_slice(ptr, count, what)?
        .iter()
        .enumerate()
        .map(|(i, s)| arg_str(*s, &format!("{what}[{i}]")).map(str::to_owned))
        .collect()
}

/// A `NamedTensor` whose data is `data` (copied or borrowed by the caller's
/// choice) and whose other fields are copied from `view`.
pub fn named_tensor_from_view(view: &ofl_tensor_view, data: Bytes) -> Result<NamedTensor> {
    let name = arg_str(view.name, "tensor.name")?;
    let metadata = arg_slice(view.metadata, view.metadata_len, "tensor.metadata")?
        .iter()
        .map(metadata_from_view)
        .collect::<Result<Vec<_>>>()?;
    Ok(NamedTensor {
        name: name.to_owned(),
        round_number: view.round_number,
        lossless: view.lossless,
        report: view.report,
        tags: string_list(view.tags, view.tags_len, "tensor.tags")?,
        transformer_metadata: metadata,
        data_bytes: data,
    })
}

/// The view's data, copied into a library-owned, 64-byte aligned buffer.
pub fn copied_data(view: &ofl_tensor_view) -> Result<Bytes> {
    aligned_copy(arg_slice(view.data, view.data_len, "tensor.data")?)
}

/// A tensor owned by the library, read through accessors. Strings returned by
/// accessors live as long as the tensor. Its data (`ofl_tensor_data`) starts
/// on a 64-byte boundary, whichever path it was received on (collaborator
/// download, task results upload, director models).
#[allow(non_camel_case_types)]
pub struct ofl_tensor {
    tensor: NamedTensor,
    name: CString,
    tags: Vec<CString>,
    /// `int_to_float` of each metadata entry, sorted by key.
    int_to_float: Vec<Vec<(i32, f32)>>,
}

impl ofl_tensor {
    /// Wraps a received tensor. Its data is 64-byte aligned by the receive
    /// paths (see `crate::aligned`); anything else is copied aligned here.
    pub fn new(mut tensor: NamedTensor) -> Self {
        if let Err(e) = crate::aligned::align_tensors([&mut tensor], "ofl_tensor") {
            log::warn!("tensor {:?} stays unaligned: {e}", tensor.name);
        }
        let name = c_string(&tensor.name);
        let tags = tensor.tags.iter().map(|t| c_string(t)).collect();
        let int_to_float = tensor
            .transformer_metadata
            .iter()
            .map(|m| {
                let mut entries: Vec<_> = m.int_to_float.iter().map(|(k, v)| (*k, *v)).collect();
                entries.sort_by_key(|(k, _)| *k);
                entries
            })
            .collect();
        Self { tensor, name, tags, int_to_float }
    }

    /// The wrapped tensor.
    pub fn tensor(&self) -> &NamedTensor {
        &self.tensor
    }
}

ffi_fn! {
    /// The tensor's name (valid as long as the tensor). NULL gives "".
    fn ofl_tensor_name(tensor: *const ofl_tensor) -> *const c_char {
        with_ref(tensor, c"".as_ptr(), |t| t.name.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// The tensor's round number.
    fn ofl_tensor_round_number(tensor: *const ofl_tensor) -> i32 {
        with_ref(tensor, 0, |t| t.tensor.round_number)
    } ?= 0
}

ffi_fn! {
    /// Whether the tensor's encoding is lossless.
    fn ofl_tensor_lossless(tensor: *const ofl_tensor) -> bool {
        with_ref(tensor, false, |t| t.tensor.lossless)
    } ?= false
}

ffi_fn! {
    /// Whether the tensor is a report (metric) tensor.
    fn ofl_tensor_report(tensor: *const ofl_tensor) -> bool {
        with_ref(tensor, false, |t| t.tensor.report)
    } ?= false
}

ffi_fn! {
    /// Number of tags.
    fn ofl_tensor_tags_len(tensor: *const ofl_tensor) -> usize {
        with_ref(tensor, 0, |t| t.tags.len())
    } ?= 0
}

ffi_fn! {
    /// Tag `index` (valid as long as the tensor); NULL when out of range.
    fn ofl_tensor_tag(tensor: *const ofl_tensor, index: usize) -> *const c_char {
        with_ref(tensor, std::ptr::null(), |t| t.tags.get(index).map_or(std::ptr::null(), |s| s.as_ptr()))
    } ?= std::ptr::null()
}

ffi_fn! {
    /// The tensor's bytes (valid as long as the tensor; no copy was made).
    /// They start on a 64-byte boundary, on every path a tensor is received
    /// (a collaborator's `ofl_aggregator_client_get_aggregated_tensor`, the
    /// task results a server's callback or FedAvg receives, director models
    /// and tensor lists): they may be read in place as `const float *` (or
    /// any type of alignment up to 64, e.g. AVX-512 vectors) when the
    /// encoding is such. May be NULL, or any pointer, when the length is 0.
    fn ofl_tensor_data(tensor: *const ofl_tensor) -> *const u8 {
        with_ref(tensor, std::ptr::null(), |t| t.tensor.data_bytes.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of bytes at `ofl_tensor_data`.
    fn ofl_tensor_data_len(tensor: *const ofl_tensor) -> usize {
        with_ref(tensor, 0, |t| t.tensor.data_bytes.len())
    } ?= 0
}

ffi_fn! {
    /// Number of transformer-metadata entries.
    fn ofl_tensor_metadata_len(tensor: *const ofl_tensor) -> usize {
        with_ref(tensor, 0, |t| t.tensor.transformer_metadata.len())
    } ?= 0
}

ffi_fn! {
    /// The `int_list` of metadata entry `index` (for OpenFL's uncompressed
    /// pipeline, the shape): writes its length to `*len` (when `len` is not
    /// NULL) and returns the integers, valid as long as the tensor. Out of range:
    /// NULL and length 0.
    fn ofl_tensor_metadata_int_list(tensor: *const ofl_tensor, index: usize, len: *mut usize) -> *const i32 {
        let (ptr, n) = with_ref(tensor, (std::ptr::null(), 0), |t| {
            t.tensor.transformer_metadata.get(index).map_or((std::ptr::null(), 0), |m| (m.int_list.as_ptr(), m.int_list.len()))
        });
        write_len(len, n);
        ptr
    } ?= std::ptr::null()
}

ffi_fn! {
    /// The `bool_list` of metadata entry `index`, as `ofl_tensor_metadata_int_list`.
    fn ofl_tensor_metadata_bool_list(tensor: *const ofl_tensor, index: usize, len: *mut usize) -> *const bool {
        let (ptr, n) = with_ref(tensor, (std::ptr::null(), 0), |t| {
            t.tensor.transformer_metadata.get(index).map_or((std::ptr::null(), 0), |m| (m.bool_list.as_ptr(), m.bool_list.len()))
        });
        write_len(len, n);
        ptr
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of `int_to_float` entries of metadata entry `index` (0 when out of range).
    fn ofl_tensor_metadata_int_to_float_len(tensor: *const ofl_tensor, index: usize) -> usize {
        with_ref(tensor, 0, |t| t.int_to_float.get(index).map_or(0, Vec::len))
    } ?= 0
}

ffi_fn! {
    /// Entry `entry` (in increasing key order) of the `int_to_float` map of
    /// metadata entry `index`: writes the key and value and returns true, or
    /// returns false when out of range.
    fn ofl_tensor_metadata_int_to_float_entry(
        tensor: *const ofl_tensor,
        index: usize,
        entry: usize,
        key: *mut i32,
        value_out: *mut f32,
    ) -> bool {
        let found = with_ref(tensor, None, |t| t.int_to_float.get(index).and_then(|m| m.get(entry).copied()));
        match found {
            Some((k, v)) if !key.is_null() && !value_out.is_null() => {
                // SAFETY: both pointers were checked non-NULL and point to
                // writable storage of their type (documented).
                unsafe {
                    *key = k;
                    *value_out = v;
                }
                true
            }
            _ => false,
        }
    } ?= false
}

fn write_len(len: *mut usize, n: usize) {
    if !len.is_null() {
        // SAFETY: a non-NULL `len` points to writable storage (documented).
        unsafe { *len = n };
    }
}

ffi_fn! {
    /// Frees a tensor. NULL is a no-op.
    fn ofl_tensor_free(tensor: *mut ofl_tensor) {
        free_boxed(tensor)
    }
}
