//! Helpers shared by the fuzz targets: reading fuzz input the way the wire
//! carries it (gRPC length-prefixed frames), and small comparisons.

/// The messages of a gRPC body: each is a 1-byte compression flag, a 4-byte
/// big-endian length and the message. Seeds are real gRPC request bodies
/// (see `seeds/make_seeds.py`). A truncated last frame is dropped, as a
/// server drops a stream that ends mid-message.
pub fn grpc_frames(mut body: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let rest = &body[5..];
        if rest.len() < len {
            break;
        }
        frames.push(&rest[..len]);
        body = &rest[len..];
    }
    frames
}

/// A gRPC body made of `messages` (the inverse of [`grpc_frames`]).
pub fn grpc_body<'a>(messages: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for m in messages {
        body.push(0);
        body.extend_from_slice(&(m.len() as u32).to_be_bytes());
        body.extend_from_slice(m);
    }
    body
}

/// Float equality as a round trip must keep it: NaN equals NaN, and
/// 0.0 equals -0.0 (sums of zeros may lose the sign).
pub fn same_f32(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// Bitwise float equality (an encode → decode round trip keeps every bit).
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Reads fuzz input front to back; every read succeeds (zeros past the end).
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let (b, rest) = self.data.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.data = rest;
        b
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (now, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        now
    }

    /// A length-prefixed (one byte) byte string.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = self.byte() as usize;
        self.bytes(n)
    }

    /// A length-prefixed (two bytes) byte string.
    pub fn long_bytes(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// The federation the seeds were recorded in (`seeds/make_seeds.py` uses
/// the same names with OpenFL 1.6's own client).
pub mod federation {
    /// OpenFL names its aggregator `aggregator_<plan path>`.
    pub const AGGREGATOR_UUID: &str = "aggregator_plan/plan.yaml";
    /// OpenFL names a federation `<name>_<hash prefix>`.
    pub const FEDERATION_UUID: &str = "fuzz_federation_9c0ffee1";
    /// The collaborators.
    pub const COLLABORATORS: [&str; 2] = ["one", "two"];
    /// The model: name and shape of each tensor.
    pub const MODEL: [(&str, &[usize]); 2] = [("dense/kernel:0", &[4, 2]), ("dense/bias:0", &[2])];
}
