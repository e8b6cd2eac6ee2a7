//! Shared helpers of the aggregator integration tests: a PKI generated at test
//! time (rcgen; the director tests use it too, through `director_common`), an
//! in-memory `AggregatorLogic`, and helpers that start a server on 127.0.0.1
//! and build clients.
//!
//! Every helper that waits is bounded: use [`within`] around calls.
#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};

use openfl_transport::aggregator::{
    AggregatorClient, AggregatorLogic, AggregatorServer, AggregatorClientOptions, Federation, AggregatorServerOptions, TaskResults,
    TasksReply, TensorRequest,
};
use openfl_transport::ConnectConfig;
use openfl_transport::proto::aggregator::aggregator_client::AggregatorClient as GrpcClient;
use openfl_transport::proto::NamedTensor;
use openfl_transport::RetryPolicy;
use openfl_transport::tls::{PemSource, TlsConfig};
use openfl_transport::{ofl_code, Error};

pub const AGGREGATOR_UUID: &str = "aggregator-uuid-7f3a";
pub const FEDERATION_UUID: &str = "federation-uuid-91c2";

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
    /// The certificate's serial number (what a CRL names).
    pub serial: u64,
}

/// A CA certificate with its key, able to sign CRLs.
pub struct Issuer {
    cert: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").finish_non_exhaustive()
    }
}

impl Issuer {
    /// A PEM CRL signed by this CA revoking the certificates `revoked`.
    pub fn crl(&self, revoked: &[&PemPair]) -> String {
        let revoked_certs = revoked
            .iter()
            .map(|pair| RevokedCertParams {
                serial_number: SerialNumber::from(pair.serial),
                revocation_time: date_time_ymd(2025, 1, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2025, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.cert, &self.key).expect("signing a CRL").pem().expect("CRL PEM")
    }
}

/// The test PKI: one CA, a server certificate, collaborator (or envoy)
/// certificates, director frontend certificates, and certificates issued by an
/// unrelated CA.
#[derive(Debug)]
pub struct Pki {
    /// The CA every peer trusts.
    pub ca: String,
    /// CN=localhost, SAN localhost/127.0.0.1/::1, serverAuth.
    pub server: PemPair,
    /// CN=col1, clientAuth.
    pub col1: PemPair,
    /// CN=col2, clientAuth.
    pub col2: PemPair,
    /// CN=col3 (a collaborator the federation does not know), clientAuth.
    pub col3: PemPair,
    /// CN=alice, clientAuth: a director frontend.
    pub alice: PemPair,
    /// CN=bob, clientAuth: another director frontend.
    pub bob: PemPair,
    /// The unrelated CA.
    pub foreign_ca: String,
    /// CN=col1, clientAuth, issued by the foreign CA.
    pub foreign_col1: PemPair,
    /// CN=alice, clientAuth, issued by the foreign CA.
    pub foreign_alice: PemPair,
    /// CN=localhost like `server`, issued by the foreign CA.
    pub foreign_server: PemPair,
    /// The test CA, to sign CRLs.
    pub ca_issuer: Issuer,
    /// The foreign CA, to sign CRLs.
    pub foreign_issuer: Issuer,
    /// A CA with the test CA's name but another key (its CRLs must not be
    /// taken for the test CA's).
    pub impostor_issuer: Issuer,
}

/// Serial numbers of the leaves, unique in this test binary.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1000);

fn ca(cn: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert, key)
}

fn leaf(cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose, issuer: &(Certificate, KeyPair)) -> PemPair {
    let key = KeyPair::generate().expect("leaf key");
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
    params.serial_number = Some(SerialNumber::from(serial));
    let cert = params.signed_by(&key, &issuer.0, &issuer.1).expect("signing a leaf");
    PemPair { cert: cert.pem(), key: key.serialize_pem(), serial }
}

fn generate_pki() -> Pki {
    let ca_pair = ca("openfl-test-ca");
    let foreign = ca("foreign-ca");
    let server_sans = ["localhost", "127.0.0.1", "::1"];
    let client = |cn: &str, issuer| leaf(cn, &[], ExtendedKeyUsagePurpose::ClientAuth, issuer);
    Pki {
        ca: ca_pair.0.pem(),
        server: leaf("localhost", &server_sans, ExtendedKeyUsagePurpose::ServerAuth, &ca_pair),
        col1: client("col1", &ca_pair),
        col2: client("col2", &ca_pair),
        col3: client("col3", &ca_pair),
        alice: client("alice", &ca_pair),
        bob: client("bob", &ca_pair),
        foreign_ca: foreign.0.pem(),
        foreign_col1: client("col1", &foreign),
        foreign_alice: client("alice", &foreign),
        foreign_server: leaf("localhost", &server_sans, ExtendedKeyUsagePurpose::ServerAuth, &foreign),
        ca_issuer: Issuer { cert: ca_pair.0, key: ca_pair.1 },
        foreign_issuer: Issuer { cert: foreign.0, key: foreign.1 },
        impostor_issuer: {
            let (cert, key) = ca("openfl-test-ca");
            Issuer { cert, key }
        },
    }
}

/// The PKI of this test binary, generated once.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(generate_pki)
}

