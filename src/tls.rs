//! Certificates and keys: loading PEM (from a file, as OpenFL, or from memory),
//! checking them early with a specific error, building the rustls server and
//! client configurations (with the CRLs of src/crl.rs), and reading the Common
//! Name of a peer certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Where a PEM document comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemSource {
    /// A file read when the server starts or the client connects.
    File(PathBuf),
    /// PEM bytes held in memory.
    Pem(Vec<u8>),
}

impl PemSource {
    pub(crate) fn load(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            PemSource::Pem(bytes) => Ok(bytes.clone()),
            PemSource::File(path) => std::fs::read(path)
                .map_err(|e| Error::io(format!("{what}: cannot read {}: {e}", path.display()))),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            PemSource::File(path) => path.display().to_string(),
            PemSource::Pem(_) => "in-memory PEM".to_string(),
        }
    }
}

/// TLS settings, as OpenFL's `root_certificate`, `certificate`,
/// `private_key` and `disable_client_auth`.
///
/// On a server, `disable_client_auth` makes client certificates optional
/// (one-way TLS); a certificate that is presented must still chain to the
/// root. On a client it means: present no certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA certificate(s) that peers must chain to.
    pub root_certificate: Option<PemSource>,
    /// Own certificate chain (leaf first).
    pub certificate: Option<PemSource>,
    /// Own private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub private_key: Option<PemSource>,
    /// Server: client certificates optional. Client: send none.
    pub disable_client_auth: bool,
    /// Certificate revocation lists (PEM `X509 CRL` blocks, several per
    /// document allowed), each signed by a CA of `root_certificate` (or an
    /// intermediate CA of `certificate`'s chain): a peer certificate revoked
    /// by one of them is refused at the handshake. Certificates whose issuer
    /// has no CRL here are not checked; a CRL past its nextUpdate is still
    /// used.
    ///
    /// Like every document here, CRLs are read once: when a server starts,
    /// and when a client builds its connection (at creation, on `reconnect`,
    /// and on the first call after `disconnect`). To apply an updated CRL,
    /// restart the server or reconnect the client; nothing is reloaded while
    /// running.
    pub crls: Vec<PemSource>,
}

/// Own certificate chain and key, parsed.
struct LoadedIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// The PEM documents of a [`TlsConfig`], read and checked.
struct LoadedTls {
    roots: Arc<rustls::RootCertStore>,
    identity: Option<LoadedIdentity>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

fn required<'a>(source: &'a Option<PemSource>, what: &str) -> Result<&'a PemSource> {
    source
        .as_ref()
        .ok_or_else(|| Error::invalid_argument(format!("TLS is on but no {what} was given")))
}

fn parse_certs(pem: &[u8], what: &str, source: &PemSource) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::tls(format!("{what} ({}): unreadable PEM: {e}", source.describe())))?;
    if certs.is_empty() {
        return Err(Error::tls(format!(
            "{what} ({}): no CERTIFICATE block found",
            source.describe()
        )));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], source: &PemSource) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            Error::tls(format!("private_key ({}): no PRIVATE KEY block found", source.describe()))
        }
        e => Error::tls(format!("private_key ({}): unreadable PEM: {e}", source.describe())),
    })
}

impl TlsConfig {
    fn load(&self, need_identity: bool) -> Result<LoadedTls> {
        let root_source = required(&self.root_certificate, "root_certificate")?;
        let root_pem = root_source.load("root_certificate")?;
        let root_certs = parse_certs(&root_pem, "root_certificate", root_source)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in &root_certs {
            roots.add(cert.clone()).map_err(|e| {
                Error::tls(format!("root_certificate ({}): not a usable CA: {e}", root_source.describe()))
            })?;
        }
        let identity = if need_identity {
            let cert_source = required(&self.certificate, "certificate")?;
            let key_source = required(&self.private_key, "private_key")?;
            let chain = parse_certs(&cert_source.load("certificate")?, "certificate", cert_source)?;
            let key = parse_key(&key_source.load("private_key")?, key_source)?;
            Some(LoadedIdentity { chain, key })
        } else {
            None
        };
        // A CRL may come from a root or from an intermediate CA of our own chain.
        let issuers: Vec<_> =
            root_certs.iter().chain(identity.iter().flat_map(|id| id.chain.iter().skip(1))).collect();
        let crls = crate::crl::load_all(&self.crls, &issuers)?;
        Ok(LoadedTls { roots: Arc::new(roots), identity, crls })
    }

