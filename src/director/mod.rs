//! The director side of OpenFL 1.6 (director-based workflow): the server
//! envoys and frontends call, with its built-in state (envoys, experiments,
//! archives, models, metrics), and the envoy and frontend clients.
//!
//! Files: `types.rs` (the Rust types everyone shares), `names.rs` (name
//! checks), `state/` (the state, Rust types only), `convert.rs` (Rust types
//! to and from the wire), `server/`, `download.rs` (archive downloads),
//! `client/`.

pub mod client;
mod convert;
mod download;
mod names;
pub mod server;
pub mod state;
mod types;

pub use client::{EnvoyClient, EnvoyClientOptions, FrontendClient, FrontendClientOptions};
pub use names::{default_caller, validate_experiment_name, MAX_COLLABORATORS, MAX_COLLABORATOR_NAME_LEN};
pub use server::{ApproveAll, DirectorHandle, DirectorHooks, DirectorServer, DirectorServerOptions};
pub use types::{
    CollaboratorStatus, CudaDevice, DirectorMetric, EnvoyStatus, ExperimentDetails, ExperimentFailure,
    ExperimentListEntry, ExperimentOverview, ExperimentSnapshot, ExperimentStatus, ShardDetails,
};