/// The PEM pair of the test identity (certificate CN) `name`, issued by the
/// test CA.
pub fn identity(name: &str) -> &'static PemPair {
    let p = pki();
    match name {
        "col1" => &p.col1,
        "col2" => &p.col2,
        "col3" => &p.col3,
        "alice" => &p.alice,
        "bob" => &p.bob,
        other => panic!("no test identity {other}"),
    }
}

fn pem(text: &str) -> Option<PemSource> {
    Some(PemSource::Pem(text.as_bytes().to_vec()))
}

/// Server TLS from in-memory PEM: the test CA, the server certificate, client
/// certificates required.
pub fn server_tls() -> TlsConfig {
    let p = pki();
    TlsConfig {
        root_certificate: pem(&p.ca),
        certificate: pem(&p.server.cert),
        private_key: pem(&p.server.key),
        disable_client_auth: false,
        crls: Vec::new(),
    }
}

/// Client TLS from in-memory PEM: trusts the test CA, presents `identity`.
pub fn client_tls(identity: &PemPair) -> TlsConfig {
    TlsConfig {
        root_certificate: pem(&pki().ca),
        certificate: pem(&identity.cert),
        private_key: pem(&identity.key),
        disable_client_auth: false,
        crls: Vec::new(),
    }
}

/// Client TLS that trusts the test CA and presents no certificate.
pub fn client_tls_without_cert() -> TlsConfig {
    TlsConfig { root_certificate: pem(&pki().ca), certificate: None, private_key: None, disable_client_auth: true, crls: Vec::new() }
}

/// The PKI written to files in a temporary directory (kept while this lives).
pub struct PkiFiles {
    pub dir: tempfile::TempDir,
}

impl PkiFiles {
    pub fn write() -> Self {
        let p = pki();
        let dir = tempfile::tempdir().expect("tempdir");
        let files = [
            ("ca.crt", &p.ca),
            ("server.crt", &p.server.cert),
            ("server.key", &p.server.key),
            ("col1.crt", &p.col1.cert),
            ("col1.key", &p.col1.key),
            ("col2.crt", &p.col2.cert),
            ("col2.key", &p.col2.key),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("writing a PEM file");
        }
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn source(&self, name: &str) -> Option<PemSource> {
        Some(PemSource::File(self.path(name)))
    }

    /// Server TLS read from ca.crt, server.crt, server.key.
    pub fn server_tls(&self) -> TlsConfig {
        TlsConfig {
            root_certificate: self.source("ca.crt"),
            certificate: self.source("server.crt"),
            private_key: self.source("server.key"),
            disable_client_auth: false,
            crls: Vec::new(),
        }
    }

    /// Client TLS read from ca.crt, NAME.crt, NAME.key.
    pub fn client_tls(&self, name: &str) -> TlsConfig {
        TlsConfig {
            root_certificate: self.source("ca.crt"),
            certificate: self.source(&format!("{name}.crt")),
            private_key: self.source(&format!("{name}.key")),
            disable_client_auth: false,
            crls: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------

/// `len` bytes where byte i is (i*7 + seed) % 256.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    let seed = seed as usize;
    Bytes::from((0..len).map(|i| ((i * 7 + seed) % 256) as u8).collect::<Vec<u8>>())
}

/// A tensor named `name` holding `pattern(len, seed)`.
pub fn tensor(name: &str, len: usize, seed: u8) -> NamedTensor {
    NamedTensor {
        name: name.into(),
        round_number: 3,
        lossless: true,
        report: false,
        tags: vec!["model".into(), "trained".into()],
        transformer_metadata: vec![openfl_transport::proto::MetadataProto {
            int_to_float: [(0, 1.5f32), (1, -2.25f32)].into_iter().collect(),
            int_list: vec![4, 8, 15],
            bool_list: vec![true, false],
        }],
        data_bytes: pattern(len, seed),
    }
}

/// Asserts two byte strings are equal without printing megabytes on failure.
pub fn assert_bytes_eq(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "byte length differs");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("bytes differ first at offset {i}: got {:#04x}, want {:#04x}", got[i], want[i]);
    }
}

// ---------------------------------------------------------------------------
// The in-memory aggregation logic
// ---------------------------------------------------------------------------

/// An `AggregatorLogic` that records what it is given and answers what the
/// test set.
pub struct TestLogic {
    federation: Federation,
    tasks_reply: Mutex<TasksReply>,
    tensor: Mutex<NamedTensor>,
    quitting: AtomicBool,
    quits_sent: Mutex<HashSet<String>>,
    get_tasks_calls: AtomicUsize,
    tensor_requests: Mutex<Vec<(String, TensorRequest)>>,
    results: Mutex<Vec<(String, TaskResults)>>,
}

impl TestLogic {
    /// A logic for `federation()`: no tasks, an empty tensor, not quitting.
    pub fn new() -> Arc<Self> {
        Self::with_federation(federation())
    }

