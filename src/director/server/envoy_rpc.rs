//! The RPCs envoys call: UpdateShardInfo, WaitExperiment,
//! UpdateEnvoyStatus, SetExperimentFailed (GetExperimentData is served by
//! the download route, `download.rs`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::service::{shutting_down, wait_stopping, Service};
use crate::director::names::default_caller;
use crate::director::types::ExperimentFailure;
use crate::proto::director::*;

pub(super) async fn update_shard_info(
    service: &Service,
    request: Request<UpdateShardInfoRequest>,
) -> Result<Response<UpdateShardInfoResponse>, Status> {
    let name = request
        .get_ref()
        .shard_info
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|n| n.name.clone())
        .unwrap_or_default();
    service.check_envoy(&request, &name)?;
    let shard_info = request.into_inner().shard_info.unwrap_or_default();
    let accepted = service.state.acknowledge_shard(shard_info.into())?;
    Ok(Response::new(UpdateShardInfoResponse { accepted }))
}

pub(super) async fn wait_experiment(
    service: &Service,
    request: Request<WaitExperimentRequest>,
) -> Result<Response<WaitExperimentResponse>, Status> {
    let envoy = request.get_ref().collaborator_name.clone();
    service.check_envoy(&request, &envoy)?;
    log::debug!("WaitExperiment from envoy {envoy}");
    let mut changes = service.state.subscribe();
    let mut stopping = service.stopping.clone();
    let mut first = true;
    loop {
        if service.stopped() {
            return Err(shutting_down());
        }
        if let Some(experiment_name) = service.state.poll_experiment(&envoy, first) {
            log::info!("experiment {experiment_name:?} handed to envoy {envoy}");
            return Ok(Response::new(WaitExperimentResponse { experiment_name }));
        }
        first = false;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Err(shutting_down()) },
            _ = wait_stopping(&mut stopping) => return Err(shutting_down()),
        }
    }
}

pub(super) async fn update_envoy_status(
    service: &Service,
    request: Request<UpdateEnvoyStatusRequest>,
) -> Result<Response<UpdateEnvoyStatusResponse>, Status> {
    let name = request.get_ref().name.clone();
    // An unknown envoy is NOT_FOUND before its identity is checked, as
    // OpenFL answers (its envoy client then reports its shard again).
    if !name.is_empty() && !service.state.envoy_registered(&name) {
        return Err(Status::not_found(format!("Unknown shard {name}")));
    }
    service.check_envoy(&request, &name)?;
    let request = request.into_inner();
    let devices = request.cuda_devices.into_iter().map(Into::into).collect();
    let period = service.state.update_envoy_status(&name, request.is_experiment_running, devices)?;
    Ok(Response::new(UpdateEnvoyStatusResponse { health_check_period: prost_types::Duration::try_from(period).ok() }))
}

pub(super) async fn set_experiment_failed(
    service: &Service,
    request: Request<SetExperimentFailedRequest>,
) -> Result<Response<SetExperimentFailedResponse>, Status> {
    let collaborator = request.get_ref().collaborator_name.clone();
    let caller = service.check_envoy(&request, &collaborator)?;
    if !caller.certified && caller.name != default_caller() {
        return Err(Status::permission_denied(format!(
            "caller {:?} may not fail experiments: only envoys (no client_id) may",
            caller.name
        )));
    }
    let request = request.into_inner();
    let failure =
        ExperimentFailure { collaborator, error_code: request.error_code, description: request.error_description };
    if let Some((info, failure)) = service.state.envoy_failed(&request.experiment_name, failure)? {
        // Logged once the state accepted the report (a refused one is only an error reply).
        log::error!(
            "collaborator {} failed with error code {}: {}; stopping experiment {:?}",
            failure.collaborator,
            failure.error_code,
            failure.description,
            request.experiment_name
        );
        let hooks = Arc::clone(&service.hooks);
        tokio::task::spawn_blocking(move || hooks.experiment_failed(&info, &failure));
    }
    Ok(Response::new(SetExperimentFailedResponse {}))
}
