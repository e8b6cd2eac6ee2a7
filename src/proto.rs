//! Rust types and gRPC stubs generated from `proto/` (the wire contract with
//! OpenFL 1.6). Base messages have no package and live at this module's root;
//! services live under `openfl::aggregator` and `openfl::director`.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/proto_gen.rs"));

pub use self::openfl::aggregator;
pub use self::openfl::director;