    pub fn with_federation(federation: Federation) -> Arc<Self> {
        Arc::new(Self {
            federation,
            tasks_reply: Mutex::new(TasksReply::default()),
            tensor: Mutex::new(NamedTensor::default()),
            quitting: AtomicBool::new(false),
            quits_sent: Mutex::new(HashSet::new()),
            get_tasks_calls: AtomicUsize::new(0),
            tensor_requests: Mutex::new(Vec::new()),
            results: Mutex::new(Vec::new()),
        })
    }

    /// What GetTasks answers while not quitting.
    pub fn set_tasks_reply(&self, reply: TasksReply) {
        *self.tasks_reply.lock().unwrap() = reply;
    }

    /// What GetAggregatedTensor answers.
    pub fn set_tensor(&self, tensor: NamedTensor) {
        *self.tensor.lock().unwrap() = tensor;
    }

    /// From now on GetTasks tells every collaborator to quit.
    pub fn start_quitting(&self) {
        self.quitting.store(true, Ordering::SeqCst);
    }

    /// Collaborators that were told to quit.
    pub fn quits_sent(&self) -> usize {
        self.quits_sent.lock().unwrap().len()
    }

    pub fn get_tasks_calls(&self) -> usize {
        self.get_tasks_calls.load(Ordering::SeqCst)
    }

    pub fn tensor_requests(&self) -> Vec<(String, TensorRequest)> {
        self.tensor_requests.lock().unwrap().clone()
    }

    /// Every upload received, with the collaborator that sent it.
    pub fn results(&self) -> Vec<(String, TaskResults)> {
        self.results.lock().unwrap().clone()
    }
}

impl AggregatorLogic for TestLogic {
    fn federation(&self) -> &Federation {
        &self.federation
    }

    fn get_tasks(&self, collaborator: &str) -> openfl_transport::Result<TasksReply> {
        self.get_tasks_calls.fetch_add(1, Ordering::SeqCst);
        if self.quitting.load(Ordering::SeqCst) {
            self.quits_sent.lock().unwrap().insert(collaborator.to_string());
            let round_number = self.tasks_reply.lock().unwrap().round_number;
            return Ok(TasksReply { round_number, tasks: vec![], sleep_time: 0, quit: true });
        }
        Ok(self.tasks_reply.lock().unwrap().clone())
    }

    fn get_aggregated_tensor(
        &self,
        collaborator: &str,
        request: &TensorRequest,
    ) -> openfl_transport::Result<NamedTensor> {
        self.tensor_requests.lock().unwrap().push((collaborator.to_string(), request.clone()));
        Ok(self.tensor.lock().unwrap().clone())
    }

    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> openfl_transport::Result<()> {
        self.results.lock().unwrap().push((collaborator.to_string(), results));
        Ok(())
    }

