//! `ofl_tls_config`: the one TLS object of the C API. Built once, attached
//! to any options object with `ofl_<x>_options_set_tls` (which copies it).
//! Certificates, keys and CRLs are read when a server starts or a client
//! connects, and checked then with a specific error.

use std::ffi::c_char;
use std::path::PathBuf;

use super::boundary::{arg_mut, arg_slice, arg_str, check_out, ffi_fn, free_boxed, write_out};
use crate::error::{Error, Result};
use crate::tls::{PemSource, TlsConfig};

/// Who authenticates whom (OpenFL's `disable_client_auth`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ofl_client_auth {
    /// Mutual TLS (default, as OpenFL): a server requires a client
    /// certificate chaining to the root; a client presents its identity.
    Mutual = 0,
    /// One-way TLS (OpenFL's `disable_client_auth=True`): a server accepts
    /// clients without a certificate (one that is presented is still checked
    /// and identifies the client by its CN); a client presents none.
    None = 1,
}

/// TLS settings: root CA(s), own identity (certificate chain and private
/// key), client-auth mode, certificate revocation lists. Not thread-safe:
/// configure from one thread; once attached (copied) it may be freed.
#[allow(non_camel_case_types)]
pub struct ofl_tls_config {
    config: TlsConfig,
}

/// TLS as held by an options object: on by default with nothing attached
/// (start/connect then fails, naming `ofl_<x>_options_set_tls`), a copied
/// `ofl_tls_config`, or off.
#[derive(Clone, Debug, Default)]
pub enum TlsOptions {
    /// TLS on (the default, as OpenFL) but no `ofl_tls_config` given yet.
    #[default]
    Unset,
    /// TLS off (`_set_tls(options, NULL)`, OpenFL's `tls=False`).
    Off,
    /// TLS with these certificates and client-auth setting.
    On(TlsConfig),
}

impl TlsOptions {
    /// Attaches a copy of `tls`; NULL turns TLS off (OpenFL's `tls=False`).
    pub fn attach(&mut self, tls: *const ofl_tls_config) -> Result<()> {
        // SAFETY: NULL or a live `ofl_tls_config` (documented on every
        // `_set_tls`); only read during this call.
        *self = match unsafe { tls.as_ref() } {
            None => Self::Off,
            Some(tls) => Self::On(tls.config.clone()),
        };
        Ok(())
    }

    /// The configuration to use at start/connect: `None` without TLS.
    /// TLS on with nothing attached is INVALID_ARGUMENT naming `setter`
    /// (the options type's `_set_tls`), so a forgotten call is not a
    /// certificate error later.
    pub fn resolve(&self, setter: &str) -> Result<Option<TlsConfig>> {
        match self {
            Self::Unset => Err(Error::invalid_argument(format!(
                "TLS is on but no ofl_tls_config is attached: call {setter} (NULL for no TLS)"
            ))),
            Self::Off => Ok(None),
            Self::On(config) => Ok(Some(config.clone())),
        }
    }
}

fn tls_mut<'a>(tls: *mut ofl_tls_config) -> Result<&'a mut TlsConfig> {
    Ok(&mut arg_mut(tls, "tls")?.config)
}

fn file(path: *const c_char, name: &str) -> Result<PemSource> {
    let path = arg_str(path, name)?;
    if path.is_empty() {
        return Err(Error::invalid_argument(format!("{name} is empty")));
    }
    Ok(PemSource::File(PathBuf::from(path)))
}

fn pem(data: *const u8, len: usize, name: &str) -> Result<PemSource> {
    if len == 0 {
        return Err(Error::invalid_argument(format!("{name} is empty")));
    }
    Ok(PemSource::Pem(arg_slice(data, len, name)?.to_vec()))
}

ffi_fn! {
    /// New TLS settings, written to `*out`: mutual TLS, nothing loaded yet.
    fn ofl_tls_config_new(out: *mut *mut ofl_tls_config) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(out, ofl_tls_config { config: TlsConfig::default() });
        Ok(())
    }
}

