//! What an envoy calls ([`EnvoyClient`], OpenFL's `ShardDirectorClient`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::connection::Connection;
use super::file_error;
use crate::call::CallOptions;
use crate::connect::ConnectConfig;
use crate::error::{ofl_code, Error, Result};
use crate::proto::director::*;
use crate::retry::{AttemptError, RetryPolicy};
use crate::stream::DEFAULT_MAX_MESSAGE_SIZE;

/// How an envoy reaches the director.
#[derive(Clone, Debug)]
pub struct EnvoyClientOptions {
    /// Director address, port and TLS settings (OpenFL: the envoy's
    /// certificate, whose CN is the shard name).
    pub connect: ConnectConfig,
    /// The envoy's name (`shard_name`; collaborator name in experiments).
    pub shard_name: String,
    /// Retry behaviour while the director is unreachable.
    pub retry: RetryPolicy,
    /// Largest message sent or received (1 GiB, as OpenFL).
    pub max_message_size: usize,
    /// Largest archive written by [`EnvoyClient::get_experiment_data`].
    pub max_archive_size: u64,
}

impl EnvoyClientOptions {
    /// A configuration for the director at `host:port`, without TLS.
    pub fn new(host: impl Into<String>, port: u16, shard_name: impl Into<String>) -> Self {
        Self {
            connect: ConnectConfig::new(host, port),
            shard_name: shard_name.into(),
            retry: RetryPolicy::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_archive_size: 1 << 30,
        }
    }
}

/// What an envoy calls (OpenFL's `ShardDirectorClient`).
pub struct EnvoyClient {
    conn: Connection,
    shard_name: String,
    max_archive_size: u64,
}

impl EnvoyClient {
    /// A client; certificates are read and checked now, the connection is
    /// made on the first call.
    pub fn new(config: EnvoyClientOptions) -> Result<Self> {
        if config.shard_name.is_empty() {
            return Err(Error::invalid_argument("shard_name is empty"));
        }
        let role = crate::metrics::Role::EnvoyClient;
        let conn = Connection::new(config.connect, config.retry, config.max_message_size, None, role)?;
        Ok(Self { conn, shard_name: config.shard_name, max_archive_size: config.max_archive_size })
    }

    /// The envoy's name.
    pub fn shard_name(&self) -> &str {
        &self.shard_name
    }

    /// A snapshot of the client's transport metrics (see [`crate::metrics`]).
    pub fn metrics(&self) -> crate::metrics::TransportMetrics {
        self.conn.metrics()
    }

    /// Cancels calls in progress (a WaitExperiment long poll too) and refuses
    /// new ones with `Cancelled`.
    pub fn close(&self) {
        self.conn.close();
    }

    /// UpdateShardInfo: registers the shard (its `node_info.name` is set to
    /// the shard name). True when the director accepted it (its sample and
    /// target shapes are the director's).
    pub async fn report_shard_info(&self, shard_info: ShardInfo) -> Result<bool> {
        self.report_shard_info_with(shard_info, &CallOptions::default()).await
    }

    /// UpdateShardInfo with per-call `options`.
    pub async fn report_shard_info_with(&self, mut shard_info: ShardInfo, options: &CallOptions) -> Result<bool> {
        shard_info.node_info.get_or_insert_with(Default::default).name = self.shard_name.clone();
        let message = UpdateShardInfoRequest { shard_info: Some(shard_info) };
        let reply = self
            .conn
            .unary("UpdateShardInfo", options, message, |mut stub, r| async move { stub.update_shard_info(r).await })
            .await?;
        Ok(reply.accepted)
    }

    /// WaitExperiment: blocks until the director has an experiment for this
    /// envoy, and returns its name.
    pub async fn wait_experiment(&self) -> Result<String> {
        self.wait_experiment_with(&CallOptions::default()).await
    }

    /// WaitExperiment with per-call `options` (a time limit bounds the wait).
    pub async fn wait_experiment_with(&self, options: &CallOptions) -> Result<String> {
        let message = WaitExperimentRequest { collaborator_name: self.shard_name.clone() };
        let reply = self
            .conn
            .unary("WaitExperiment", options, message, |mut stub, r| async move { stub.wait_experiment(r).await })
            .await?;
        if reply.experiment_name.is_empty() {
            return Err(Error::new(ofl_code::InvalidResponse, "WaitExperiment returned no experiment"));
        }
        Ok(reply.experiment_name)
    }

    /// GetExperimentData: downloads the experiment's archive into `dest`
    /// (through `dest` + ".part", renamed when complete). Returns its size.
    pub async fn get_experiment_data(&self, experiment_name: &str, dest: &Path) -> Result<u64> {
        self.get_experiment_data_with(experiment_name, dest, &CallOptions::default()).await
    }

