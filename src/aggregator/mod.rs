//! The aggregator side of OpenFL 1.6: the server a collaborator calls, the
//! collaborator's client, and the logic interface between server and
//! aggregation.

mod blocking;
mod collaborators;
pub mod checks;
pub mod client;
pub mod logic;
pub mod server;
mod tensor_count;
mod tensor_route;
pub mod upload;
mod upload_route;

pub use client::{AggregatorClient, AggregatorClientOptions};
pub use collaborators::Collaborators;
pub use logic::{AggregatorLogic, Federation, LogicCall, TaskResults, TasksReply, TensorPoll, TensorRequest, TensorWait};
pub use server::{AggregatorServer, AggregatorServerOptions};
