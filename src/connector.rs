//! The TLS connector every TLS client hands to tonic: TCP connect with
//! TCP_NODELAY, then the rustls handshake (ALPN h2) with the configuration of
//! src/tls.rs, all within the connect timeout.
//!
//! Under TLS 1.3 the client finishes its handshake before the server has
//! checked the client's certificate: a refusal arrives as an alert after
//! the handshake. If HTTP/2 started writing at once, the alert would race
//! with the request (the server's close could reset the connection before
//! the alert is read, leaving only "connection closed", which is retried).
//! So the connector waits for the server's first record after the handshake
//! (a session ticket, its HTTP/2 SETTINGS, or the alert) before handing the
//! stream over: a refusal then surfaces as the TLS error it is. This costs
//! one round trip per new connection (connections are reused).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ProtocolVersion;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector as RustlsConnector;
use tonic::codegen::{http, Service};

use crate::error::{Error, Result};

/// Longest wait for the server's first record after a TLS 1.3 handshake;
/// a server that sends nothing before the client speaks gets the stream
/// after this.
const VERDICT_WAIT: Duration = Duration::from_secs(2);

/// A tower service connecting to one TLS server (the `Uri` tonic passes is
/// ignored: the address and name are fixed when the channel is built).
#[derive(Clone)]
pub(crate) struct TlsConnector {
    address: Arc<str>,
    server_name: ServerName<'static>,
    rustls: RustlsConnector,
    timeout: Duration,
}

impl TlsConnector {
    /// A connector to `address` (`host:port`) whose certificate must carry
    /// `server_name`.
    pub(crate) fn new(
        address: String,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<Self> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| Error::invalid_argument(format!("bad TLS server name {server_name:?}: {e}")))?;
        Ok(Self { address: address.into(), server_name, rustls: RustlsConnector::from(config), timeout })
    }

    async fn connect(self) -> io::Result<TokioIo<TlsStream<TcpStream>>> {
        let address = self.address.clone();
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.connect_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {address}: TCP and TLS set-up not done within {timeout:?}"),
            )),
        }
    }

    async fn connect_unbounded(self) -> io::Result<TokioIo<TlsStream<TcpStream>>> {
        let tcp = TcpStream::connect(&*self.address).await?;
        tcp.set_nodelay(true)?;
        let mut tls = self.rustls.connect(self.server_name, tcp).await?;
        let wait = VERDICT_WAIT.min(self.timeout / 2);
        // No record within `wait`: hand the stream over anyway (see VERDICT_WAIT).
        if let Ok(verdict) = tokio::time::timeout(wait, await_first_record(&mut tls)).await {
            verdict?;
        }
        Ok(TokioIo::new(tls))
    }
}

impl Service<http::Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect())
    }
}

/// `try_read` as `std::io::Read`, for rustls' `read_tls`.
struct NonBlocking<'a>(&'a TcpStream);

impl io::Read for NonBlocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// Under TLS 1.3, reads records until the server has said something after
/// the handshake: a session ticket or data (kept for HTTP/2: nothing is
/// consumed) is success; an alert is the TLS error it carries; an end of
/// file is `UnexpectedEof` (a gRPC C-core server refuses a certificate so).
async fn await_first_record(tls: &mut TlsStream<TcpStream>) -> io::Result<()> {
    let (tcp, conn) = tls.get_mut();
    if conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return Ok(()); // TLS 1.2: the server checked us before its Finished.
    }
    loop {
        tcp.readable().await?;
        match conn.read_tls(&mut NonBlocking(tcp)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection right after the TLS handshake",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        let state = conn.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if conn.tls13_tickets_received() > 0 || state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
            return Ok(());
        }
    }
}
