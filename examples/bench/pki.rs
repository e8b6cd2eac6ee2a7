//! The benchmark's mTLS PKI: a CA, a server certificate for localhost and
//! 127.0.0.1, and one client certificate (CN "col1") that every load
//! connection presents. Generated once by the orchestrator into a temporary
//! directory; every role loads it from there.
//!
//! One client certificate for N collaborators: the servers run in OpenFL's
//! single-certificate mode (`single_col_cert_common_name` = "col1"), so each
//! load connection can speak as its own collaborator (col1..colN, all
//! authorized) while presenting the same certificate. Distinct senders keep
//! our server's per-collaborator bounds (8 blocking calls per collaborator)
//! from throttling a load that a real federation would spread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openfl_transport::aggregator::Federation;
use openfl_transport::tls::{PemSource, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The client certificate's CN, and OpenFL's single certificate CN.
pub const CLIENT_CN: &str = "col1";
pub const AGGREGATOR_UUID: &str = "bench-aggregator";
pub const FEDERATION_UUID: &str = "bench-federation";

/// The PEM files of a generated PKI.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.file("server.pem"), self.file("server.key"))
    }
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.file("client.pem"), self.file("client.key"))
    }
}

/// Generates the PKI into `dir`.
pub fn generate(dir: &Path) -> Result<Pki, String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let err = |e: rcgen::Error| format!("generating certificates: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench-ca");
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let pki = Pki::at(dir);
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(pki.ca(), ca.pem())?;
    let leaves = [
        (
            "localhost",
            vec!["localhost".to_string(), "127.0.0.1".into()],
            pki.server(),
        ),
        (CLIENT_CN, vec![], pki.client()),
    ];
    for (cn, sans, (cert_path, key_path)) in leaves {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(sans).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
        write(cert_path, cert.pem())?;
        write(key_path, key.serialize_pem())?;
    }
    Ok(pki)
}

/// Our crate's TLS settings for the server or the client side.
pub fn tls_config(pki: &Pki, server: bool) -> TlsConfig {
    let (cert, key) = if server { pki.server() } else { pki.client() };
    TlsConfig {
        root_certificate: Some(PemSource::File(pki.ca())),
        certificate: Some(PemSource::File(cert)),
        private_key: Some(PemSource::File(key)),
        disable_client_auth: false,
        crls: Vec::new(),
    }
}

/// The federation every server of the bench serves: collaborators col1..colN
/// sharing the certificate of [`CLIENT_CN`].
pub fn federation(collaborators: usize) -> Federation {
    Federation {
        aggregator_uuid: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        single_col_cert_common_name: CLIENT_CN.into(),
        authorized_collaborators: (1..=collaborators.max(1)).map(collaborator).collect(),
    }
}

/// The name of collaborator `i` (1-based).
pub fn collaborator(i: usize) -> String {
    format!("col{i}")
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading {}: {e}", path.display()))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn roots(pki: &Pki) -> Result<Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&pki.ca())? {
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    Ok(Arc::new(roots))
}

/// A plain rustls server configuration (mTLS, ALPN h2) for the bare tonic
/// server and the raw stream.
pub fn rustls_server(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots(pki)?)
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    let (cert, key) = pki.server();
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&cert)?, read_key(&key)?)
        .map_err(|e| format!("server certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A plain rustls client configuration (mTLS, ALPN h2) for the load
/// generator and the raw stream.
pub fn rustls_client(pki: &Pki) -> Result<Arc<rustls::ClientConfig>, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = pki.client();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots(pki)?)
        .with_client_auth_cert(read_certs(&cert)?, read_key(&key)?)
        .map_err(|e| format!("client certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
