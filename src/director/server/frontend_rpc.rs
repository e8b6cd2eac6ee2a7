//! The RPCs frontends call: SetNewExperiment (the archive goes to disk as
//! it arrives), GetExperimentStatus, GetDatasetInfo, GetTrainedModel,
//! GetMetricStream, RemoveExperimentData, GetEnvoys, GetExperimentsList,
//! GetExperimentDescription. A caller sees only the experiments it submitted.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::service::{shutting_down, wait_stopping, Service};
use crate::director::names::unique_collaborators;
use crate::director::state::MetricPoll;
use crate::proto::director::get_trained_model_request::ModelType;
use crate::proto::director::*;
use crate::proto::ModelProto;
use crate::stream::client_stream_finished;

/// Deletes an upload that did not become an experiment.
struct UploadGuard(Option<PathBuf>);

impl UploadGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// SetNewExperiment over `request`'s messages: tonic's stream, or the
/// aligned one of `super::experiment_route`.
pub(super) async fn set_new_experiment<S>(
    service: &Service,
    request: Request<S>,
) -> Result<Response<SetNewExperimentResponse>, Status>
where
    S: Stream<Item = Result<ExperimentInfo, Status>> + Unpin,
{
    let caller = service.caller(&request)?;
    let mut stream = request.into_inner();
    let first =
        stream.next().await.transpose()?.ok_or_else(|| Status::invalid_argument("empty stream: no ExperimentInfo message"))?;
    let name = first.name.clone();
    let collaborators = first.collaborator_names.clone();
    service.state.check_new_name(&name)?;
    unique_collaborators(&name, &collaborators)?;
    let upload = service.state.upload_path();
    let mut guard = UploadGuard(Some(upload.clone()));
    let mut file = tokio::fs::File::create(&upload)
        .await
        .map_err(|e| Status::internal(format!("cannot create {}: {e}", upload.display())))?;
    let max = service.state.config().max_archive_size;
    let mut total = 0u64;
    let mut model: Option<ModelProto> = None;
    let mut next = Some(first);
    let mut index = 0usize;
    while let Some(message) = next {
        if !message.name.is_empty() && message.name != name {
            return Err(Status::invalid_argument(format!(
                "chunk {index}: experiment name {:?} differs from {name:?}",
                message.name
            )));
        }
        if !message.collaborator_names.is_empty() && message.collaborator_names != collaborators {
            return Err(Status::invalid_argument(format!("chunk {index}: collaborator_names changed")));
        }
        let data = message.experiment_data.unwrap_or_default();
        if data.size as usize != data.npbytes.len() {
            return Err(Status::invalid_argument(format!(
                "chunk {index}: size field says {} bytes but npbytes holds {}",
                data.size,
                data.npbytes.len()
            )));
        }
        total += data.npbytes.len() as u64;
        if total > max {
            return Err(Status::resource_exhausted(format!(
                "the archive of {name:?} exceeds the maximum archive size of {max} bytes"
            )));
        }
        file.write_all(&data.npbytes)
            .await
            .map_err(|e| Status::internal(format!("writing {}: {e}", upload.display())))?;
        if model.is_none() {
            model = message.model_proto;
        }
        index += 1;
        next = stream.next().await.transpose()?;
    }
    client_stream_finished().await;
    file.flush().await.map_err(|e| Status::internal(format!("writing {}: {e}", upload.display())))?;
    drop(file);
    if total == 0 {
        return Err(Status::invalid_argument(format!(
            "empty archive: {index} chunk(s) of experiment {name:?} carried no data"
        )));
    }
    if let Some(model) = &mut model {
        // Placed aligned by experiment_route; copied only when it was not
        // (see crate::aligned).
        crate::aligned::align_tensors(&mut model.tensors, "SetNewExperiment")?;
    }
    service.state.register_experiment(&name, &caller.name, &collaborators, &upload, total, model)?;
    guard.disarm();
    Ok(Response::new(SetNewExperimentResponse { accepted: true }))
}

pub(super) async fn get_experiment_status(
    service: &Service,
    request: Request<GetExperimentStatusRequest>,
) -> Result<Response<GetExperimentStatusResponse>, Status> {
    let caller = service.caller(&request)?;
    // None: not the caller's (or unknown): OpenFL's empty status.
    let status = service.state.experiment_status(&caller.name, &request.get_ref().experiment_name);
    let experiment_status = status.map(|s| s.as_str().to_string()).unwrap_or_default();
    Ok(Response::new(GetExperimentStatusResponse { experiment_status }))
}

