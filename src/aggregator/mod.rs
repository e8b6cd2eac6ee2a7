//! The aggregator side of OpenFL 1.6: the server a collaborator calls, the
//! collaborator's client, and the logic interface between server and
//! aggregation.

pub mod checks;
pub mod client;
pub mod logic;
pub mod server;

pub use client::{AggregatorClient, ClientConfig};
pub use logic::{AggregatorLogic, Federation, TaskResults, TasksReply, TensorRequest};
pub use server::{AggregatorServer, ServerConfig};
