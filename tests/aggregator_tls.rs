//! Who may call the aggregator: mTLS, one-way TLS and insecure set-ups that
//! work, and every rejection with its exact code — TLS failures, identity
//! checks (certificate CN vs header sender), header checks, and bad
//! certificate configurations at start.

mod common;

use std::time::{Duration, Instant};

use common::*;
use openfl_transport::aggregator::{AggregatorClient, AggregatorServer, Federation};
use openfl_transport::ofl_code;
use openfl_transport::tls::{PemSource, TlsConfig};

fn pem(text: &str) -> Option<PemSource> {
    Some(PemSource::Pem(text.as_bytes().to_vec()))
}

// ---------------------------------------------------------------------------
// Set-ups that work
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_certificates_from_files_works() {
    let files = PkiFiles::write();
    let logic = TestLogic::new();
    let server = start_server(Some(files.server_tls()), logic.clone()).await;
    let client = client(server.local_addr().port(), Some(files.client_tls("col2")));

    within(20, client.get_tasks("col2")).await.expect("GetTasks over mTLS from files");
    assert_eq!(logic.get_tasks_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_certificates_in_memory_works() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col1)));
    within(20, client.get_tasks("col1")).await.expect("GetTasks over mTLS from memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_tls_works_for_a_client_without_certificate() {
    let tls = TlsConfig { disable_client_auth: true, ..server_tls() };
    let logic = TestLogic::new();
    let server = start_server(Some(tls), logic.clone()).await;
    let client = client(server.local_addr().port(), Some(client_tls_without_cert()));

    within(20, client.get_tasks("col2")).await.expect("GetTasks over one-way TLS");
    within(20, client.send_local_task_results("col2", &task_results(1000, 3))).await.expect("upload");
    assert_eq!(logic.results()[0].0, "col2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_tls_still_checks_a_presented_certificate() {
    let tls = TlsConfig { disable_client_auth: true, ..server_tls() };
    let server = start_server(Some(tls), TestLogic::new()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col1)));

    within(20, client.get_tasks("col1")).await.expect("matching CN");
    let result = within(20, client.get_tasks("col2")).await;
    assert_error(result, ofl_code::Unauthenticated, "CN: |col1|");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_works() {
    let logic = TestLogic::new();
    let server = start_server(None, logic.clone()).await;
    let client = client(server.local_addr().port(), None);

    within(20, client.get_tasks("col1")).await.expect("GetTasks without TLS");
    within(20, client.send_local_task_results("col1", &task_results(1000, 3))).await.expect("upload");
    assert_eq!(logic.results().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_collaborator_certificate_works_in_single_cert_mode() {
    let federation = Federation { single_col_cert_common_name: "col1".into(), ..federation() };
    let server = start_server(Some(server_tls()), TestLogic::with_federation(federation)).await;
    let mut config = client_config(server.local_addr().port(), Some(client_tls(&pki().col1)));
    config.retry = short_retry();
    config.federation.single_col_cert_common_name = "col1".into();
    let client = AggregatorClient::new(config).unwrap();

    // col2 calls with the shared CN=col1 certificate.
    within(20, client.get_tasks("col2")).await.expect("GetTasks with the shared certificate");
}

// ---------------------------------------------------------------------------
// TLS failures: code Tls, never retried
// ---------------------------------------------------------------------------

/// A client that would retry for a minute: a TLS failure must end it sooner.
fn long_retry_client(port: u16, tls: TlsConfig) -> AggregatorClient {
    let mut config = client_config(port, Some(tls));
    config.retry.deadline = Some(Duration::from_secs(60));
    AggregatorClient::new(config).expect("building the client")
}

// Under TLS 1.3 the server rejects a client certificate after the client
// finished its handshake; the client's connector (src/connector.rs) waits for
// the server's first record, so the alert is seen on the first attempt
// (`rejected_client_certificate_fails_on_the_first_attempt`). The two tests
// below keep a retry budget and assert the code.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_a_foreign_ca_is_tls() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let port = server.local_addr().port();
    let client = long_retry_client(port, client_tls(&pki().foreign_col1));

    let result = within(40, client.get_tasks("col1")).await;
    assert_error(result, ofl_code::Tls, "UnknownCA");
    assert_eq!(logic.get_tasks_calls(), 0);

    // The server keeps serving honest collaborators.
    let honest = common::client(port, Some(client_tls(&pki().col1)));
    within(20, honest.get_tasks("col1")).await.expect("GetTasks after a rejected handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_certificate_under_mtls_is_tls() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let client = long_retry_client(server.local_addr().port(), client_tls_without_cert());

    let result = within(40, client.get_tasks("col1")).await;
    assert_error(result, ofl_code::Tls, "CertificateRequired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_client_certificate_fails_on_the_first_attempt() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    for tls in [client_tls(&pki().foreign_col1), client_tls_without_cert()] {
        let mut config = client_config(server.local_addr().port(), Some(tls));
        // A second attempt would start 2.5 s at the earliest.
        config.retry.initial_backoff = Duration::from_secs(5);
        config.retry.deadline = Some(Duration::from_secs(60));
        let client = AggregatorClient::new(config).unwrap();
        let started = Instant::now();
        assert_error(within(40, client.get_tasks("col1")).await, ofl_code::Tls, "alert");
        assert!(started.elapsed() < Duration::from_secs(2), "retried: took {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_from_an_untrusted_ca_is_tls() {
    let p = pki();
    let tls = TlsConfig {
        root_certificate: pem(&p.ca),
        certificate: pem(&p.foreign_server.cert),
        private_key: pem(&p.foreign_server.key),
        disable_client_auth: false,
        crls: Vec::new(),
    };
    let server = start_server(Some(tls), TestLogic::new()).await;
    let client = long_retry_client(server.local_addr().port(), client_tls(&p.col1));

    let started = Instant::now();
    let result = within(30, client.get_tasks("col1")).await;
    assert_error(result, ofl_code::Tls, "UnknownIssuer");
    assert!(started.elapsed() < Duration::from_secs(5), "the TLS failure was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_of_a_plaintext_server_is_a_protocol_mismatch() {
    let server = start_server(None, TestLogic::new()).await;
    let client = long_retry_client(server.local_addr().port(), client_tls(&pki().col1));

    let started = Instant::now();
    let result = within(30, client.get_tasks("col1")).await;
    assert_error(result, ofl_code::ProtocolMismatch, "plaintext (insecure) server");
    assert!(started.elapsed() < Duration::from_secs(5), "the mismatch was retried");
}

// ---------------------------------------------------------------------------
// Identity checks
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_cn_differing_from_sender_is_unauthenticated() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col1)));

    let result = within(20, client.get_tasks("col2")).await;
    assert_error(result, ofl_code::Unauthenticated, "collaborator_common_name: |col2|");
    assert_eq!(logic.get_tasks_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_certificate_cn_differing_from_sender_is_unauthenticated() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col1)));

    let result = within(20, client.send_local_task_results("col2", &task_results(1000, 1))).await;
    assert_error(result, ofl_code::Unauthenticated, "CN: |col1|");
    assert!(logic.results().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_collaborator_with_matching_cn_is_unauthenticated_under_mtls() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col3)));

    let result = within(20, client.get_tasks("col3")).await;
    assert_error(result, ofl_code::Unauthenticated, "CN: |col3|");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_collaborator_without_tls_is_permission_denied() {
    let server = start_server(None, TestLogic::new()).await;
    let client = client(server.local_addr().port(), None);

    let result = within(20, client.get_tasks("col3")).await;
    assert_error(result, ofl_code::PermissionDenied, "header.sender");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_answer_waits_for_the_configured_delay_at_most() {
    let mut config = server_config(0, Some(server_tls()));
    config.auth_failure_max_delay = Duration::from_millis(300);
    let server = start_server_with(config, TestLogic::new()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col1)));
    within(20, client.get_tasks("col1")).await.expect("warm-up call");

    let started = Instant::now();
    let result = within(20, client.get_tasks("col2")).await;
    assert_error(result, ofl_code::Unauthenticated, "Invalid collaborator");
    // The delay is random in [0, 300 ms]; allow generous scheduling slack.
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Header checks
// ---------------------------------------------------------------------------