    /// GetExperimentData with per-call `options`: progress counts the
    /// archive bytes received (total unknown until the end).
    pub async fn get_experiment_data_with(
        &self,
        experiment_name: &str,
        dest: &Path,
        options: &CallOptions,
    ) -> Result<u64> {
        let part = {
            let mut name = dest.as_os_str().to_owned();
            name.push(".part");
            PathBuf::from(name)
        };
        let message = GetExperimentDataRequest {
            experiment_name: experiment_name.to_string(),
            collaborator_name: self.shard_name.clone(),
        };
        let max = self.max_archive_size;
        let scope = self.conn.scope("GetExperimentData", options);
        let result = self
            .conn
            .with_retry(&scope, false, |mut stub| {
                let request = self.conn.request(message.clone());
                let part = part.clone();
                let meter = scope.meter();
                async move {
                    if let Some(meter) = &meter {
                        meter.restart(0);
                    }
                    let mut stream = stub.get_experiment_data(request).await?.into_inner();
                    let mut file =
                        tokio::fs::File::create(&part).await.map_err(|e| file_error("cannot create", &part, e))?;
                    let mut total = 0u64;
                    let mut index = 0usize;
                    while let Some(chunk) = stream.message().await? {
                        if chunk.size as usize != chunk.npbytes.len() {
                            return Err(Error::new(
                                ofl_code::DataLoss,
                                format!(
                                    "chunk {index}: size field says {} bytes but npbytes holds {}",
                                    chunk.size,
                                    chunk.npbytes.len()
                                ),
                            )
                            .into());
                        }
                        total += chunk.npbytes.len() as u64;
                        if total > max {
                            return Err(Error::new(
                                ofl_code::ResourceExhausted,
                                format!("the archive exceeds the maximum archive size of {max} bytes"),
                            )
                            .into());
                        }
                        file.write_all(&chunk.npbytes).await.map_err(|e| file_error("writing", &part, e))?;
                        index += 1;
                        if meter.as_ref().is_some_and(|m| !m.advance(chunk.npbytes.len() as u64)) {
                            return Err(stopped_by_progress());
                        }
                    }
                    file.flush().await.map_err(|e| file_error("writing", &part, e))?;
                    if meter.as_ref().is_some_and(|m| !m.finish()) {
                        return Err(stopped_by_progress());
                    }
                    Ok(total)
                }
            })
            .await;
        match result {
            Ok(total) => {
                tokio::fs::rename(&part, dest).await.map_err(|e| file_error("cannot rename to", dest, e))?;
                Ok(total)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    /// UpdateEnvoyStatus: a health check. Returns the director's health-check
    /// period; `NotFound` when the director does not know this envoy (OpenFL's
    /// `ShardNotFoundError`: report the shard again).
    pub async fn send_health_check(
        &self,
        is_experiment_running: bool,
        cuda_devices: Vec<CudaDeviceInfo>,
    ) -> Result<Duration> {
        self.send_health_check_with(is_experiment_running, cuda_devices, &CallOptions::default()).await
    }

    /// UpdateEnvoyStatus with per-call `options`.
    pub async fn send_health_check_with(
        &self,
        is_experiment_running: bool,
        cuda_devices: Vec<CudaDeviceInfo>,
        options: &CallOptions,
    ) -> Result<Duration> {
        let message = UpdateEnvoyStatusRequest { name: self.shard_name.clone(), is_experiment_running, cuda_devices };
        let reply = self
            .conn
            .unary("UpdateEnvoyStatus", options, message, |mut stub, r| async move { stub.update_envoy_status(r).await })
            .await?;
        let period = reply.health_check_period.unwrap_or_default();
        Ok(Duration::try_from(period).unwrap_or_default())
    }

    /// SetExperimentFailed: tells the director this envoy failed the experiment.
    pub async fn set_experiment_failed(&self, experiment_name: &str, error_code: u32, description: &str) -> Result<()> {
        self.set_experiment_failed_with(experiment_name, error_code, description, &CallOptions::default()).await
    }

    /// SetExperimentFailed with per-call `options`.
    pub async fn set_experiment_failed_with(
        &self,
        experiment_name: &str,
        error_code: u32,
        description: &str,
        options: &CallOptions,
    ) -> Result<()> {
        let message = SetExperimentFailedRequest {
            experiment_name: experiment_name.to_string(),
            collaborator_name: self.shard_name.clone(),
            error_code,
            error_description: description.to_string(),
        };
        self.conn
            .unary("SetExperimentFailed", options, message, |mut stub, r| async move { stub.set_experiment_failed(r).await })
            .await?;
        Ok(())
    }
}

/// The attempt's error when the progress callback said stop (the call then
/// ends with the scope's `Cancelled`).
fn stopped_by_progress() -> AttemptError {
    AttemptError::Final(Error::new(ofl_code::Cancelled, "the progress callback asked to stop"))
}

impl Drop for EnvoyClient {
    fn drop(&mut self) {
        self.close();
    }
}