    fn all_quit_jobs_sent(&self) -> bool {
        let sent = self.quits_sent.lock().unwrap();
        self.federation.authorized_collaborators.iter().all(|c| sent.contains(c))
    }
}

/// The federation of the tests: col1 and col2 authorized.
pub fn federation() -> Federation {
    Federation {
        aggregator_uuid: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        single_col_cert_common_name: String::new(),
        authorized_collaborators: vec!["col1".into(), "col2".into()].into(),
    }
}

// ---------------------------------------------------------------------------
// Servers and clients
// ---------------------------------------------------------------------------

/// A server configuration on 127.0.0.1:`port` that answers authentication
/// failures at once.
pub fn server_config(port: u16, tls: Option<TlsConfig>) -> AggregatorServerOptions {
    AggregatorServerOptions {
        host: "127.0.0.1".into(),
        port,
        tls,
        auth_failure_max_delay: Duration::ZERO,
        quit_poll_interval: Duration::from_millis(200),
        ..AggregatorServerOptions::default()
    }
}

/// Starts a server on a free port of 127.0.0.1.
pub async fn start_server(tls: Option<TlsConfig>, logic: Arc<TestLogic>) -> AggregatorServer {
    start_server_with(server_config(0, tls), logic).await
}

pub async fn start_server_with(config: AggregatorServerOptions, logic: Arc<TestLogic>) -> AggregatorServer {
    within(10, AggregatorServer::start(config, logic)).await.expect("starting the aggregator server")
}

/// A retry policy that keeps trying for up to 20 s (calls that should succeed).
pub fn patient_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        deadline: Some(Duration::from_secs(20)),
    }
}

/// A retry policy that gives up after 2 s (calls that should fail, or that
/// succeed at once).
pub fn short_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        deadline: Some(Duration::from_secs(2)),
    }
}

/// A client configuration for 127.0.0.1:`port` in the test federation.
pub fn client_config(port: u16, tls: Option<TlsConfig>) -> AggregatorClientOptions {
    let mut config = AggregatorClientOptions::new("127.0.0.1", port);
    config.connect.tls = tls;
    config.connect.connect_timeout = Duration::from_secs(5);
    config.federation = Federation { authorized_collaborators: Default::default(), ..federation() };
    config.retry = patient_retry();
    config
}

/// A client of 127.0.0.1:`port` that gives up after 2 s of unavailability.
pub fn client(port: u16, tls: Option<TlsConfig>) -> AggregatorClient {
    let mut config = client_config(port, tls);
    config.retry = short_retry();
    AggregatorClient::new(config).expect("building the client")
}

/// The generated tonic client on a channel built the library's way.
pub fn raw_client(port: u16, tls: Option<TlsConfig>) -> GrpcClient<tonic::transport::Channel> {
    let mut connect = ConnectConfig::new("127.0.0.1", port);
    connect.tls = tls;
    GrpcClient::new(connect.channel().expect("raw channel"))
        .max_decoding_message_size(1 << 30)
        .max_encoding_message_size(1 << 30)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    listener.local_addr().unwrap().port()
}

/// Awaits `future` for at most `secs` seconds (every wait in these tests is bounded).
pub async fn within<F: Future>(secs: u64, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), future).await {
        Ok(output) => output,
        Err(_) => panic!("not done within {secs} s"),
    }
}

/// Asserts `result` failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(result: Result<T, Error>, code: ofl_code, needle: &str) -> Error {
    let error = result.expect_err("expected an error");
    assert_eq!(error.code(), code, "unexpected code; error: {error}");
    assert!(error.message().contains(needle), "message {:?} does not contain {needle:?}", error.message());
    error
}

/// Asserts a gRPC call failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, needle: &str) {
    let status = result.expect_err("expected a gRPC error");
    assert_eq!(status.code(), code, "unexpected code; status: {status:?}");
    assert!(status.message().contains(needle), "message {:?} does not contain {needle:?}", status.message());
}

/// Results of one small task, as a collaborator uploads them.
pub fn task_results(tensor_len: usize, seed: u8) -> TaskResults {
    TaskResults {
        round_number: 3,
        task_name: "train".into(),
        data_size: 1200,
        tensors: vec![tensor("conv1.weight", tensor_len, seed), tensor("conv1.bias", 64, seed.wrapping_add(1))],
    }
}