async fn call_with_federation(edit: impl FnOnce(&mut Federation)) -> openfl_transport::Result<()> {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let mut config = client_config(server.local_addr().port(), Some(client_tls(&pki().col1)));
    config.retry = short_retry();
    edit(&mut config.federation);
    let client = AggregatorClient::new(config).unwrap();
    let result = within(20, client.get_tasks("col1")).await.map(|_| ());
    assert_eq!(logic.get_tasks_calls(), 0, "the logic must not see a rejected request");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_aggregator_uuid_is_invalid_argument_naming_receiver() {
    let result = call_with_federation(|f| f.aggregator_uuid = "another-aggregator".into()).await;
    assert_error(result, ofl_code::InvalidArgument, "header.receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_federation_uuid_is_invalid_argument_naming_it() {
    let result = call_with_federation(|f| f.federation_uuid = "another-federation".into()).await;
    assert_error(result, ofl_code::InvalidArgument, "header.federation_uuid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_single_col_cert_common_name_is_invalid_argument_naming_it() {
    let result = call_with_federation(|f| f.single_col_cert_common_name = "shared".into()).await;
    assert_error(result, ofl_code::InvalidArgument, "header.single_col_cert_common_name");
}

// ---------------------------------------------------------------------------
// Bad certificate configurations
// ---------------------------------------------------------------------------

/// Starts a server with `tls`; only the outcome matters.
async fn start_with(tls: TlsConfig) -> openfl_transport::Result<()> {
    within(10, AggregatorServer::start(server_config(0, Some(tls)), TestLogic::new())).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_and_key_that_do_not_match_fail_start_with_tls() {
    let tls = TlsConfig { private_key: pem(&pki().col1.key), ..server_tls() };
    assert_error(start_with(tls).await, ofl_code::Tls, "certificate/private_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_server_certificate_file_fails_start_with_io() {
    let files = PkiFiles::write();
    let tls = TlsConfig { certificate: files.source("no-such.crt"), ..files.server_tls() };
    assert_error(start_with(tls).await, ofl_code::Io, "no-such.crt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_key_file_fails_client_creation_with_io() {
    let files = PkiFiles::write();
    let tls = TlsConfig { private_key: files.source("no-such.key"), ..files.client_tls("col1") };
    let result = AggregatorClient::new(client_config(1, Some(tls)));
    assert_error(result.map(|_| ()), ofl_code::Io, "no-such.key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_certificate_pem_fails_start_with_tls() {
    let tls = TlsConfig { certificate: pem("this is not a certificate\n"), ..server_tls() };
    assert_error(start_with(tls).await, ofl_code::Tls, "certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_root_certificate_pem_fails_start_with_tls() {
    let tls = TlsConfig {
        root_certificate: pem("-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n"),
        ..server_tls()
    };
    assert_error(start_with(tls).await, ofl_code::Tls, "root_certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_private_key_pem_fails_client_creation_with_tls() {
    let tls = TlsConfig { private_key: pem("garbage"), ..client_tls(&pki().col1) };
    let result = AggregatorClient::new(client_config(1, Some(tls)));
    assert_error(result.map(|_| ()), ofl_code::Tls, "private_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_root_certificate_is_invalid_argument() {
    let tls = TlsConfig { root_certificate: None, ..server_tls() };
    assert_error(start_with(tls).await, ofl_code::InvalidArgument, "root_certificate");
    let tls = TlsConfig { root_certificate: None, ..client_tls(&pki().col1) };
    let result = AggregatorClient::new(client_config(1, Some(tls)));
    assert_error(result.map(|_| ()), ofl_code::InvalidArgument, "root_certificate");
}
