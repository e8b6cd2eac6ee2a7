//! TLS settings shared by the client and server option objects: on by
//! default (as OpenFL's `tls=True`), certificates by path or as PEM bytes.

use std::ffi::c_char;
use std::path::PathBuf;

use super::boundary::{arg_opt_str, arg_slice, arg_str};
use crate::error::Result;
use crate::tls::{PemSource, TlsConfig};

/// TLS switch plus settings, as held by an options object.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Whether TLS is used (default true).
    pub enabled: bool,
    /// Certificates and client-auth setting.
    pub config: TlsConfig,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self { enabled: true, config: TlsConfig::default() }
    }
}

impl TlsOptions {
    /// The configuration to use: `None` without TLS.
    pub fn resolved(&self) -> Option<TlsConfig> {
        self.enabled.then(|| self.config.clone())
    }

    /// Sets certificate paths; `root` is required, `certificate` and
    /// `private_key` may be NULL (then they are left unset).
    pub fn set_files(&mut self, root: *const c_char, certificate: *const c_char, private_key: *const c_char) -> Result<()> {
        let root = arg_str(root, "root_certificate")?;
        let certificate = arg_opt_str(certificate, "certificate")?;
        let private_key = arg_opt_str(private_key, "private_key")?;
        let file = |p: &str| PemSource::File(PathBuf::from(p));
        self.config.root_certificate = Some(file(root));
        self.config.certificate = certificate.map(file);
        self.config.private_key = private_key.map(file);
        Ok(())
    }

    /// Sets PEM documents from memory; `root` is required, the others may be
    /// NULL with length 0.
    #[allow(clippy::too_many_arguments)]
    pub fn set_pem(
        &mut self,
        root: *const u8,
        root_len: usize,
        certificate: *const u8,
        certificate_len: usize,
        private_key: *const u8,
        private_key_len: usize,
    ) -> Result<()> {
        let pem = |ptr: *const u8, len: usize, name: &str| -> Result<Option<PemSource>> {
            if ptr.is_null() && len == 0 {
                return Ok(None);
            }
            Ok(Some(PemSource::Pem(arg_slice(ptr, len, name)?.to_vec())))
        };
        let root = pem(root, root_len, "root_certificate")?;
        if root.is_none() {
            return Err(crate::error::Error::invalid_argument("root_certificate is NULL"));
        }
        self.config.root_certificate = root;
        self.config.certificate = pem(certificate, certificate_len, "certificate")?;
        self.config.private_key = pem(private_key, private_key_len, "private_key")?;
        Ok(())
    }
}