ffi_fn! {
    /// Frees TLS settings. NULL is a no-op.
    fn ofl_tls_config_free(tls: *mut ofl_tls_config) {
        free_boxed(tls)
    }
}

ffi_fn! {
    /// The CA certificate(s) peers must chain to (OpenFL's
    /// `root_certificate`), as a PEM file read at start/connect.
    fn ofl_tls_config_set_root_certificate_file(tls: *mut ofl_tls_config, path: *const c_char) -> *mut ofl_error {
        let source = file(path, "path")?;
        tls_mut(tls)?.root_certificate = Some(source);
        Ok(())
    }
}

ffi_fn! {
    /// The CA certificate(s) as PEM bytes (copied).
    fn ofl_tls_config_set_root_certificate_pem(tls: *mut ofl_tls_config, pem_data: *const u8, len: usize) -> *mut ofl_error {
        let source = pem(pem_data, len, "pem_data")?;
        tls_mut(tls)?.root_certificate = Some(source);
        Ok(())
    }
}

ffi_fn! {
    /// Own certificate chain (leaf first) and private key (PKCS#8, PKCS#1 or
    /// SEC1), as PEM files read at start/connect (OpenFL's `certificate`,
    /// `private_key`). Required by servers and by mutual-TLS clients.
    fn ofl_tls_config_set_identity_files(
        tls: *mut ofl_tls_config,
        certificate: *const c_char,
        private_key: *const c_char,
    ) -> *mut ofl_error {
        let certificate = file(certificate, "certificate")?;
        let private_key = file(private_key, "private_key")?;
        let config = tls_mut(tls)?;
        config.certificate = Some(certificate);
        config.private_key = Some(private_key);
        Ok(())
    }
}

ffi_fn! {
    /// Own certificate chain and private key as PEM bytes (copied).
    fn ofl_tls_config_set_identity_pem(
        tls: *mut ofl_tls_config,
        certificate: *const u8,
        certificate_len: usize,
        private_key: *const u8,
        private_key_len: usize,
    ) -> *mut ofl_error {
        let certificate = pem(certificate, certificate_len, "certificate")?;
        let private_key = pem(private_key, private_key_len, "private_key")?;
        let config = tls_mut(tls)?;
        config.certificate = Some(certificate);
        config.private_key = Some(private_key);
        Ok(())
    }
}

ffi_fn! {
    /// Mutual (default) or one-way TLS: `mode` is an `ofl_client_auth`
    /// value; anything else is INVALID_ARGUMENT.
    fn ofl_tls_config_set_client_auth(tls: *mut ofl_tls_config, mode: i32) -> *mut ofl_error {
        let disable = match mode {
            m if m == ofl_client_auth::Mutual as i32 => false,
            m if m == ofl_client_auth::None as i32 => true,
            other => return Err(Error::invalid_argument(format!("client auth mode {other} is not an ofl_client_auth value"))),
        };
        tls_mut(tls)?.disable_client_auth = disable;
        Ok(())
    }
}

ffi_fn! {
    /// Adds a certificate revocation list (PEM `X509 CRL` blocks, signed by
    /// the root), as a file read at start/connect: a peer certificate it
    /// revokes is refused at the handshake. A server reads its CRLs once,
    /// at start: restart it (or start a new one) to take a new CRL.
    fn ofl_tls_config_add_crl_file(tls: *mut ofl_tls_config, path: *const c_char) -> *mut ofl_error {
        let source = file(path, "path")?;
        tls_mut(tls)?.crls.push(source);
        Ok(())
    }
}

ffi_fn! {
    /// Adds a certificate revocation list as PEM bytes (copied).
    fn ofl_tls_config_add_crl_pem(tls: *mut ofl_tls_config, pem_data: *const u8, len: usize) -> *mut ofl_error {
        let source = pem(pem_data, len, "pem_data")?;
        tls_mut(tls)?.crls.push(source);
        Ok(())
    }
}