pub(super) async fn get_dataset_info(
    service: &Service,
    _request: Request<GetDatasetInfoRequest>,
) -> Result<Response<GetDatasetInfoResponse>, Status> {
    let (sample_shape, target_shape) = service.state.dataset_info();
    let shard_info = ShardInfo { sample_shape, target_shape, ..Default::default() };
    Ok(Response::new(GetDatasetInfoResponse { shard_info: Some(shard_info) }))
}

pub(super) async fn get_trained_model(
    service: &Service,
    request: Request<GetTrainedModelRequest>,
) -> Result<Response<TrainedModelResponse>, Status> {
    let caller = service.caller(&request)?;
    let request = request.into_inner();
    let best = match ModelType::try_from(request.model_type) {
        Ok(ModelType::BestModel) => true,
        Ok(ModelType::LastModel) => false,
        Err(_) => return Err(Status::invalid_argument(format!("unknown model_type {}", request.model_type))),
    };
    let model_proto = service.state.trained_model(&caller.name, &request.experiment_name, best)?;
    Ok(Response::new(TrainedModelResponse { model_proto }))
}

pub(super) async fn get_metric_stream(
    service: &Service,
    request: Request<GetMetricStreamRequest>,
) -> Result<Response<BoxStream<GetMetricStreamResponse>>, Status> {
    let caller = service.caller(&request)?;
    let name = request.into_inner().experiment_name;
    let generation = service.state.open_metric_stream(&caller.name, &name)?;
    // Capacity 1: a metric leaves the queue only when the stream can take it.
    let (tx, rx) = mpsc::channel::<Result<GetMetricStreamResponse, Status>>(1);
    let state = Arc::clone(&service.state);
    let mut stopping = service.stopping.clone();
    tokio::spawn(async move {
        let mut changes = state.subscribe();
        loop {
            if *stopping.borrow() {
                let _ = tx.send(Err(shutting_down())).await;
                return;
            }
            let permit = tokio::select! {
                permit = tx.reserve() => match permit { Ok(p) => p, Err(_) => return },
                _ = wait_stopping(&mut stopping) => continue,
            };
            match state.poll_metric(&name, generation) {
                MetricPoll::Metric(m) => permit.send(Ok(m.into())),
                MetricPoll::End => return,
                MetricPoll::Wait => {
                    drop(permit);
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() { return },
                        _ = wait_stopping(&mut stopping) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

pub(super) async fn remove_experiment_data(
    service: &Service,
    request: Request<RemoveExperimentRequest>,
) -> Result<Response<RemoveExperimentResponse>, Status> {
    let caller = service.caller(&request)?;
    // Not the caller's (or unknown): nothing removed, acknowledged as OpenFL does.
    service.state.remove_experiment(&caller.name, &request.get_ref().experiment_name)?;
    Ok(Response::new(RemoveExperimentResponse { acknowledgement: true }))
}

pub(super) async fn get_envoys(
    service: &Service,
    _request: Request<GetEnvoysRequest>,
) -> Result<Response<GetEnvoysResponse>, Status> {
    let envoy_infos = service.state.envoys().into_iter().map(EnvoyInfo::from).collect();
    Ok(Response::new(GetEnvoysResponse { envoy_infos }))
}

pub(super) async fn get_experiments_list(
    service: &Service,
    request: Request<GetExperimentsListRequest>,
) -> Result<Response<GetExperimentsListResponse>, Status> {
    let caller = service.caller(&request)?;
    Ok(Response::new(GetExperimentsListResponse {
        experiments: service.state.experiments_list(&caller.name).into_iter().map(Into::into).collect(),
    }))
}

pub(super) async fn get_experiment_description(
    service: &Service,
    request: Request<GetExperimentDescriptionRequest>,
) -> Result<Response<GetExperimentDescriptionResponse>, Status> {
    let caller = service.caller(&request)?;
    let experiment = service.state.experiment_description(&caller.name, &request.get_ref().name)?;
    Ok(Response::new(GetExperimentDescriptionResponse { experiment: Some(experiment.into()) }))
}
