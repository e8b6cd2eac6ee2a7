//! What a client says when its connection fails (issue 10, item 9). A gRPC
//! C-core server (OpenFL's) refuses a client certificate without a TLS alert:
//! it closes the connection (an end of file, no TLS close_notify) right
//! after the handshake (seen here against grpcio with a foreign-CA
//! certificate: openssl reads an unexpected EOF, our client hyper's
//! "connection closed", code CANCELLED). A server closing the connection
//! earns the hint that the certificate may be refused; a plain network drop
//! — a refused connection, a reset while connecting or in the middle of a
//! call — must not suggest it (the client used to, for every drop after the
//! TLS handshake).
//!
//! Fake servers on 127.0.0.1 speak TLS (and HTTP/2) themselves and then
//! drop the connection exactly as the case needs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client_config, client_tls, free_port, pki};
use openfl_transport::aggregator::AggregatorClient;
use openfl_transport::director::{EnvoyClient, EnvoyClientOptions};
use openfl_transport::ofl_code;
use openfl_transport::RetryPolicy;
use tokio::net::{TcpListener, TcpStream};

const HINT: &str = "certificate";

/// How the fake server ends each connection.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// A TCP reset before the TLS handshake.
    ResetAtConnect,
    /// TLS handshake, then a close (end of file: no alert, no TLS
    /// close_notify, no HTTP/2): what gRPC C-core does to a certificate it
    /// refuses.
    CloseAfterHandshake,
    /// TLS and HTTP/2; the request arrives, then a TCP reset mid-call.
    ResetMidCall,
}

fn rustls_server() -> rustls::ServerConfig {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let p = pki();
    let cert = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).expect("a certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(&p.ca)).expect("the test CA");
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().expect("a verifier");
    let key = PrivateKeyDer::from_pem_slice(p.server.key.as_bytes()).expect("a key");
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert(&p.server.cert)], key)
        .expect("a server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

#[allow(deprecated)] // SO_LINGER 0: close with a reset, at once
fn reset_on_close(tcp: &TcpStream) {
    tcp.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
}

async fn serve_once(tcp: TcpStream, acceptor: tokio_rustls::TlsAcceptor, how: Ending) {
    if matches!(how, Ending::ResetAtConnect | Ending::ResetMidCall) {
        reset_on_close(&tcp);
    }
    if matches!(how, Ending::ResetAtConnect) {
        return;
    }
    let Ok(tls) = acceptor.accept(tcp).await else { return };
    match how {
        Ending::ResetAtConnect => {}
        Ending::CloseAfterHandshake => {
            // Read all the client sends first, until it has been quiet for
            // a while (unread bytes would turn the close into a reset, and a
            // loaded machine may deliver them late), then close without a word.
            use tokio::io::AsyncReadExt;
            let mut tls = tls;
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), tls.read(&mut buf)).await {
                if n == 0 {
                    break;
                }
            }
            drop(tls);
        }
        Ending::ResetMidCall => {
            let Ok(mut connection) = h2::server::handshake(tls).await else { return };
            if let Some(Ok(request)) = connection.accept().await {
                drop(request);
            }
            drop(connection);
        }
    }
}

/// A fake server on 127.0.0.1 that ends every connection `how`.
async fn fake_server(how: Ending) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let port = listener.local_addr().expect("local address").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(rustls_server()));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_once(tcp, acceptor.clone(), how));
        }
    });
    port
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        deadline: Some(Duration::from_millis(600)),
    }
}

/// The error of a collaborator's GetTasks (col1's certificate) once its
/// retry budget is spent.
async fn aggregator_client_error(port: u16) -> openfl_transport::Error {
    let mut config = client_config(port, Some(client_tls(&pki().col1)));
    config.connect.server_name = Some("localhost".into());
    config.retry = quick_retry();
    let client = AggregatorClient::new(config).expect("a client");
    let error = common::within(20, client.get_tasks("col1")).await.expect_err("the server drops every connection");
    assert_eq!(error.code(), ofl_code::RetriesExhausted, "{error}");
    error
}

/// The same for an envoy's health check.
async fn envoy_client_error(port: u16) -> openfl_transport::Error {
    let mut config = EnvoyClientOptions::new("127.0.0.1", port, "col1");
    config.connect.tls = Some(client_tls(&pki().col1));
    config.connect.server_name = Some("localhost".into());
    config.retry = quick_retry();
    let client = EnvoyClient::new(config).expect("a client");
    let error =
        common::within(20, client.send_health_check(false, vec![])).await.expect_err("the server drops every connection");
    assert_eq!(error.code(), ofl_code::RetriesExhausted, "{error}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_network_drops_do_not_blame_the_certificate() {
    for how in [Ending::ResetAtConnect, Ending::ResetMidCall] {
        let port = fake_server(how).await;
        for error in [aggregator_client_error(port).await, envoy_client_error(port).await] {
            assert!(!error.message().contains(HINT), "{how:?}: {error}");
        }
    }
    // Nobody listening: refused.
    let error = aggregator_client_error(free_port()).await;
    assert!(!error.message().contains(HINT), "refused: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_server_hints_at_a_refused_certificate() {
    // A reset just before the request is written reads the same to the
    // client (hyper cancels the request and drops the cause): it gets the
    // hint too, with its "if this persists".
    let port = fake_server(Ending::CloseAfterHandshake).await;
    for error in [aggregator_client_error(port).await, envoy_client_error(port).await] {
        assert!(error.message().contains("may be refusing this client's certificate"), "{error}");
    }
}

