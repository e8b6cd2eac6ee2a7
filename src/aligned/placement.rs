//! [`Placement`]: one serialized message copied from the chunks it arrives
//! in to where its tensor data lands 64-byte aligned.
//!
//! A small protobuf scanner follows the message as the bytes arrive: it
//! knows the path of fields that leads to tensor data (e.g. `TaskResults`
//! field 5, a `NamedTensor`, then its field 7 `data_bytes`). Every other byte
//! goes to one growing buffer (the "skeleton": headers, names, tags,
//! metadata); each `data_bytes` payload goes to an aligned buffer of its
//! announced length, allocated when its length prefix arrives. Each byte is
//! copied once, and no payload is copied again as buffers grow. The result is
//! [`Segments`], which prost decodes with every `data_bytes` a slice of its
//! aligned buffer.
//!
//! Fields may come in any order and repeat. An encoding the scanner cannot
//! follow (groups, a length running past its parent, a malformed key) makes
//! it stop placing and keep the rest in the skeleton: the decoder then
//! reports the error, or [`super::ensure_aligned`] copies what decoded
//! misaligned.

use bytes::Bytes;

use super::block::AlignedBlock;
use super::segments::Segments;
use crate::error::{ofl_code, Error, Result};

/// Where the scanner is in the wire format.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Reading a field key (varint).
    Key { value: u64, shift: u32 },
    /// Reading the length of length-delimited field `field`.
    Len { field: u32, value: u64, shift: u32 },
    /// Skipping a varint value.
    Varint { read: u32 },
    /// Copying `n` more bytes of a field not on the path to the skeleton.
    Skip(u64),
    /// Copying `n` more bytes of tensor data to the current block.
    Data(u64),
    /// Stopped following the encoding: everything goes to the skeleton.
    Opaque,
}

/// One message being placed; see the module docs.
pub struct Placement {
    /// Field numbers from the top-level message down to `data_bytes`.
    path: &'static [u32],
    max_size: usize,
    /// Bytes of the message received so far (its position).
    pos: u64,
    skeleton: Vec<u8>,
    /// Finished data buffers, each with the skeleton offset it follows.
    blocks: Vec<(usize, Bytes)>,
    /// The data buffer being filled.
    filling: Option<AlignedBlock>,
    /// End positions of the nested messages the scanner is inside.
    open: Vec<u64>,
    /// End of the message when known (unary), else the maximum size.
    end: u64,
    state: State,
    /// Top-level fields that start the path (tensors of `TaskResults`).
    top_count: usize,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement").field("received", &self.pos).field("state", &self.state).finish_non_exhaustive()
    }
}

const KEY: State = State::Key { value: 0, shift: 0 };

impl Placement {
    /// Places one message of unknown length (a reassembled stream) of at most
    /// `max_size` bytes, following `path` (non-empty).
    pub fn new(path: &'static [u32], max_size: usize) -> Self {
        assert!(!path.is_empty(), "a path leads at least to data_bytes");
        Self {
            path,
            max_size,
            pos: 0,
            skeleton: Vec::new(),
            blocks: Vec::new(),
            filling: None,
            open: Vec::new(),
            end: max_size as u64,
            state: KEY,
            top_count: 0,
        }
    }

    /// Places one message announced as `len` bytes (a gRPC message).
    pub fn with_len(path: &'static [u32], len: usize) -> Self {
        let mut placement = Self::new(path, len);
        placement.skeleton.reserve(len.min(64 << 10));
        placement
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.pos as usize
    }

    /// Top-level fields seen that start the path (for `TaskResults`: its
    /// tensors), up to where the scanner stopped following the encoding.
    pub fn top_count(&self) -> usize {
        self.top_count
    }

