//! OpenFL 1.6's `DirectorGRPCServer` with its built-in `Director`: the 14
//! RPCs envoys and frontends call, the experiment execution loop, hooks for
//! the host ([`DirectorHooks`]) and the handle the host reports progress
//! through ([`DirectorHandle`]).
//!
//! The caller of an RPC is OpenFL's `get_caller`: with TLS, the Common Name
//! of the client certificate; without TLS (or, under one-way TLS, a client
//! that presents no certificate), the gRPC metadata `client_id`, by default
//! `__default__` (envoys send none). Frontends see only the experiments they
//! submitted.
//!
//! Where the host runs the aggregator: OpenFL's director builds and runs an
//! aggregator from the experiment's plan. Here the host does: the
//! [`DirectorHooks::start_experiment`] hook tells it an experiment starts
//! (with its collaborators, archive and initial model), and the host reports
//! metrics, models and the end through [`DirectorHandle`].
//!
//! As OpenFL 1.6: GetExperimentStatus for an experiment the caller does not
//! have (unknown, or another caller's) answers an empty status, and
//! RemoveExperimentData of one answers `acknowledgement: true` and removes
//! nothing — neither tells a caller whether another's experiment exists.
//!
//! Differences from OpenFL 1.6, on purpose:
//! - WaitExperiment, GetMetricStream and the execution loop wake at once on a
//!   change (OpenFL polls every 10 s / 1 s); shutting down ends long polls
//!   with UNAVAILABLE;
//! - precise codes where OpenFL answers UNKNOWN or silently: an unknown or
//!   foreign experiment is NOT_FOUND in GetExperimentDescription,
//!   GetTrainedModel, GetMetricStream and SetExperimentFailed (OpenFL: empty
//!   answers, or UNKNOWN KeyError/AttributeError before an aggregator
//!   exists); bad chunks (a `size` field that differs from the bytes: OpenFL
//!   raises, UNKNOWN), bad names, an empty archive or no collaborators are
//!   INVALID_ARGUMENT; a name in use is ALREADY_EXISTS (OpenFL overwrites
//!   it); removing a running experiment is FAILED_PRECONDITION (OpenFL
//!   removes it from under its aggregator);
//! - bounds OpenFL does not have: at most
//!   [`MAX_COLLABORATORS`](super::names::MAX_COLLABORATORS) collaborator names
//!   per experiment (RESOURCE_EXHAUSTED beyond), each at most
//!   [`MAX_COLLABORATOR_NAME_LEN`](super::names::MAX_COLLABORATOR_NAME_LEN)
//!   bytes (INVALID_ARGUMENT), checked on the first message before any
//!   archive byte is stored; archive downloads hold little memory each and
//!   share a budget ([`DirectorServerOptions::max_download_buffer`], see
//!   `download.rs`);
//! - GetEnvoys works before any WaitExperiment (OpenFL: KeyError) and fills
//!   `experiment_name`;
//! - envoy RPCs check the envoy: under mTLS the certificate CN must be the
//!   envoy name it claims (`check_envoy_identity`, on by default; OpenFL
//!   checks nothing, so anyone could download any archive) — except that a
//!   health check for an envoy that is not registered is NOT_FOUND whoever
//!   asks, as in OpenFL (its envoy then reports its shard again), and
//!   GetExperimentData serves only the collaborators of an experiment that is
//!   in progress;
//! - SetExperimentFailed: without a client certificate it is honoured only
//!   from the default caller, as OpenFL; with one, when its CN is the
//!   reporting envoy (OpenFL never honours it under TLS: the CN is never
//!   `__default__`); a foreign caller gets PERMISSION_DENIED (OpenFL: an
//!   empty answer);
//! - an archive is written to disk as it arrives (OpenFL too) and its total
//!   is capped (`max_archive_size`);
//! - one metric stream per experiment: opening a new GetMetricStream ends the
//!   previous one (OpenFL lets concurrent streams split the queue), so a
//!   stream its client just cancelled cannot take metrics meant for the next.
//!
//! Files: this one (hooks, server life cycle), `options.rs`, `service.rs`
//! (callers, identity checks, the gRPC trait), `envoy_rpc.rs` and
//! `frontend_rpc.rs` (the RPCs), `execution.rs` (the execution loop),
//! `handle.rs` (the host's handle).

mod envoy_rpc;
mod execution;
mod experiment_route;
mod frontend_rpc;
mod handle;
mod options;
mod service;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::download::{DownloadBudget, Downloads, StreamedArchives};
use super::state::DirectorState;
use super::types::{ExperimentDetails, ExperimentFailure};
use crate::error::Result;
use crate::listen::{Listen, Serving};
use crate::metrics::{Recorder, Role, TransportMetrics};
use crate::method_route::MethodRoute;
use crate::proto::director::director_server::DirectorServer as DirectorGrpc;
use execution::execution_loop;

pub use handle::DirectorHandle;
pub use options::DirectorServerOptions;
pub(super) use service::{shutting_down, Service};