    /// The server's rustls configuration (HTTP/2 by ALPN), after checking
    /// every document and that the private key belongs to the certificate.
    /// With `disable_client_auth`, a client certificate is optional (checked
    /// when presented). A client certificate revoked by one of `crls` is
    /// refused at the handshake.
    pub fn rustls_server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        crate::runtime::install_crypto_provider();
        let loaded = self.load(true)?;
        let LoadedIdentity { chain, key } = loaded.identity.expect("identity loaded");
        let verifier = rustls::server::WebPkiClientVerifier::builder(loaded.roots);
        let verifier = crate::crl::client_verifier_policy(verifier, loaded.crls);
        let verifier = if self.disable_client_auth { verifier.allow_unauthenticated() } else { verifier };
        let verifier = verifier.build().map_err(|e| Error::tls(format!("root_certificate/crls: {e}")))?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| Error::tls(format!("certificate/private_key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client's rustls configuration (HTTP/2 by ALPN): trusts
    /// `root_certificate`, refuses a server certificate revoked by one of
    /// `crls`, and presents `certificate` unless `disable_client_auth`.
    pub fn rustls_client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        crate::runtime::install_crypto_provider();
        let loaded = self.load(!self.disable_client_auth)?;
        let verifier = rustls::client::WebPkiServerVerifier::builder(loaded.roots);
        let verifier = crate::crl::server_verifier_policy(verifier, loaded.crls);
        let verifier = verifier.build().map_err(|e| Error::tls(format!("root_certificate/crls: {e}")))?;
        let builder = rustls::ClientConfig::builder().with_webpki_verifier(verifier);
        let mut config = match loaded.identity {
            Some(LoadedIdentity { chain, key }) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::tls(format!("certificate/private_key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The client certificate a TLS peer presented, as the servers' checks read
/// it: its subject Common Name, parsed once when the handshake completes and
/// carried by the connection (src/connection.rs) into each request's
/// extensions, so no request parses X.509 again.
#[derive(Clone, Debug)]
pub(crate) struct PeerCertificate {
    /// The leaf's subject CN; `None` when it has none (or does not parse).
    pub common_name: Option<Arc<str>>,
}

impl PeerCertificate {
    /// The certificate of a chain a peer presented (its first, leaf, one).
    pub(crate) fn of_chain(chain: &[CertificateDer<'_>]) -> Self {
        Self { common_name: peer_common_name(chain).map(Arc::from) }
    }

    /// The CN, or "" for a certificate without one (as OpenFL compares it).
    pub(crate) fn cn_or_empty(&self) -> &str {
        self.common_name.as_deref().unwrap_or("")
    }
}

/// The client certificate of a request's peer, if it presented one.
pub(crate) fn peer_certificate(extensions: &tonic::codegen::http::Extensions) -> Option<PeerCertificate> {
    extensions.get::<PeerCertificate>().cloned()
}

/// The subject Common Name of the first (leaf) certificate, if any.
pub fn peer_common_name(certs: &[CertificateDer<'_>]) -> Option<String> {
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Finds a TLS failure in an error's source chain (e.g. a client certificate
/// rejected by the server surfaces on the first RPC as a transport error).
pub fn tls_failure_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(tls.to_string());
                }
                // h2 keeps only the text of an I/O error's cause, so an alert
                // received after the handshake (TLS 1.3: the server rejected
                // our certificate) arrives as rustls' message, not its type.
                let text = inner.to_string();
                if io.kind() == std::io::ErrorKind::InvalidData && text.starts_with("received fatal alert: ") {
                    return Some(text);
                }
            }
        }
        current = e.source();
    }
    None
}
