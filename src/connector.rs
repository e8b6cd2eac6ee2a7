//! The connector every client hands to tonic: TCP connect with TCP_NODELAY,
//! then (with TLS) the rustls handshake (ALPN h2) with the configuration of
//! src/tls.rs, all within the connect timeout; the server's first bytes are
//! checked to be HTTP/2 (src/protocol_check.rs), so a server speaking
//! another protocol fails the call at once instead of being retried.
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector as RustlsConnector;
use tonic::codegen::{http, Service};

use crate::error::{Error, Result};
use crate::protocol_check::{PrefaceCheck, ProtocolMismatch};

/// Longest wait for the server's first record after a TLS 1.3 handshake;
/// a server that sends nothing before the client speaks gets the stream
/// after this.
const VERDICT_WAIT: Duration = Duration::from_secs(2);

/// The TLS half of a [`Connector`]: the name the server's certificate must
/// carry and the rustls client configuration.
#[derive(Clone)]
struct TlsSetup {
    server_name: ServerName<'static>,
    rustls: RustlsConnector,
}

/// A tower service connecting to one server (the `Uri` tonic passes is
/// ignored: the address and name are fixed when the channel is built).
#[derive(Clone)]
pub(crate) struct Connector {
    address: Arc<str>,
    tls: Option<TlsSetup>,
    timeout: Duration,
}

/// The stream a [`Connector`] hands to HTTP/2.
pub(crate) type Connection = TokioIo<PrefaceCheck<ServerStream>>;

impl Connector {
    /// A connector to `address` (`host:port`) without TLS.
    pub(crate) fn plaintext(address: String, timeout: Duration) -> Self {
        Self { address: address.into(), tls: None, timeout }
    }

    /// A connector to `address` (`host:port`) whose certificate must carry
    /// `server_name`.
    pub(crate) fn tls(
        address: String,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<Self> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| Error::invalid_argument(format!("bad TLS server name {server_name:?}: {e}")))?;
        let tls = TlsSetup { server_name, rustls: RustlsConnector::from(config) };
        Ok(Self { address: address.into(), tls: Some(tls), timeout })
    }

    async fn connect(self) -> io::Result<Connection> {
        let address = self.address.clone();
        let timeout = self.timeout;
        let over_tls = self.tls.is_some();
        let stream = match tokio::time::timeout(timeout, self.connect_unbounded()).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {address}: TCP and TLS set-up not done within {timeout:?}"),
                ))
            }
        };
        Ok(TokioIo::new(PrefaceCheck::new(stream, address, over_tls)))
    }

    async fn connect_unbounded(self) -> io::Result<ServerStream> {
        let tcp = TcpStream::connect(&*self.address).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = self.tls else {
            return Ok(ServerStream::Plain(tcp));
        };
        let handshake = tls.rustls.connect(tls.server_name, tcp).await;
        let mut tls = handshake.map_err(|e| name_protocol_mismatch(e, &self.address))?;
        let wait = VERDICT_WAIT.min(self.timeout / 2);
        // No record within `wait`: hand the stream over anyway (see VERDICT_WAIT).
        if let Ok(verdict) = tokio::time::timeout(wait, await_first_record(&mut tls)).await {
            verdict?;
        }
        Ok(ServerStream::Tls(Box::new(tls)))
    }
}

impl Service<http::Uri> for Connector {
    type Response = Connection;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect())
    }
}

/// A TLS handshake failure that says the server speaks another protocol:
/// it answered the ClientHello with something that is not TLS (a plaintext
/// server), or it does not offer HTTP/2 (ALPN `h2`).
fn name_protocol_mismatch(error: io::Error, address: &str) -> io::Error {
    use rustls::{AlertDescription, InvalidMessage};
    let mismatch = match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType)) => format!(
            "the server at {address} did not answer the TLS handshake with TLS: it is probably a \
             plaintext (insecure) server"
        ),
        Some(rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol)) => {
            format!("the server at {address} does not offer HTTP/2 over TLS (ALPN h2): not a gRPC server")
        }
        _ => return error,
    };
    ProtocolMismatch(mismatch).into_io()
}

/// A connection to a server, with or without TLS.
pub(crate) enum ServerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ServerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, data),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Plain(s) => s.is_write_vectored(),
            ServerStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
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
