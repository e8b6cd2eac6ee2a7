//! Conversions between the director's Rust types (`types.rs`) and the wire
//! types generated from `director.proto` and `base.proto`. The state speaks
//! only Rust types; the server and the clients convert here.

use super::types::{CudaDevice, DirectorMetric, EnvoyStatus, ExperimentListEntry, ExperimentOverview, ShardDetails};
use crate::proto::director::{
    CudaDeviceInfo, EnvoyInfo, ExperimentListItem, GetMetricStreamResponse, NodeInfo, ShardInfo,
};
use crate::proto::{CollaboratorDescription, DownloadStatus, DownloadStatuses, ExperimentDescription, TaskDescription};

impl From<CudaDeviceInfo> for CudaDevice {
    fn from(d: CudaDeviceInfo) -> Self {
        Self {
            index: d.index,
            memory_total: d.memory_total,
            memory_utilized: d.memory_utilized,
            device_utilization: d.device_utilization,
            cuda_driver_version: d.cuda_driver_version,
            cuda_version: d.cuda_version,
            name: d.name,
        }
    }
}

impl From<CudaDevice> for CudaDeviceInfo {
    fn from(d: CudaDevice) -> Self {
        Self {
            index: d.index,
            memory_total: d.memory_total,
            memory_utilized: d.memory_utilized,
            device_utilization: d.device_utilization,
            cuda_driver_version: d.cuda_driver_version,
            cuda_version: d.cuda_version,
            name: d.name,
        }
    }
}

/// A shard as reported: a missing `node_info` is an empty name, no devices.
impl From<ShardInfo> for ShardDetails {
    fn from(s: ShardInfo) -> Self {
        let node = s.node_info.unwrap_or_default();
        Self {
            name: node.name,
            cuda_devices: node.cuda_devices.into_iter().map(CudaDevice::from).collect(),
            description: s.shard_description,
            n_samples: s.n_samples,
            sample_shape: s.sample_shape,
            target_shape: s.target_shape,
        }
    }
}

impl From<ShardDetails> for ShardInfo {
    fn from(s: ShardDetails) -> Self {
        Self {
            node_info: Some(NodeInfo {
                name: s.name,
                cuda_devices: s.cuda_devices.into_iter().map(CudaDeviceInfo::from).collect(),
            }),
            shard_description: s.description,
            n_samples: s.n_samples,
            sample_shape: s.sample_shape,
            target_shape: s.target_shape,
        }
    }
}

impl From<EnvoyStatus> for EnvoyInfo {
    fn from(e: EnvoyStatus) -> Self {
        Self {
            shard_info: Some(e.shard_info.into()),
            is_online: e.is_online,
            is_experiment_running: e.is_experiment_running,
            last_updated: Some(prost_types::Timestamp::from(e.last_updated)),
            valid_duration: prost_types::Duration::try_from(e.valid_duration).ok(),
            experiment_name: e.experiment_name.unwrap_or_default(),
        }
    }
}

impl From<ExperimentListEntry> for ExperimentListItem {
    fn from(e: ExperimentListEntry) -> Self {
        Self {
            name: e.name,
            status: e.status.as_str().to_string(),
            collaborators_amount: e.collaborators as u32,
            tasks_amount: e.tasks as u32,
            progress: e.progress,
        }
    }
}

impl From<ExperimentOverview> for ExperimentDescription {
    fn from(e: ExperimentOverview) -> Self {
        let ready = |present: bool| if present { "ready" } else { "pending" }.to_string();
        let models = vec![
            DownloadStatus { name: "best".into(), status: ready(e.has_best_model) },
            DownloadStatus { name: "last".into(), status: ready(e.has_last_model) },
            DownloadStatus { name: "init".into(), status: ready(e.has_initial_model) },
        ];
        let logs = vec![DownloadStatus { name: "aggregator".into(), status: "ready".into() }];
        let (progress, round) = (e.progress, e.current_round);
        let collaborators = e
            .collaborators
            .into_iter()
            .map(|(name, status)| CollaboratorDescription {
                name,
                status: status.as_str().into(),
                progress,
                round,
                current_task: String::new(),
                next_task: String::new(),
            })
            .collect();
        Self {
            name: e.name,
            status: e.status.as_str().to_string(),
            progress,
            total_rounds: e.total_rounds,
            current_round: e.current_round,
            download_statuses: Some(DownloadStatuses { models, logs }),
            collaborators,
            tasks: e.tasks.into_iter().map(|(name, description)| TaskDescription { name, description }).collect(),
        }
    }
}

impl From<DirectorMetric> for GetMetricStreamResponse {
    fn from(m: DirectorMetric) -> Self {
        Self {
            metric_origin: m.origin,
            task_name: m.task_name,
            metric_name: m.metric_name,
            metric_value: m.value,
            round: m.round,
        }
    }
}

impl From<GetMetricStreamResponse> for DirectorMetric {
    fn from(m: GetMetricStreamResponse) -> Self {
        Self {
            origin: m.metric_origin,
            task_name: m.task_name,
            metric_name: m.metric_name,
            value: m.metric_value,
            round: m.round,
        }
    }
}
