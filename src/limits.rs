//! Bounds every server of this crate keeps so that a hostile or unlucky peer
//! cannot stall it: connections, streams per connection, handshake and idle
//! time, and the size of requests that are not streamed uploads.
//!
//! What is over a size bound is answered RESOURCE_EXHAUSTED, on every path.

use std::time::Duration;

use crate::error::{Error, Result};

/// Longest handshake or idle timeout: a year (longer would overflow deadlines).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Default of [`ServerLimits::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Connection and request bounds shared by the aggregator and the director
/// servers. The defaults are safe for a federation of up to about a
/// thousand collaborators or envoys; see each field for its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Concurrent HTTP/2 streams (calls) per connection; more are refused
    /// with REFUSED_STREAM. Default 100 (gRPC's usual figure; tonic would
    /// otherwise allow any number): a collaborator needs a handful.
    pub max_concurrent_streams: u32,
    /// Connections served at once; further connections wait in the listen
    /// backlog until one closes. Default 1000: below the common 1024
    /// file-descriptor limit, so descriptors run out last.
    pub max_connections: usize,
    /// Time from accepting a TCP connection until its TLS handshake and its
    /// HTTP/2 connection preface are complete; a connection slower than this
    /// is closed. Default 10 s (a handshake takes milliseconds).
    pub handshake_timeout: Duration,
    /// A connection with no call in flight for this long is closed (GOAWAY;
    /// gRPC clients reconnect on their next call). Default 60 s: idle
    /// connections hold descriptors, and a reconnect costs one handshake.
    pub idle_timeout: Duration,
    /// Largest request body of a call that is not a streamed upload (every
    /// unary call, and the request of server-streaming calls), gRPC framing
    /// included. Refused as soon as the body announces or sends more.
    /// Default 4 MiB (gRPC's default receive limit): such requests carry
    /// names and small descriptions, well under 64 KiB.
    pub max_unary_request_size: usize,
    /// How long a stopping server lets calls in flight finish. When it asks
    /// to stop, the server closes its listener and tells every connection
    /// to take no new call (GOAWAY); calls still in flight after this grace
    /// are cancelled (their clients see UNAVAILABLE, an upload cut short is
    /// never handed to the logic) and their connections closed, so `stop`
    /// returns within about this grace plus half a second whatever the peers
    /// do (a stalled upload, a client that stopped reading). Zero cancels at
    /// once. Default 5 s. (OpenFL 1.6's aggregator checks every 5 s whether
    /// to stop, then stops with no grace: `server.stop(0)`.)
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_connections: 1000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_unary_request_size: 4 << 20,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ServerLimits {
    /// Checks every bound (a zero would stop the server from serving).
    pub fn check(&self) -> Result<()> {
        if self.max_concurrent_streams == 0 {
            return Err(Error::invalid_argument("max_concurrent_streams must be at least 1"));
        }
        if self.max_connections == 0 || u32::try_from(self.max_connections).is_err() {
            return Err(Error::invalid_argument(format!(
                "max_connections {} is out of range (1 to {})",
                self.max_connections,
                u32::MAX
            )));
        }
        for (name, timeout) in [("handshake_timeout", self.handshake_timeout), ("idle_timeout", self.idle_timeout)] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(Error::invalid_argument(format!("{name} {timeout:?} is out of range (up to a year)")));
            }
        }
        if self.shutdown_grace > MAX_TIMEOUT {
            return Err(Error::invalid_argument(format!(
                "shutdown_grace {:?} is out of range (up to a year)",
                self.shutdown_grace
            )));
        }
        if self.max_unary_request_size < 1024 {
            return Err(Error::invalid_argument(format!(
                "max_unary_request_size {} is below 1024 bytes",
                self.max_unary_request_size
            )));
        }
        Ok(())
    }
}
