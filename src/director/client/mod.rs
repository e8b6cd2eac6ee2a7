//! The director's clients: OpenFL 1.6's `ShardDirectorClient` (what an envoy
//! calls, [`EnvoyClient`]) and `DirectorClient` (what a frontend calls,
//! [`FrontendClient`]).
//!
//! Both reuse one channel across calls and retry while the director is
//! unreachable (see [`RetryPolicy`](crate::RetryPolicy)): a call is repeated whole, an upload or
//! a download restarts from its first byte. Archives move between files and
//! the network in chunks of at most 2 MiB, never whole in memory.
//!
//! Differences from OpenFL 1.6, on purpose: a frontend sends the initial
//! model once, in the last chunk of the archive (OpenFL repeats it in every
//! chunk; OpenFL's director reads it from the last one, ours from any), and
//! sends an experiment without an initial model too (OpenFL's client silently
//! sends nothing then); a frontend's `client_id` metadata is sent whenever
//! one is configured (OpenFL: only without TLS, where the director reads it).
//!
//! Files: `connection.rs` (the channel and retry loop both share),
//! `envoy.rs`, `frontend.rs`.

mod connection;
mod envoy;
mod frontend;

use std::path::Path;

use crate::error::Error;

pub use envoy::{EnvoyClient, EnvoyClientOptions};
pub use frontend::{FrontendClient, FrontendClientOptions};

pub(super) fn file_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}: {e}", path.display()))
}
