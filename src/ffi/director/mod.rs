//! The director's C API: the server with its options and host hooks, the
//! envoy and frontend clients with their options, and the objects their
//! answers come in. Module order is the header's order.

pub mod types;
pub mod experiment;
pub mod hooks;
mod callback_hooks;
pub mod server_options;
pub mod server;
pub mod reports;
pub mod client_options;
pub mod envoy_client;
pub mod frontend_client;
pub mod envoys;
pub mod experiment_list;
pub mod experiment_description;
