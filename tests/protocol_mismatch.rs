//! A client aimed at a server that speaks another protocol fails at once
//! with PROTOCOL_MISMATCH naming the cause (it used to retry such servers
//! as "transport error" until its budget was spent), and a client that
//! keeps failing says so at WARN: the first failure with the address and
//! the cause, then at most one summary per 30 s.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use openfl_transport::aggregator::AggregatorClient;
use openfl_transport::ofl_code;
use openfl_transport::RetryPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every log line of this test binary, at every level.
static LINES: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Recorder;

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LINES.lock().unwrap().push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

fn record_logs() {
    if log::set_logger(&Recorder).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// WARN lines that mention `needle`.
fn warnings_about(needle: &str) -> Vec<String> {
    let lines = LINES.lock().unwrap();
    lines.iter().filter(|(l, m)| *l == log::Level::Warn && m.contains(needle)).map(|(_, m)| m.clone()).collect()
}

/// A client of 127.0.0.1:`port` that would retry for 20 s.
fn patient(port: u16, tls: Option<openfl_transport::tls::TlsConfig>) -> AggregatorClient {
    AggregatorClient::new(client_config(port, tls)).expect("building the client")
}

/// A TCP server that answers every connection with `greeting` (after the
/// client's first bytes or 200 ms) and keeps it open for 3 s.
async fn canned_server(greeting: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf)).await;
                let _ = socket.write_all(greeting).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            });
        }
    });
    port
}

/// Asserts GetTasks fails within 1 s with PROTOCOL_MISMATCH whose message
/// contains `cause`, and that the failure was logged at WARN.
async fn assert_mismatch(port: u16, tls: Option<openfl_transport::tls::TlsConfig>, cause: &str) {
    let client = patient(port, tls);
    let started = Instant::now();
    let result = within(10, client.get_tasks("col1")).await;
    let error = assert_error(result, ofl_code::ProtocolMismatch, cause);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}: {error}", started.elapsed());
    assert!(error.message().contains(&format!("127.0.0.1:{port}")), "no address in {error}");
    let warned = warnings_about(&format!("127.0.0.1:{port}"));
    assert!(warned.iter().any(|w| w.contains(cause)), "no WARN naming {cause:?}: {warned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client_to_a_tls_server_fails_at_once() {
    record_logs();
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    assert_mismatch(server.local_addr().port(), None, "answered with TLS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_to_a_plaintext_server_fails_at_once() {
    record_logs();
    let server = start_server(None, TestLogic::new()).await;
    let port = server.local_addr().port();
    assert_mismatch(port, Some(client_tls(&pki().col1)), "plaintext (insecure) server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_server_fails_at_once() {
    record_logs();
    let port = canned_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    assert_mismatch(port, None, "answered with HTTP/1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_speaking_garbage_fails_at_once() {
    record_logs();
    let port = canned_server(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01").await;
    assert_mismatch(port, None, "does not speak HTTP/2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_retried_and_warned_about_once() {
    record_logs();
    let port = free_port();
    let mut config = client_config(port, Some(client_tls(&pki().col1)));
    config.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        deadline: Some(Duration::from_millis(1500)),
    };
    let client = AggregatorClient::new(config).unwrap();
    let result = within(10, client.get_tasks("col1")).await;
    let error = assert_error(result, ofl_code::RetriesExhausted, "refused");
    let attempts: u32 = error.message().split("after ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(attempts > 5, "expected many attempts: {error}");
    let warned = warnings_about(&format!("127.0.0.1:{port}"));
    assert_eq!(warned.len(), 1, "one WARN for the first failure, none per attempt: {warned:?}");
    assert!(warned[0].contains("GetTasks") && warned[0].contains("refused"), "{warned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_a_warning_is_reported() {
    record_logs();
    let port = free_port();
    let client = patient(port, Some(client_tls(&pki().col1)));
    let call = tokio::spawn(async move { client.get_tasks("col1").await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _server = start_server_with(server_config(port, Some(server_tls())), TestLogic::new()).await;
    within(20, call).await.unwrap().expect("GetTasks once the server is up");
    let warned = warnings_about(&format!("127.0.0.1:{port}"));
    assert!(warned.iter().any(|w| w.contains("reached") && w.contains("after")), "{warned:?}");
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_without_http2_alpn_fails_at_once() {
    record_logs();
    let mut config = (*server_tls().rustls_server_config().unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(socket).await;
            });
        }
    });
    assert_mismatch(port, Some(client_tls(&pki().col1)), "does not offer HTTP/2 over TLS").await;
}
