//! SetNewExperiment read from the HTTP/2 body: each `ExperimentInfo` is
//! placed as it arrives so that the initial model's tensor data starts on a
//! 64-byte boundary without a second copy (see `crate::aligned`); the
//! handling itself is `frontend_rpc::set_new_experiment`, as through tonic.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::frontend_rpc::set_new_experiment;
use super::service::Service;
use crate::aligned::{frames, EXPERIMENT_INFO};
use crate::method_route::{refuse_compression, MethodHandler};
use crate::proto::director::director_server::SERVICE_NAME;
use crate::proto::director::ExperimentInfo;

/// SetNewExperiment's handler.
pub(super) struct AlignedExperiments {
    pub service: Arc<Service>,
    /// Largest `ExperimentInfo` message accepted.
    pub max_message_size: usize,
}

impl MethodHandler for AlignedExperiments {
    const SERVICE: &'static str = SERVICE_NAME;
    const PATH: &'static str = "/openfl.director.Director/SetNewExperiment";

    fn answer(self: Arc<Self>, request: http::Request<Body>) -> BoxFuture<'static, Result<http::Response<Body>, Status>> {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            refuse_compression(&parts.headers)?;
            let messages = frames::message_stream::<ExperimentInfo>(body, EXPERIMENT_INFO, self.max_message_size);
            let request =
                tonic::Request::from_parts(MetadataMap::from_headers(parts.headers), parts.extensions.into(), messages);
            let response = set_new_experiment(&self.service, request).await?;
            Ok(frames::unary_response(response.get_ref()))
        })
    }
}
