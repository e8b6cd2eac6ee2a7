//! The gRPC service: who calls (certificate CN or `client_id`), the envoy
//! identity check, and the `Director` trait, whose RPCs live in
//! `envoy_rpc.rs` and `frontend_rpc.rs`.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::{envoy_rpc, frontend_rpc, DirectorHooks};
use crate::director::download::Archive;
use crate::director::names::default_caller;
use crate::director::state::DirectorState;
use crate::proto::director::director_server::Director;
use crate::proto::director::*;
use crate::metrics::{refused, Refusal};

/// Who called: a certificate CN, or a `client_id` (default `__default__`).
#[derive(Debug)]
pub(super) struct Caller {
    pub(super) name: String,
    /// Named by a client certificate (not by metadata).
    pub(super) certified: bool,
}

pub(in crate::director) fn shutting_down() -> Status {
    Status::unavailable("the director is shutting down")
}

/// The gRPC service.
pub(in crate::director) struct Service {
    pub(super) state: Arc<DirectorState>,
    pub(super) hooks: Arc<dyn DirectorHooks>,
    pub(super) tls: bool,
    pub(super) check_envoy_identity: bool,
    pub(super) stopping: watch::Receiver<bool>,
}

impl Service {
    pub(super) fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if self.tls {
            if let Some(certificate) = crate::tls::peer_certificate(request.extensions()) {
                let name = certificate
                    .common_name
                    .map(|cn| cn.to_string())
                    .ok_or_else(|| {
                        refused(Refusal::Unauthorized, Status::unauthenticated("the client certificate has no Common Name"))
                    })?;
                return Ok(Caller { name, certified: true });
            }
        }
        let name = match request.metadata().get("client_id") {
            None => default_caller().to_string(),
            Some(value) => value
                .to_str()
                .map_err(|_| {
                    refused(Refusal::BadHeader, Status::invalid_argument("the client_id metadata is not printable ASCII"))
                })?
                .to_string(),
        };
        let name = if name.is_empty() { default_caller().to_string() } else { name };
        Ok(Caller { name, certified: false })
    }

    /// Under mTLS an envoy RPC must come from the envoy it names.
    pub(super) fn check_envoy<T>(&self, request: &Request<T>, envoy: &str) -> Result<Caller, Status> {
        if envoy.is_empty() {
            return Err(refused(Refusal::BadHeader, Status::invalid_argument("the envoy (collaborator) name is empty")));
        }
        let caller = self.caller(request)?;
        if caller.certified && self.check_envoy_identity && caller.name != envoy {
            let status = Status::permission_denied(format!("certificate CN {:?} may not act as envoy {envoy:?}", caller.name));
            return Err(refused(Refusal::CnMismatch, status));
        }
        Ok(caller)
    }

    pub(super) fn stopped(&self) -> bool {
        *self.stopping.borrow()
    }

    /// GetExperimentData's checks: the envoy may download this archive now.
    /// The archive is then sent by the download route (`download.rs`).
    pub(in crate::director) async fn open_archive(
        &self,
        request: Request<GetExperimentDataRequest>,
    ) -> Result<Archive, Status> {
        let collaborator = request.get_ref().collaborator_name.clone();
        self.check_envoy(&request, &collaborator)?;
        let experiment = request.into_inner().experiment_name;
        let path = self.state.archive_for_envoy(&experiment, &collaborator)?;
        let unreadable =
            |e: std::io::Error| Status::not_found(format!("the archive of {experiment:?} cannot be read: {e}"));
        let file = tokio::fs::File::open(&path).await.map_err(unreadable)?;
        let len = file.metadata().await.map_err(unreadable)?.len();
        Ok(Archive { file, len, experiment, collaborator })
    }
}

pub(super) async fn wait_stopping(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

#[tonic::async_trait]
impl Director for Service {
    async fn update_shard_info(
        &self,
        request: Request<UpdateShardInfoRequest>,
    ) -> Result<Response<UpdateShardInfoResponse>, Status> {
        envoy_rpc::update_shard_info(self, request).await
    }

    async fn wait_experiment(
        &self,
        request: Request<WaitExperimentRequest>,
    ) -> Result<Response<WaitExperimentResponse>, Status> {
        envoy_rpc::wait_experiment(self, request).await
    }

    async fn update_envoy_status(
        &self,
        request: Request<UpdateEnvoyStatusRequest>,
    ) -> Result<Response<UpdateEnvoyStatusResponse>, Status> {
        envoy_rpc::update_envoy_status(self, request).await
    }

    async fn set_experiment_failed(
        &self,
        request: Request<SetExperimentFailedRequest>,
    ) -> Result<Response<SetExperimentFailedResponse>, Status> {
        envoy_rpc::set_experiment_failed(self, request).await
    }

    async fn get_experiment_description(
        &self,
        request: Request<GetExperimentDescriptionRequest>,
    ) -> Result<Response<GetExperimentDescriptionResponse>, Status> {
        frontend_rpc::get_experiment_description(self, request).await
    }

    async fn get_experiments_list(
        &self,
        request: Request<GetExperimentsListRequest>,
    ) -> Result<Response<GetExperimentsListResponse>, Status> {
        frontend_rpc::get_experiments_list(self, request).await
    }

    async fn set_new_experiment(
        &self,
        request: Request<Streaming<ExperimentInfo>>,
    ) -> Result<Response<SetNewExperimentResponse>, Status> {
        frontend_rpc::set_new_experiment(self, request).await
    }

    async fn get_experiment_status(
        &self,
        request: Request<GetExperimentStatusRequest>,
    ) -> Result<Response<GetExperimentStatusResponse>, Status> {
        frontend_rpc::get_experiment_status(self, request).await
    }

    async fn get_dataset_info(
        &self,
        _request: Request<GetDatasetInfoRequest>,
    ) -> Result<Response<GetDatasetInfoResponse>, Status> {
        frontend_rpc::get_dataset_info(self, _request).await
    }

    async fn get_trained_model(
        &self,
        request: Request<GetTrainedModelRequest>,
    ) -> Result<Response<TrainedModelResponse>, Status> {
        frontend_rpc::get_trained_model(self, request).await
    }

    async fn get_metric_stream(
        &self,
        request: Request<GetMetricStreamRequest>,
    ) -> Result<Response<BoxStream<GetMetricStreamResponse>>, Status> {
        frontend_rpc::get_metric_stream(self, request).await
    }

    async fn remove_experiment_data(
        &self,
        request: Request<RemoveExperimentRequest>,
    ) -> Result<Response<RemoveExperimentResponse>, Status> {
        frontend_rpc::remove_experiment_data(self, request).await
    }

    async fn get_envoys(&self, _request: Request<GetEnvoysRequest>) -> Result<Response<GetEnvoysResponse>, Status> {
        frontend_rpc::get_envoys(self, _request).await
    }

    /// Served by the download route (`download.rs`), which takes this path
    /// before tonic's generated service sees it.
    async fn get_experiment_data(
        &self,
        _request: Request<GetExperimentDataRequest>,
    ) -> Result<Response<BoxStream<ExperimentData>>, Status> {
        Err(Status::internal("GetExperimentData is served by the download route"))
    }
}
