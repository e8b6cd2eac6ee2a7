//! The library's error type: a code (gRPC status codes plus library codes) and
//! a message that names what went wrong.

use std::fmt;

/// What kind of failure an [`Error`] is. Values 0..=16 are the gRPC status
/// codes with their gRPC meaning; values from 100 are library codes.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ofl_code {
    /// Success (never carried by an error object).
    Ok = 0,
    /// The operation was cancelled (e.g. the handle was stopped or freed).
    Cancelled = 1,
    /// Unknown error (the peer sent no better code).
    Unknown = 2,
    /// A bad argument: NULL pointer, invalid UTF-8, out-of-range value, or a
    /// request field rejected by the server (the message names the field).
    InvalidArgument = 3,
    /// A deadline expired.
    DeadlineExceeded = 4,
    /// Something asked for does not exist.
    NotFound = 5,
    /// Something to be created already exists.
    AlreadyExists = 6,
    /// The caller is authenticated but not allowed (e.g. not an authorized collaborator).
    PermissionDenied = 7,
    /// A size limit was exceeded (e.g. an upload larger than the configured maximum).
    ResourceExhausted = 8,
    /// The operation is not valid in the current state.
    FailedPrecondition = 9,
    /// The operation was aborted.
    Aborted = 10,
    /// A value is out of range.
    OutOfRange = 11,
    /// The peer does not implement this RPC (as OpenFL 1.6 for some RPCs).
    Unimplemented = 12,
    /// An internal error.
    Internal = 13,
    /// The peer could not be reached (retried by clients within their budget).
    Unavailable = 14,
    /// Data was lost or corrupted.
    DataLoss = 15,
    /// The peer's identity (certificate CN vs header sender) was rejected.
    Unauthenticated = 16,
    /// TLS failed: unreadable or mismatched certificate/key, unknown CA,
    /// missing client certificate, handshake failure. Never retried.
    Tls = 100,
    /// A local I/O error (reading a certificate file, binding a port).
    Io = 101,
    /// A panic inside the library was caught at the C boundary.
    Panic = 102,
    /// The peer's reply header failed validation (wrong sender, receiver,
    /// federation uuid or single_col_cert_common_name).
    InvalidResponse = 103,
    /// The client's retry budget was spent while the peer stayed unavailable.
    RetriesExhausted = 104,
    /// The server speaks another protocol: TLS vs plaintext, HTTP/1, no
    /// HTTP/2 (ALPN h2), or an HTTP/2 protocol error. Never retried.
    ProtocolMismatch = 105,
}

/// An error with a code and a message naming the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ofl_code,
    message: String,
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the given code and message.
    pub fn new(code: ofl_code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    /// Bad argument.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ofl_code::InvalidArgument, message)
    }
    /// TLS configuration or handshake failure.
    pub fn tls(message: impl Into<String>) -> Self {
        Self::new(ofl_code::Tls, message)
    }
    /// Local I/O failure.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ofl_code::Io, message)
    }
    /// The error's code.
    pub fn code(&self) -> ofl_code {
        self.code
    }
    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl ofl_code {
    /// The code with this number, if any (C passes codes as integers).
    pub fn from_i32(n: i32) -> Option<Self> {
        use ofl_code::*;
        const ALL: [ofl_code; 23] = [
            Ok, Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
            PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
            Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated, Tls, Io, Panic,
            InvalidResponse, RetriesExhausted, ProtocolMismatch,
        ];
        ALL.into_iter().find(|c| *c as i32 == n)
    }

    /// The code of a gRPC status code number; unknown numbers map to `Unknown`.
    pub fn from_grpc(code: tonic::Code) -> Self {
        use ofl_code::*;
        match code {
            tonic::Code::Ok => Ok,
            tonic::Code::Cancelled => Cancelled,
            tonic::Code::Unknown => Unknown,
            tonic::Code::InvalidArgument => InvalidArgument,
            tonic::Code::DeadlineExceeded => DeadlineExceeded,
            tonic::Code::NotFound => NotFound,
            tonic::Code::AlreadyExists => AlreadyExists,
            tonic::Code::PermissionDenied => PermissionDenied,
            tonic::Code::ResourceExhausted => ResourceExhausted,
            tonic::Code::FailedPrecondition => FailedPrecondition,
            tonic::Code::Aborted => Aborted,
            tonic::Code::OutOfRange => OutOfRange,
            tonic::Code::Unimplemented => Unimplemented,
            tonic::Code::Internal => Internal,
            tonic::Code::Unavailable => Unavailable,
            tonic::Code::DataLoss => DataLoss,
            tonic::Code::Unauthenticated => Unauthenticated,
        }
    }

    /// The gRPC status code a server sends for this code; library codes map
    /// to the nearest gRPC code.
    pub fn to_grpc(self) -> tonic::Code {
        match self as i32 {
            n @ 0..=16 => tonic::Code::from_i32(n),
            _ => match self {
                ofl_code::Tls => tonic::Code::Unauthenticated,
                ofl_code::InvalidResponse => tonic::Code::Internal,
                ofl_code::RetriesExhausted | ofl_code::ProtocolMismatch => tonic::Code::Unavailable,
                _ => tonic::Code::Internal,
            },
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code.to_grpc(), e.message)
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let s = size_limit_as_resource_exhausted(s);
        Error::new(ofl_code::from_grpc(s.code()), s.message().to_string())
    }
}

/// tonic reports a message over the size limit as OUT_OF_RANGE; gRPC's C
/// core (OpenFL's peers) and this library's docs say RESOURCE_EXHAUSTED.
pub fn size_limit_as_resource_exhausted(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::OutOfRange && status.message().contains("message length too large") {
        tonic::Status::resource_exhausted(status.message())
    } else {
        status
    }
}
