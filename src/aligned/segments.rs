//! A message held in several buffers, read by prost as one: [`Segments`].

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// The bytes of one serialized message, in order, split over buffers. As a
/// [`Buf`], `copy_to_bytes` slices instead of copying when the bytes lie in
/// one buffer: prost then decodes each tensor's `data_bytes` as a slice of
/// the aligned buffer it was placed in.
#[derive(Debug, Default)]
pub struct Segments {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl Segments {
    /// Appends `part` (empty parts are dropped).
    pub(crate) fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.remaining += part.len();
            self.parts.push_back(part);
        }
    }

    /// The concatenation, copied (for tests and odd decoders).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.parts.iter().flat_map(|p| p.iter().copied()).collect()
    }
}

impl Buf for Segments {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map(|p| &p[..]).unwrap_or(&[])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of the message");
        self.remaining -= cnt;
        while cnt > 0 {
            let front = self.parts.front_mut().expect("remaining counts the parts");
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(len <= self.remaining, "copy_to_bytes past the end of the message");
        match self.parts.front_mut() {
            Some(front) if front.len() >= len => {
                let out = front.split_to(len);
                self.remaining -= len;
                if front.is_empty() {
                    self.parts.pop_front();
                }
                out
            }
            _ => {
                let mut out = BytesMut::with_capacity(len);
                out.put((&mut *self).take(len));
                out.freeze()
            }
        }
    }
}

use bytes::BufMut;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_parts_and_slices_within_one() {
        let mut s = Segments::default();
        let big = Bytes::from(vec![9u8; 100]);
        s.push(Bytes::from_static(b"abc"));
        s.push(Bytes::new());
        s.push(big.clone());
        s.push(Bytes::from_static(b"xyz"));
        assert_eq!(s.remaining(), 106);
        assert_eq!(s.get_u8(), b'a');
        let across = s.copy_to_bytes(3);
        assert_eq!(&across[..], &[b'b', b'c', 9]);
        let inside = s.copy_to_bytes(99);
        assert_eq!(inside.as_ptr(), big[1..].as_ptr(), "a slice, not a copy");
        assert_eq!(s.chunk(), b"xyz");
        s.advance(3);
        assert_eq!(s.remaining(), 0);
        assert_eq!(s.chunk(), b"");
    }
}