/// What the host decides and hears about. Every method runs on a blocking
/// thread (it may take long: a human reviewing a plan) and may be called
/// from several threads; the defaults approve and do nothing.
pub trait DirectorHooks: Send + Sync + 'static {
    /// OpenFL's `review_plan_callback`: approve (true) or reject a submitted
    /// experiment before it starts. A rejected experiment's archive is deleted.
    fn review_experiment(&self, _experiment: &ExperimentDetails) -> bool {
        true
    }

    /// The experiment starts: run its aggregator for `experiment.collaborators`
    /// (the envoys receive the experiment when this returns). An error marks
    /// the experiment failed. Report progress and the end through the
    /// [`DirectorHandle`]; the next experiment starts once this one finished
    /// or failed.
    fn start_experiment(&self, _experiment: &ExperimentDetails) -> Result<()> {
        Ok(())
    }

    /// An envoy reported the experiment failed (SetExperimentFailed): stop
    /// its aggregator.
    fn experiment_failed(&self, _experiment: &ExperimentDetails, _failure: &ExperimentFailure) {}
}

/// Hooks that approve everything and do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApproveAll;

impl DirectorHooks for ApproveAll {}

/// A running director server.
pub struct DirectorServer {
    local_addr: SocketAddr,
    state: Arc<DirectorState>,
    serving: Serving,
    metrics: Arc<Recorder>,
}

impl DirectorServer {
    /// Checks the configuration, creates the archive directory, binds, then
    /// serves in the background on the current Tokio runtime and starts the
    /// experiment execution loop.
    pub async fn start(config: DirectorServerOptions, hooks: Arc<dyn DirectorHooks>) -> Result<Self> {
        let mut listen = Listen::new(config.tls.as_ref(), &config.limits, config.max_message_size, options::UPLOADS)?;
        let metrics = Recorder::new(Role::DirectorServer, crate::metrics::DIRECTOR_RPCS);
        listen.set_metrics(&metrics);
        match &config.tls {
            None => log::warn!(
                "director server without TLS: callers are named by their client_id metadata, which any \
                 peer can set (envoys send none and are all `__default__`)"
            ),
            Some(tls) if tls.disable_client_auth => log::warn!(
                "director server with client authentication disabled: callers without a certificate are \
                 named by their client_id metadata"
            ),
            Some(_) => {}
        }
        let state = Arc::new(DirectorState::new(config.state_config())?);
        let listener = crate::listen::bind(&config.host, config.port).await?;
        let local_addr = crate::listen::local_addr(&listener)?;
        let mut serving = Serving::new();
        let service = Arc::new(Service {
            state: Arc::clone(&state),
            hooks: Arc::clone(&hooks),
            tls: config.tls.is_some(),
            check_envoy_identity: config.check_envoy_identity,
            stopping: serving.stopping(),
        });
        let grpc = DirectorGrpc::from_arc(Arc::clone(&service))
            .max_decoding_message_size(config.max_message_size)
            .max_encoding_message_size(config.max_message_size);
        let downloads = Downloads {
            state: Arc::clone(&state),
            budget: DownloadBudget::new(config.max_download_buffer),
            // Downloads in flight get the shutdown grace to finish.
            stopping: serving.cancelling(),
        };
        let experiments =
            experiment_route::AlignedExperiments { service: Arc::clone(&service), max_message_size: config.max_message_size };
        let grpc = MethodRoute::new(grpc, StreamedArchives::new(service, downloads));
        let grpc = MethodRoute::new(grpc, experiments);
        serving.run(grpc, listener, listen);
        tokio::spawn(execution_loop(Arc::clone(&state), hooks, serving.stopping()));
        log::info!("director server listening on {local_addr}");
        Ok(Self { local_addr, state, serving, metrics })
    }

    /// The address the server listens on (with the chosen port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The handle the host reports experiment progress through.
    pub fn handle(&self) -> DirectorHandle {
        DirectorHandle { state: Arc::clone(&self.state) }
    }

    /// Where archives are stored.
    pub fn archive_dir(&self) -> &Path {
        &self.state.config().archive_dir
    }

    /// Serves until [`stop`](Self::stop) (a director runs until told to
    /// stop), then shuts down: long polls (WaitExperiment, GetMetricStream)
    /// end at once with UNAVAILABLE, other calls in flight get
    /// [`ServerLimits::shutdown_grace`](crate::ServerLimits::shutdown_grace)
    /// to finish, then are cancelled (UNAVAILABLE). Returns within that
    /// grace plus about half a second of the stop, whatever the peers do.
    pub async fn serve(&self) -> Result<()> {
        let mut stopped = self.serving.stopping();
        let _ = stopped.wait_for(|s| *s).await;
        self.serving.wait_finished().await
    }

    /// A snapshot of the server's transport metrics (see [`crate::metrics`]).
    pub fn metrics(&self) -> TransportMetrics {
        self.metrics.snapshot()
    }

    /// Asks the server to stop; returns at once, and `serve` returns once
    /// the server wound down. Idempotent.
    pub fn stop(&self) {
        self.serving.stop();
    }

    /// Stops and waits until the server wound down (see [`serve`](Self::serve)).
    pub async fn shutdown(&self) -> Result<()> {
        self.serving.shutdown().await
    }
}
