//! Certificate revocation lists (`TlsConfig::crls`): CRLs generated at test
//! time and signed by the test CA. A revoked client certificate is refused at
//! the handshake by the aggregator and the director, an unrevoked one still
//! works with the CRL loaded, a client refuses a revoked server certificate,
//! and bad CRL input fails with a specific error.

mod common;
mod director_common;

use std::time::{Duration, Instant};

use common::*;
use openfl_transport::aggregator::{AggregatorClient, AggregatorServer};
use openfl_transport::director::{FrontendClient, FrontendClientOptions};
use openfl_transport::ofl_code;
use openfl_transport::tls::{PemSource, TlsConfig};

fn pem(text: &str) -> PemSource {
    PemSource::Pem(text.as_bytes().to_vec())
}

/// Server TLS with `crls` loaded.
fn server_tls_with(crls: Vec<PemSource>) -> TlsConfig {
    TlsConfig { crls, ..server_tls() }
}

/// A client that would retry for a minute: a TLS failure must end it sooner.
fn long_retry_client(port: u16, tls: TlsConfig) -> AggregatorClient {
    let mut config = client_config(port, Some(tls));
    config.retry.deadline = Some(Duration::from_secs(60));
    AggregatorClient::new(config).expect("building the client")
}

// ---------------------------------------------------------------------------
// Revoked peers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_refuses_a_revoked_client_certificate_and_serves_the_others() {
    let p = pki();
    let crl = p.ca_issuer.crl(&[&p.col2]);
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls_with(vec![pem(&crl)])), logic.clone()).await;
    let port = server.local_addr().port();

    let revoked = long_retry_client(port, client_tls(&p.col2));
    let started = Instant::now();
    assert_error(within(40, revoked.get_tasks("col2")).await, ofl_code::Tls, "CertificateRevoked");
    assert!(started.elapsed() < Duration::from_secs(5), "the refusal was retried: {:?}", started.elapsed());
    assert_eq!(logic.get_tasks_calls(), 0);

    let honest = client(port, Some(client_tls(&p.col1)));
    within(20, honest.get_tasks("col1")).await.expect("GetTasks of an unrevoked collaborator");
    assert_eq!(logic.get_tasks_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_read_from_a_file_revokes_too() {
    let p = pki();
    let files = PkiFiles::write();
    let path = files.path("ca.crl");
    std::fs::write(&path, p.ca_issuer.crl(&[&p.col1])).unwrap();
    let tls = TlsConfig { crls: vec![PemSource::File(path)], ..files.server_tls() };
    let server = start_server(Some(tls), TestLogic::new()).await;
    let port = server.local_addr().port();

    let revoked = long_retry_client(port, files.client_tls("col1"));
    assert_error(within(40, revoked.get_tasks("col1")).await, ofl_code::Tls, "CertificateRevoked");
    let honest = client(port, Some(files.client_tls("col2")));
    within(20, honest.get_tasks("col2")).await.expect("GetTasks of an unrevoked collaborator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_crl_of_the_ca_changes_nothing() {
    let p = pki();
    let crl = p.ca_issuer.crl(&[]);
    let server = start_server(Some(server_tls_with(vec![pem(&crl)])), TestLogic::new()).await;
    let tls = TlsConfig { crls: vec![pem(&crl)], ..client_tls(&p.col1) };
    let honest = client(server.local_addr().port(), Some(tls));
    within(20, honest.get_tasks("col1")).await.expect("GetTasks with CRLs on both sides");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_a_revoked_server_certificate() {
    let p = pki();
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let port = server.local_addr().port();
    let crl = p.ca_issuer.crl(&[&p.server]);

    let tls = TlsConfig { crls: vec![pem(&crl)], ..client_tls(&p.col1) };
    let wary = long_retry_client(port, tls);
    let started = Instant::now();
    assert_error(within(40, wary.get_tasks("col1")).await, ofl_code::Tls, "Revoked");
    assert!(started.elapsed() < Duration::from_secs(5), "the refusal was retried: {:?}", started.elapsed());

    // Without the CRL the same server is fine.
    within(20, client(port, Some(client_tls(&p.col1))).get_tasks("col1")).await.expect("GetTasks without the CRL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_refuses_a_revoked_frontend_certificate() {
    let p = pki();
    let crl = p.ca_issuer.crl(&[&p.bob]);
    let d = director_common::start_with(true, |config| config.tls = Some(server_tls_with(vec![pem(&crl)]))).await;

    within(20, d.frontend("alice").get_experiments_list()).await.expect("an unrevoked frontend");

    let mut config = FrontendClientOptions::new("127.0.0.1", d.port());
    config.connect.tls = Some(client_tls(&p.bob));
    config.connect.server_name = Some("localhost".into());
    config.retry = patient_retry();
    let bob = FrontendClient::new(config).expect("frontend client");
    let started = Instant::now();
    assert_error(within(40, bob.get_experiments_list()).await, ofl_code::Tls, "CertificateRevoked");
    assert!(started.elapsed() < Duration::from_secs(5), "the refusal was retried: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Bad CRL input
// ---------------------------------------------------------------------------

async fn start_with(crls: Vec<PemSource>) -> openfl_transport::Result<()> {
    within(10, AggregatorServer::start(server_config(0, Some(server_tls_with(crls))), TestLogic::new()))
        .await
        .map(|_| ())
}

fn client_with(crls: Vec<PemSource>) -> openfl_transport::Result<()> {
    let tls = TlsConfig { crls, ..client_tls(&pki().col1) };
    AggregatorClient::new(client_config(1, Some(tls))).map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_crl_file_is_io_naming_it() {
    let crls = || vec![PemSource::File("/no/such/dir/ca.crl".into())];
    assert_error(start_with(crls()).await, ofl_code::Io, "crls[0]: cannot read /no/such/dir/ca.crl");
    assert_error(client_with(crls()), ofl_code::Io, "/no/such/dir/ca.crl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_without_a_crl_block_is_tls() {
    // A certificate where a CRL belongs.
    let crls = || vec![pem(&pki().ca)];
    assert_error(start_with(crls()).await, ofl_code::Tls, "crls[0] (in-memory PEM): no X509 CRL block found");
    assert_error(client_with(crls()), ofl_code::Tls, "no X509 CRL block found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_block_with_garbage_is_tls() {
    let good = pem(&pki().ca_issuer.crl(&[]));
    let bad_base64 = pem("-----BEGIN X509 CRL-----\nnot base64 !!!\n-----END X509 CRL-----\n");
    assert_error(start_with(vec![good.clone(), bad_base64]).await, ofl_code::Tls, "crls[1] (in-memory PEM): unreadable PEM");
    let not_der = pem("-----BEGIN X509 CRL-----\nAAECAwQF\n-----END X509 CRL-----\n");
    assert_error(start_with(vec![good, not_der]).await, ofl_code::Tls, "crls[1] (in-memory PEM): not a valid X509 CRL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_of_another_ca_is_tls() {
    let p = pki();
    let crls = || vec![pem(&p.foreign_issuer.crl(&[&p.foreign_col1]))];
    assert_error(start_with(crls()).await, ofl_code::Tls, "issued by \"CN=foreign-ca\", which is not a CA of root_certificate");
    assert_error(client_with(crls()), ofl_code::Tls, "not a CA of root_certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_not_signed_by_the_named_ca_is_tls() {
    let p = pki();
    let crls = || vec![pem(&p.impostor_issuer.crl(&[&p.col1]))];
    assert_error(start_with(crls()).await, ofl_code::Tls, "signature does not verify");
    assert_error(client_with(crls()), ofl_code::Tls, "signature does not verify");
}
