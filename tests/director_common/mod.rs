//! Shared helpers of the director integration tests (tests/director_*.rs):
//! the PKI of `common` (envoys col1/col2, frontends alice/bob), hooks that
//! record what the director tells the host, and helpers that start a director
//! on 127.0.0.1 and build clients.
//!
//! Every wait is bounded: use `common::within` around calls.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openfl_transport::director::ExperimentFailure;
use openfl_transport::director::{
    DirectorServerOptions, DirectorHooks, DirectorServer, EnvoyClient, EnvoyClientOptions, ExperimentDetails, FrontendClient,
    FrontendClientOptions,
};
use openfl_transport::proto::director::director_client::DirectorClient as GrpcClient;
use openfl_transport::proto::director::{CudaDeviceInfo, NodeInfo, ShardInfo};
use openfl_transport::proto::{MetadataProto, ModelProto, NamedTensor};
use openfl_transport::tls::TlsConfig;

// The PKI is the aggregator tests' (envoys col1/col2, frontends alice/bob).
use crate::common::{client_tls, identity, server_tls, short_retry, within};

// ---------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------

/// Hooks that reject experiments whose name starts with "reject", may fail
/// starts of names starting with "nostart", and record every call.
#[derive(Default)]
pub struct TestHooks {
    pub reviewed: Mutex<Vec<String>>,
    pub started: Mutex<Vec<ExperimentDetails>>,
    pub failures: Mutex<Vec<(String, ExperimentFailure)>>,
}

impl DirectorHooks for TestHooks {
    fn review_experiment(&self, experiment: &ExperimentDetails) -> bool {
        self.reviewed.lock().unwrap().push(experiment.name.clone());
        assert!(experiment.archive_path.exists(), "the archive exists while it is reviewed");
        !experiment.name.starts_with("reject")
    }

    fn start_experiment(&self, experiment: &ExperimentDetails) -> openfl_transport::Result<()> {
        self.started.lock().unwrap().push(experiment.clone());
        if experiment.name.starts_with("nostart") {
            return Err(openfl_transport::Error::invalid_argument("the plan does not parse"));
        }
        Ok(())
    }

    fn experiment_failed(&self, experiment: &ExperimentDetails, failure: &ExperimentFailure) {
        self.failures.lock().unwrap().push((experiment.name.clone(), failure.clone()));
    }
}

// ---------------------------------------------------------------------------
// Servers and clients
// ---------------------------------------------------------------------------

pub fn sample_shape() -> Vec<String> {
    vec!["28".into(), "28".into()]
}

pub fn target_shape() -> Vec<String> {
    vec!["1".into()]
}

/// A director on 127.0.0.1, a free port, archives in `archive_dir`.
pub fn config(tls: Option<TlsConfig>, archive_dir: &Path) -> DirectorServerOptions {
    DirectorServerOptions {
        host: "127.0.0.1".into(),
        port: 0,
        tls,
        sample_shape: sample_shape(),
        target_shape: target_shape(),
        envoy_health_check_period: Duration::from_secs(60),
        archive_dir: archive_dir.to_path_buf(),
        ..DirectorServerOptions::default()
    }
}

pub struct Director {
    pub server: DirectorServer,
    pub hooks: Arc<TestHooks>,
    pub tls: bool,
    pub dir: tempfile::TempDir,
}

impl Director {
    pub fn port(&self) -> u16 {
        self.server.local_addr().port()
    }

    pub fn archive_dir(&self) -> PathBuf {
        self.dir.path().join("archives")
    }

    fn connect_tls(&self, name: &str) -> Option<TlsConfig> {
        self.tls.then(|| client_tls(identity(name)))
    }

    /// The envoy `name` (its own certificate under TLS).
    pub fn envoy(&self, name: &str) -> EnvoyClient {
        self.envoy_as(name, name)
    }

    /// The envoy `shard` presenting the certificate of `cert_name`.
    pub fn envoy_as(&self, shard: &str, cert_name: &str) -> EnvoyClient {
        let mut config = EnvoyClientOptions::new("127.0.0.1", self.port(), shard);
        config.connect.tls = self.connect_tls(cert_name);
        config.connect.server_name = Some("localhost".into());
        config.retry = short_retry();
        EnvoyClient::new(config).expect("envoy client")
    }

    /// The frontend `name`: its certificate under TLS, its client_id without.
    pub fn frontend(&self, name: &str) -> FrontendClient {
        let mut config = FrontendClientOptions::new("127.0.0.1", self.port());
        config.connect.tls = self.connect_tls(name);
        config.connect.server_name = Some("localhost".into());
        config.client_id = (!self.tls).then(|| name.to_string());
        config.retry = short_retry();
        FrontendClient::new(config).expect("frontend client")
    }

    /// The generated tonic client presenting `name`'s certificate (under TLS).
    pub fn raw(&self, name: &str) -> GrpcClient<tonic::transport::Channel> {
        let mut connect = openfl_transport::ConnectConfig::new("127.0.0.1", self.port());
        connect.tls = self.connect_tls(name);
        connect.server_name = Some("localhost".into());
        GrpcClient::new(connect.channel().expect("raw channel"))
            .max_decoding_message_size(1 << 30)
            .max_encoding_message_size(1 << 30)
    }

    /// Writes an archive file of `len` pattern bytes in the test directory.
    pub fn archive(&self, name: &str, len: usize, seed: u8) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.zip"));
        std::fs::write(&path, crate::common::pattern(len, seed)).expect("writing an archive");
        path
    }

    pub fn handle(&self) -> openfl_transport::director::DirectorHandle {
        self.server.handle()
    }
}

pub async fn start_with(tls: bool, tweak: impl FnOnce(&mut DirectorServerOptions)) -> Director {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(tls.then(server_tls), &dir.path().join("archives"));
    tweak(&mut config);
    let hooks = Arc::new(TestHooks::default());
    let server = within(10, DirectorServer::start(config, hooks.clone())).await.expect("starting the director");
    Director { server, hooks, tls, dir }
}

/// A director over mTLS.
pub async fn start_mtls() -> Director {
    start_with(true, |_| {}).await
}

/// A shard with the director's shapes (or `sample` instead).
pub fn shard(sample: Option<Vec<String>>) -> ShardInfo {
    ShardInfo {
        node_info: Some(NodeInfo {
            name: String::new(),
            cuda_devices: vec![CudaDeviceInfo { index: 0, ..Default::default() }],
        }),
        shard_description: "mnist shard".into(),
        n_samples: 6000,
        sample_shape: sample.unwrap_or_else(sample_shape),
        target_shape: target_shape(),
    }
}

/// A one-tensor model whose data is pattern(len, seed).
pub fn model(len: usize, seed: u8) -> ModelProto {
    ModelProto {
        tensors: vec![NamedTensor {
            name: "w".into(),
            round_number: 0,
            lossless: true,
            report: false,
            tags: vec!["model".into()],
            transformer_metadata: vec![MetadataProto { int_list: vec![len as i32], ..Default::default() }],
            data_bytes: crate::common::pattern(len, seed),
        }],
    }
}

pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
