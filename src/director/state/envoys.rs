//! The envoy registry: shards reported by envoys (UpdateShardInfo), their
//! health checks (UpdateEnvoyStatus) and GetEnvoys.

use std::time::{Duration, SystemTime};

use super::DirectorState;
use crate::director::types::{CudaDevice, EnvoyStatus, ShardDetails};
use crate::error::{ofl_code, Error, Result};

/// A registered envoy.
pub(super) struct Envoy {
    shard: ShardDetails,
    is_experiment_running: bool,
    last_updated: SystemTime,
    valid_duration: Duration,
}

impl DirectorState {
    fn valid_duration(&self) -> Duration {
        self.config.envoy_health_check_period.saturating_mul(2)
    }

    /// UpdateShardInfo: registers (or re-registers) the envoy when its sample
    /// and target shapes are the configured ones; `Ok(false)` otherwise.
    pub fn acknowledge_shard(&self, shard: ShardDetails) -> Result<bool> {
        let name = shard.name.clone();
        if name.is_empty() {
            return Err(Error::invalid_argument("shard_info.node_info.name is empty"));
        }
        if shard.sample_shape != self.config.sample_shape || shard.target_shape != self.config.target_shape {
            log::info!(
                "director did not accept the shard of {name}: shapes {:?}/{:?}, expected {:?}/{:?}",
                shard.sample_shape,
                shard.target_shape,
                self.config.sample_shape,
                self.config.target_shape
            );
            return Ok(false);
        }
        log::info!("director accepted the shard of {name}");
        let envoy = Envoy {
            shard,
            is_experiment_running: false,
            last_updated: SystemTime::now(),
            valid_duration: self.valid_duration(),
        };
        self.lock().envoys.insert(name, envoy);
        self.bump();
        Ok(true)
    }

    /// UpdateEnvoyStatus: a health check. Returns the health-check period;
    /// NOT_FOUND for an envoy that never registered.
    ///
    /// Reported CUDA devices replace the registered ones index by index;
    /// extra ones are added (OpenFL 1.6 raises IndexError there).
    pub fn update_envoy_status(
        &self,
        name: &str,
        is_experiment_running: bool,
        cuda_devices: Vec<CudaDevice>,
    ) -> Result<Duration> {
        let valid_duration = self.valid_duration();
        {
            let mut inner = self.lock();
            let envoy = inner
                .envoys
                .get_mut(name)
                .ok_or_else(|| Error::new(ofl_code::NotFound, format!("Unknown shard {name}")))?;
            envoy.is_experiment_running = is_experiment_running;
            envoy.last_updated = SystemTime::now();
            envoy.valid_duration = valid_duration;
            for (i, device) in cuda_devices.into_iter().enumerate() {
                match envoy.shard.cuda_devices.get_mut(i) {
                    Some(slot) => *slot = device,
                    None => envoy.shard.cuda_devices.push(device),
                }
            }
        }
        self.bump();
        Ok(self.config.envoy_health_check_period)
    }

    /// Whether an envoy registered.
    pub fn envoy_registered(&self, name: &str) -> bool {
        self.lock().envoys.contains_key(name)
    }

    /// GetEnvoys: every registered envoy, online or not, by name.
    pub fn envoys(&self) -> Vec<EnvoyStatus> {
        let now = SystemTime::now();
        let inner = self.lock();
        inner
            .envoys
            .iter()
            .map(|(name, e)| EnvoyStatus {
                shard_info: e.shard.clone(),
                is_online: now < e.last_updated + e.valid_duration,
                is_experiment_running: e.is_experiment_running,
                last_updated: e.last_updated,
                valid_duration: e.valid_duration,
                experiment_name: inner.assigned.get(name).filter(|n| inner.in_progress(n)).cloned(),
            })
            .collect()
    }

    /// GetDatasetInfo: the configured sample and target shapes.
    pub fn dataset_info(&self) -> (Vec<String>, Vec<String>) {
        (self.config.sample_shape.clone(), self.config.target_shape.clone())
    }
}
