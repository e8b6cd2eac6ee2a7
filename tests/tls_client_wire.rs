//! What the library's TLS client (src/connector.rs under tonic) puts on the
//! wire, seen by a bare HTTP/2 server over rustls: ALPN h2, the server-name
//! override as SNI, and `:scheme https` (as OpenFL's grpcio sends it).

mod common;

use std::sync::Arc;

use common::*;
use openfl_transport::ConnectConfig;
use openfl_transport::proto::aggregator::aggregator_client::AggregatorClient as GrpcClient;
use openfl_transport::proto::aggregator::GetTasksRequest;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codegen::http;

/// What the server saw of the first request.
#[derive(Debug)]
struct Seen {
    alpn: Option<Vec<u8>>,
    sni: Option<String>,
    scheme: Option<String>,
    authority: Option<String>,
    path: String,
}

/// Accepts one TLS connection, records its first request and answers it
/// UNIMPLEMENTED (trailers only).
async fn one_request_server(listener: TcpListener, seen: oneshot::Sender<Seen>) {
    let config = server_tls().rustls_server_config().expect("server TLS");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&config));
    let (tcp, _) = listener.accept().await.expect("accept");
    let tls = acceptor.accept(tcp).await.expect("TLS handshake");
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    let mut connection = h2::server::handshake(tls).await.expect("HTTP/2 handshake");
    let (request, mut respond) = connection.accept().await.expect("a request").expect("a good request");
    let uri = request.uri();
    let _ = seen.send(Seen {
        alpn,
        sni,
        scheme: uri.scheme_str().map(str::to_owned),
        authority: uri.authority().map(|a| a.to_string()),
        path: uri.path().to_owned(),
    });
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", "12")
        .body(())
        .unwrap();
    let _ = respond.send_response(response, true);
    while let Some(Ok(_)) = connection.accept().await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_sends_alpn_h2_the_server_name_and_scheme_https() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, seen_rx) = oneshot::channel();
    tokio::spawn(one_request_server(listener, seen_tx));

    let mut connect = ConnectConfig::new("127.0.0.1", port);
    connect.tls = Some(client_tls(&pki().col1));
    connect.server_name = Some("localhost".into());
    let mut client = GrpcClient::new(connect.channel().expect("channel"));
    let status = within(20, client.get_tasks(GetTasksRequest::default())).await.expect_err("UNIMPLEMENTED");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    let seen = within(5, seen_rx).await.expect("the server saw a request");
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]), "{seen:?}");
    assert_eq!(seen.sni.as_deref(), Some("localhost"), "{seen:?}");
    assert_eq!(seen.scheme.as_deref(), Some("https"), "{seen:?}");
    assert_eq!(seen.authority, Some(format!("127.0.0.1:{port}")), "{seen:?}");
    assert_eq!(seen.path, "/openfl.aggregator.Aggregator/GetTasks", "{seen:?}");
}
