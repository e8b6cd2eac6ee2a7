//! The director side of OpenFL 1.6 (director-based workflow): the server
//! envoys and frontends call, with its built-in state (envoys, experiments,
//! archives, models, metrics), and the envoy and frontend clients.

pub mod client;
mod download;
pub mod server;
pub mod state;

pub use client::{EnvoyClient, EnvoyClientConfig, FrontendClient, FrontendClientConfig};
pub use server::{ApproveAll, DirectorConfig, DirectorHandle, DirectorHooks, DirectorServer};
pub use state::{
    default_caller, validate_experiment_name, EnvoyStatus, ExperimentDetails, ExperimentFailure, ExperimentSnapshot,
    ExperimentStatus, Metric,
};
