//! What every client of this crate does to reach a server: build the URI,
//! connector (src/connector.rs: TLS, protocol check), TCP_NODELAY and HTTP/2 settings, and a lazily connecting
//! channel that is reused across calls and reconnects by itself.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::metrics::client::{CountedConnector, MeteredChannel};
use crate::metrics::Recorder;
use crate::tls::TlsConfig;

/// Where and how a client connects.
#[derive(Clone, Debug)]
pub struct ConnectConfig {
    /// Server host name or address (IPv6 with or without brackets).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS settings; `None` connects without TLS.
    pub tls: Option<TlsConfig>,
    /// Name the server certificate must carry; defaults to `host`.
    pub server_name: Option<String>,
    /// Time allowed for the TCP and TLS connection set-up.
    pub connect_timeout: Duration,
    /// Default time limit of every call (all its attempts and retries;
    /// `DeadlineExceeded` when it passes), overridden by
    /// [`CallOptions::timeout`](crate::CallOptions); `None`: no limit, like
    /// OpenFL.
    pub call_timeout: Option<Duration>,
}

impl ConnectConfig {
    /// A configuration for `host:port` with default timeouts and no TLS.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            tls: None,
            server_name: None,
            connect_timeout: Duration::from_secs(10),
            call_timeout: None,
        }
    }

    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// `host:port` as OpenFL prints it.
    pub fn uri(&self) -> String {
        let host = self.bare_host();
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Whether the client presents a certificate (TLS with client auth).
    pub fn presents_certificate(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| !t.disable_client_auth && t.certificate.is_some())
    }

    /// A channel that connects on first use (and again after a failure).
    /// Its connection task runs on the library's runtime, whichever thread
    /// (a C caller's, another runtime's) asks for it.
    pub fn channel(&self) -> Result<Channel> {
        let runtime = crate::runtime::handle();
        let _entered = runtime.enter();
        Ok(self.endpoint()?.connect_with_connector_lazy(self.connector()?))
    }

    /// [`channel`](Self::channel) with its calls, bytes and connections
    /// counted by `metrics`.
    pub(crate) fn metered_channel(&self, metrics: &Arc<Recorder>) -> Result<MeteredChannel> {
        let runtime = crate::runtime::handle();
        let _entered = runtime.enter();
        let connector = CountedConnector::new(self.connector()?, metrics);
        Ok(MeteredChannel::new(self.endpoint()?.connect_with_connector_lazy(connector), metrics))
    }

    /// The endpoint's HTTP/2 settings.
    fn endpoint(&self) -> Result<Endpoint> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(Endpoint::from_shared(format!("{scheme}://{}", self.uri()))
            .map_err(|e| Error::invalid_argument(format!("bad server address {:?}: {e}", self.uri())))?
            .tcp_nodelay(true)
            // Frames the server may send us (downloads): 1 MiB instead of 16 KiB.
            .max_frame_size(1 << 20)
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(32 << 20)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(false))
    }

    /// The connection is ours (src/connector.rs): tonic keeps the scheme on
    /// the wire and runs HTTP/2 over the stream the connector hands it.
    fn connector(&self) -> Result<Connector> {
        Ok(match &self.tls {
            None => Connector::plaintext(self.uri(), self.connect_timeout),
            Some(tls) => {
                let name = self.server_name.as_deref().unwrap_or(self.bare_host());
                Connector::tls(self.uri(), name, tls.rustls_client_config()?, self.connect_timeout)?
            }
        })
    }
}
