//! How a director server listens and behaves ([`DirectorServerOptions`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::director::state::StateConfig;
use crate::limits::ServerLimits;
use crate::stream::DEFAULT_MAX_MESSAGE_SIZE;
use crate::tls::TlsConfig;

/// How a director server listens and behaves.
#[derive(Clone, Debug)]
pub struct DirectorServerOptions {
    /// Address to listen on; `[::]` (the default) is IPv4 and IPv6.
    pub host: String,
    /// Port; 0 picks a free one (see [`DirectorServer::local_addr`](super::DirectorServer::local_addr)). OpenFL: 50051.
    pub port: u16,
    /// TLS settings; `None` serves without TLS (callers are then named by
    /// their `client_id` metadata, which anyone can set).
    pub tls: Option<TlsConfig>,
    /// The sample shape every shard must report (UpdateShardInfo).
    pub sample_shape: Vec<String>,
    /// The target shape every shard must report.
    pub target_shape: Vec<String>,
    /// Health-check period told to envoys; an envoy is online for two
    /// periods after its last health check. OpenFL envoys read whole seconds.
    pub envoy_health_check_period: Duration,
    /// Where archives are stored (created if missing). Default: a fresh
    /// directory under the system temporary directory (OpenFL: the working
    /// directory); set it.
    pub archive_dir: PathBuf,
    /// Largest archive accepted (SetNewExperiment), in bytes.
    pub max_archive_size: u64,
    /// Largest gRPC message received or sent (OpenFL: 1 GiB).
    pub max_message_size: usize,
    /// Metrics kept per experiment until streamed (the oldest are dropped).
    pub max_queued_metrics: usize,
    /// Under mTLS, envoy RPCs must come from a certificate whose CN is the
    /// envoy name they carry.
    pub check_envoy_identity: bool,
    /// Bytes of archive data read for downloads (GetExperimentData) and not
    /// yet written to a connection, across all downloads (at least 64 KiB).
    /// Over it downloads wait. A download whose client stops reading holds
    /// about 128 KiB of it (up to about 530 KiB when its client advertised
    /// a large window but leaves its socket full).
    pub max_download_buffer: usize,
    /// Connection and request bounds (see [`ServerLimits`] for defaults).
    pub limits: ServerLimits,
}

/// The streamed upload among the director's methods (archives go to disk as
/// they arrive, so no memory budget applies; each message is capped by
/// `max_message_size`).
pub(super) const UPLOADS: &[&str] = &["/openfl.director.Director/SetNewExperiment"];

impl Default for DirectorServerOptions {
    fn default() -> Self {
        let state = StateConfig::default();
        Self {
            host: "[::]".into(),
            port: 0,
            tls: None,
            sample_shape: state.sample_shape,
            target_shape: state.target_shape,
            envoy_health_check_period: state.envoy_health_check_period,
            archive_dir: state.archive_dir,
            max_archive_size: state.max_archive_size,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_queued_metrics: state.max_queued_metrics,
            check_envoy_identity: true,
            max_download_buffer: 64 << 20,
            limits: ServerLimits::default(),
        }
    }
}

impl DirectorServerOptions {
    pub(super) fn state_config(&self) -> StateConfig {
        StateConfig {
            archive_dir: self.archive_dir.clone(),
            sample_shape: self.sample_shape.clone(),
            target_shape: self.target_shape.clone(),
            envoy_health_check_period: self.envoy_health_check_period,
            max_archive_size: self.max_archive_size,
            max_queued_metrics: self.max_queued_metrics,
        }
    }
}
