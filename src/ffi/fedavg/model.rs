//! `ofl_model`: a model as float32 tensors by name (what `ofl_fedavg`
//! hands out and `ofl_tensor_list_to_model` decodes).

use std::ffi::{c_char, CString};

use crate::aligned::AlignedF32;
use crate::error::Result;
use crate::fedavg::{Model, Tensor};
use crate::ffi::boundary::{arg_str, c_string, ffi_fn, free_boxed, with_ref};

/// A model: float32 tensors by name (in name order). Owned by the caller;
/// free with `ofl_model_free`. Pointers returned by its accessors are valid
/// until then.
#[allow(non_camel_case_types)]
pub struct ofl_model {
    tensors: Vec<ModelTensor>,
}

struct ModelTensor {
    name: CString,
    shape: Vec<usize>,
    /// The values, 64-byte aligned (a `Vec<f32>` is only 4-byte aligned).
    values: AlignedF32,
}

impl ofl_model {
    /// The model, its values copied into 64-byte aligned buffers.
    pub(crate) fn new(model: Model) -> Result<Self> {
        let tensors = model
            .into_iter()
            .map(|(name, Tensor { shape, values })| {
                Ok(ModelTensor { name: c_string(&name), shape, values: AlignedF32::copy_from(&values)? })
            })
            .collect::<Result<_>>()?;
        Ok(Self { tensors })
    }
}

/// Runs `f` on tensor `index`; `default` for NULL or out of range.
fn with_tensor<T>(
    model: *const ofl_model,
    index: usize,
    default: T,
    f: impl FnOnce(&ModelTensor) -> T,
) -> T {
    with_ref(model, None, |m| m.tensors.get(index).map(f)).unwrap_or(default)
}

fn write_len(len: *mut usize, n: usize) {
    if !len.is_null() {
        // SAFETY: a non-NULL `len` points to writable storage (documented).
        unsafe { *len = n };
    }
}

ffi_fn! {
    /// Number of tensors in the model. 0 for NULL.
    fn ofl_model_len(model: *const ofl_model) -> usize {
        with_ref(model, 0, |m| m.tensors.len())
    } ?= 0
}

ffi_fn! {
    /// Name of tensor `index` (tensors are in name order); NULL when out of
    /// range.
    fn ofl_model_tensor_name(model: *const ofl_model, index: usize) -> *const c_char {
        with_tensor(model, index, std::ptr::null(), |t| t.name.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Finds the tensor called `name`: writes its index to `*index` (when
    /// not NULL) and returns true, or returns false when there is none.
    fn ofl_model_find(model: *const ofl_model, name: *const c_char, index: *mut usize) -> bool {
        let found = with_ref(model, None, |m| {
            let name = arg_str(name, "name").ok()?;
            m.tensors.iter().position(|t| t.name.to_bytes() == name.as_bytes())
        });
        match found {
            Some(i) => {
                write_len(index, i);
                true
            }
            None => false,
        }
    } ?= false
}

ffi_fn! {
    /// The shape of tensor `index`: writes the number of dimensions to
    /// `*len` (when not NULL; 0 for a scalar) and returns the dimensions.
    /// The pointer is non-NULL for every index below `ofl_model_len` (also
    /// for a scalar) and valid until `ofl_model_free`; out of range: NULL
    /// and length 0.
    fn ofl_model_tensor_shape(model: *const ofl_model, index: usize, len: *mut usize) -> *const usize {
        let (ptr, n) =
            with_tensor(model, index, (std::ptr::null(), 0), |t| (t.shape.as_ptr(), t.shape.len()));
        write_len(len, n);
        ptr
    } ?= std::ptr::null()
}

ffi_fn! {
    /// The values of tensor `index` in C (row-major) order: writes their
    /// number to `*len` (when not NULL) and returns them, as
    /// `ofl_model_tensor_shape`. The pointer starts on a 64-byte boundary
    /// (also for a tensor of no values), so SIMD loads need no unaligned
    /// variants.
    fn ofl_model_tensor_values(model: *const ofl_model, index: usize, len: *mut usize) -> *const f32 {
        let (ptr, n) =
            with_tensor(model, index, (std::ptr::null(), 0), |t| (t.values.as_ptr(), t.values.len()));
        write_len(len, n);
        ptr
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Frees a model. NULL is a no-op.
    fn ofl_model_free(model: *mut ofl_model) {
        free_boxed(model)
    }
}