    /// Adds the next bytes of the message. Errors: RESOURCE_EXHAUSTED past
    /// the maximum size (nothing of `bytes` is kept then).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        if self.pos as usize + bytes.len() > self.max_size {
            return Err(Error::new(
                ofl_code::ResourceExhausted,
                format!("the message exceeds the maximum message size of {} bytes", self.max_size),
            ));
        }
        while !bytes.is_empty() {
            let used = self.step(bytes)?;
            bytes = &bytes[used..];
        }
        Ok(())
    }

    /// Consumes a prefix of `bytes` (at least one byte); returns its length.
    fn step(&mut self, bytes: &[u8]) -> Result<usize> {
        match self.state {
            State::Opaque => {
                self.skeleton.extend_from_slice(bytes);
                self.pos += bytes.len() as u64;
                Ok(bytes.len())
            }
            State::Skip(n) => {
                let m = n.min(bytes.len() as u64) as usize;
                self.skeleton.extend_from_slice(&bytes[..m]);
                self.pos += m as u64;
                self.state = State::Skip(n - m as u64);
                if n == m as u64 {
                    self.field_done();
                }
                Ok(m)
            }
            State::Data(n) => {
                let m = n.min(bytes.len() as u64) as usize;
                self.filling.as_mut().expect("data goes to a block").extend(&bytes[..m]);
                self.pos += m as u64;
                self.state = State::Data(n - m as u64);
                if n == m as u64 {
                    let block = self.filling.take().expect("checked above").freeze();
                    self.blocks.push((self.skeleton.len(), block));
                    self.field_done();
                }
                Ok(m)
            }
            _ => {
                let b = bytes[0];
                self.skeleton.push(b);
                self.pos += 1;
                self.varint_byte(b)?;
                Ok(1)
            }
        }
    }

    /// One byte of a key, a length or a varint value.
    fn varint_byte(&mut self, b: u8) -> Result<()> {
        let more = b & 0x80 != 0;
        let bits = u64::from(b & 0x7f);
        match self.state {
            State::Varint { read } => match (more, read) {
                (true, 9..) => self.state = State::Opaque,
                (true, _) => self.state = State::Varint { read: read + 1 },
                (false, _) => self.field_done(),
            },
            State::Key { shift, .. } | State::Len { shift, .. } if shift > 63 => self.state = State::Opaque,
            State::Key { value, shift } => {
                let value = value | bits << shift;
                if more {
                    self.state = State::Key { value, shift: shift + 7 };
                } else {
                    self.key(value);
                }
            }
            State::Len { field, value, shift } => {
                let value = value | bits << shift;
                if more {
                    self.state = State::Len { field, value, shift: shift + 7 };
                } else {
                    self.length(field, value)?;
                }
            }
            _ => unreachable!("only varint states read single bytes"),
        }
        Ok(())
    }

    fn key(&mut self, key: u64) {
        let field = u32::try_from(key >> 3).unwrap_or(0);
        self.state = match (field, key & 7) {
            (0, _) => State::Opaque,
            (_, 0) => State::Varint { read: 0 },
            (_, 1) => State::Skip(8),
            (_, 2) => State::Len { field, value: 0, shift: 0 },
            (_, 5) => State::Skip(4),
            _ => State::Opaque,
        };
    }

    /// A length-delimited field of `len` bytes starts here.
    fn length(&mut self, field: u32, len: u64) -> Result<()> {
        let parent_end = self.open.last().copied().unwrap_or(self.end);
        let end = self.pos.checked_add(len).filter(|end| *end <= parent_end);
        let Some(end) = end else {
            self.state = State::Opaque;
            return Ok(());
        };
        let depth = self.open.len();
        if self.path.get(depth) != Some(&field) {
            self.state = State::Skip(len);
        } else {
            if depth == 0 {
                self.top_count += 1;
            }
            if depth + 1 == self.path.len() {
                if len > 0 {
                    self.filling = Some(AlignedBlock::with_capacity(len as usize)?);
                }
                self.state = State::Data(len);
            } else {
                self.open.push(end);
                self.state = KEY;
            }
        }
        if len == 0 {
            self.field_done();
        }
        Ok(())
    }

    /// A field ended: close the nested messages that end here.
    fn field_done(&mut self) {
        self.state = KEY;
        while let Some(&end) = self.open.last() {
            if self.pos < end {
                break;
            }
            self.open.pop();
            if self.pos > end {
                self.state = State::Opaque;
                return;
            }
        }
    }

    /// The placed message, ready for prost.
    pub fn finish(mut self) -> Segments {
        if let Some(block) = self.filling.take() {
            self.blocks.push((self.skeleton.len(), block.freeze()));
        }
        let skeleton = Bytes::from(self.skeleton);
        let mut segments = Segments::default();
        let mut from = 0;
        for (at, block) in self.blocks {
            segments.push(skeleton.slice(from..at));
            segments.push(block);
            from = at;
        }
        segments.push(skeleton.slice(from..));
        segments
    }
}
