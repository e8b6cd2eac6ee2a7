//! Certificate revocation lists: reading the PEM `X509 CRL` blocks of
//! [`TlsConfig::crls`](crate::tls::TlsConfig::crls), checking that each is
//! signed by a CA we trust (so a CRL for the wrong PKI is an error, not a
//! silent no-op), and the revocation policy both verifiers share.
//!
//! Policy: every certificate of a peer's chain is checked against the CRL of
//! its issuer; a certificate whose issuer has no CRL loaded is accepted (so
//! a root-only CRL does not make intermediates unverifiable), and a CRL past
//! its nextUpdate is still used (it is read once, at start: an expiry would
//! otherwise stop a long-running federation).

use rustls::client::ServerCertVerifierBuilder;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::ClientCertVerifierBuilder;
use x509_parser::certificate::X509Certificate;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::{Error, Result};
use crate::tls::PemSource;

/// Reads every CRL of `sources`, each checked against `issuers` (the trusted
/// roots and our own intermediate CAs).
pub(crate) fn load_all(
    sources: &[PemSource],
    issuers: &[&CertificateDer<'static>],
) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let mut crls = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let what = format!("crls[{index}] ({})", source.describe());
        let pem = source.load(&format!("crls[{index}]"))?;
        for crl in parse(&pem, &what)? {
            check_issuer(&crl, issuers, &what)?;
            crls.push(crl);
        }
    }
    Ok(crls)
}

/// The `X509 CRL` blocks of one PEM document (at least one).
fn parse(pem: &[u8], what: &str) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, pem::Error>>()
        .map_err(|e| Error::tls(format!("{what}: unreadable PEM: {e}")))?;
    if crls.is_empty() {
        return Err(Error::tls(format!("{what}: no X509 CRL block found")));
    }
    Ok(crls)
}

/// Checks that `crl` parses and is signed by one of `issuers`.
fn check_issuer(
    crl: &CertificateRevocationListDer<'static>,
    issuers: &[&CertificateDer<'static>],
    what: &str,
) -> Result<()> {
    let (_, parsed) = x509_parser::parse_x509_crl(crl.as_ref())
        .map_err(|e| Error::tls(format!("{what}: not a valid X509 CRL: {e}")))?;
    let named: Vec<X509Certificate<'_>> = issuers
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok().map(|(_, cert)| cert))
        .filter(|cert| cert.subject().as_raw() == parsed.issuer().as_raw())
        .collect();
    if named.is_empty() {
        return Err(Error::tls(format!(
            "{what}: issued by \"{}\", which is not a CA of root_certificate (nor of certificate's chain)",
            parsed.issuer()
        )));
    }
    if named.iter().any(|cert| signed_by(&parsed, cert)) {
        Ok(())
    } else {
        Err(Error::tls(format!(
            "{what}: names \"{}\" as issuer but its signature does not verify with that CA's key \
             (not signed by the root_certificate's CA)",
            parsed.issuer()
        )))
    }
}

fn signed_by(crl: &CertificateRevocationList<'_>, issuer: &X509Certificate<'_>) -> bool {
    crl.verify_signature(issuer.public_key()).is_ok()
}

/// The server's client-certificate verifier with `crls` and the policy above.
pub(crate) fn client_verifier_policy(
    builder: ClientCertVerifierBuilder,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> ClientCertVerifierBuilder {
    builder.with_crls(crls).allow_unknown_revocation_status()
}

/// The client's server-certificate verifier with `crls` and the policy above.
pub(crate) fn server_verifier_policy(
    builder: ServerCertVerifierBuilder,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> ServerCertVerifierBuilder {
    builder.with_crls(crls).allow_unknown_revocation_status()
}
