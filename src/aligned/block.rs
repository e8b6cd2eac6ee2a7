//! 64-byte aligned byte buffers handed out as `Bytes`.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

use bytes::Bytes;

use super::ALIGN;
use crate::error::{ofl_code, Error, Result};

/// A fixed-size, 64-byte aligned buffer filled front to back; only the
/// filled part is ever read.
pub(crate) struct AlignedBlock {
    ptr: NonNull<u8>,
    capacity: usize,
    filled: usize,
}

// SAFETY: the block owns its allocation exclusively (no aliasing pointers
// escape except through `&self`/`&mut self` borrows), like a `Vec<u8>`.
unsafe impl Send for AlignedBlock {}
// SAFETY: shared access only reads the filled bytes, which never change again.
unsafe impl Sync for AlignedBlock {}

impl AlignedBlock {
    /// An empty block with room for `capacity` bytes (> 0). The memory is
    /// reserved, not touched: pages are committed as bytes are written.
    /// Errors: RESOURCE_EXHAUSTED when the allocation fails.
    pub(crate) fn with_capacity(capacity: usize) -> Result<Self> {
        let layout = Self::layout(capacity)?;
        // SAFETY: the layout has a non-zero size (checked by `layout`).
        let ptr = unsafe { alloc(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            Error::new(ofl_code::ResourceExhausted, format!("cannot allocate {capacity} bytes for a tensor"))
        })?;
        Ok(Self { ptr, capacity, filled: 0 })
    }

    fn layout(capacity: usize) -> Result<Layout> {
        if capacity == 0 {
            return Err(Error::new(ofl_code::Internal, "an aligned block needs a positive size"));
        }
        Layout::from_size_align(capacity, ALIGN)
            .map_err(|_| Error::new(ofl_code::ResourceExhausted, format!("{capacity} bytes cannot be allocated")))
    }

    /// Room left.
    pub(crate) fn room(&self) -> usize {
        self.capacity - self.filled
    }

    /// Appends `bytes` (at most `room()` of them).
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.room(), "an aligned block never grows");
        // SAFETY: `filled + bytes.len() <= capacity`, so the destination lies
        // inside the allocation; a fresh allocation cannot overlap `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(self.filled), bytes.len()) };
        self.filled += bytes.len();
    }

    /// The filled bytes as `Bytes` (no copy); they start on a 64-byte boundary.
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for AlignedBlock {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `filled` bytes were written by `extend` and lie
        // inside the allocation, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.filled) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, ALIGN).expect("checked at allocation");
        // SAFETY: `ptr` was allocated by `alloc` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// `bytes` copied into a new 64-byte aligned buffer (empty stays empty).
pub(crate) fn aligned_copy(bytes: &[u8]) -> Result<Bytes> {
    if bytes.is_empty() {
        return Ok(Bytes::new());
    }
    let mut block = AlignedBlock::with_capacity(bytes.len())?;
    block.extend(bytes);
    Ok(block.freeze())
}

/// Whether `bytes` starts on a 64-byte boundary (empty counts as aligned).
pub fn is_aligned(bytes: &[u8]) -> bool {
    bytes.is_empty() || bytes.as_ptr() as usize % ALIGN == 0
}

/// `data` itself when it starts on a 64-byte boundary, else an aligned copy
/// (logged at DEBUG: the receive paths place tensor data aligned, so this
/// only happens for encodings they could not follow).
pub(crate) fn ensure_aligned(data: Bytes, what: &str) -> Result<Bytes> {
    if is_aligned(&data) {
        return Ok(data);
    }
    log::debug!("{what}: {} bytes of tensor data were not 64-byte aligned; copied", data.len());
    aligned_copy(&data)
}

/// A type whose dangling pointer is 64-byte aligned.
#[repr(align(64))]
struct Align64;

/// float32 values in a 64-byte aligned buffer (what `ofl_model` hands out).
pub(crate) struct AlignedF32 {
    bytes: Bytes,
}

impl AlignedF32 {
    /// `values` copied into an aligned buffer.
    pub(crate) fn copy_from(values: &[f32]) -> Result<Self> {
        let bytes: &[u8] = bytemuck_f32(values);
        Ok(Self { bytes: aligned_copy(bytes)? })
    }

    /// The values (an aligned, dangling pointer when there are none).
    pub(crate) fn as_ptr(&self) -> *const f32 {
        if self.bytes.is_empty() {
            return NonNull::<Align64>::dangling().as_ptr().cast();
        }
        self.bytes.as_ptr().cast()
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() / std::mem::size_of::<f32>()
    }
}

fn bytemuck_f32(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every byte pattern is a valid u8; the
    // slice covers exactly the values' memory and borrows it.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_hold_what_was_written() {
        for len in [1usize, 3, 63, 64, 65, 4097] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let copy = aligned_copy(&data).unwrap();
            assert_eq!(copy.as_ptr() as usize % 64, 0);
            assert_eq!(&copy[..], &data[..]);
        }
        assert!(aligned_copy(&[]).unwrap().is_empty());
    }

    #[test]
    fn misaligned_data_is_copied_aligned() {
        let base = aligned_copy(&[7u8; 100]).unwrap();
        let odd = base.slice(3..50);
        let fixed = ensure_aligned(odd.clone(), "test").unwrap();
        assert!(is_aligned(&fixed));
        assert_eq!(fixed, odd);
        let same = ensure_aligned(base.clone(), "test").unwrap();
        assert_eq!(same.as_ptr(), base.as_ptr(), "aligned data is not copied");
    }

    #[test]
    fn float_values_are_aligned() {
        let values: Vec<f32> = (0..33).map(|i| i as f32 * 0.5).collect();
        let aligned = AlignedF32::copy_from(&values).unwrap();
        assert_eq!(aligned.as_ptr() as usize % 64, 0);
        assert_eq!(aligned.len(), 33);
        // SAFETY: as_ptr points to len() initialized f32 values.
        let back = unsafe { std::slice::from_raw_parts(aligned.as_ptr(), aligned.len()) };
        assert_eq!(back, &values[..]);
        let empty = AlignedF32::copy_from(&[]).unwrap();
        assert_eq!(empty.as_ptr() as usize % 64, 0);
        assert_eq!(empty.len(), 0);
    }
}
