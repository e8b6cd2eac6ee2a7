//! `ofl_director_client_options`: the settings of the director's two
//! clients (`ofl_envoy_client_new`, `ofl_frontend_client_new`).
//!
//! Why not `ofl_aggregator_client_options`: those carry the aggregator's
//! federation identity (uuids, single certificate CN) and per-call
//! reconnection, which mean nothing to a director, and lack the director's
//! `client_id` and archive limit. TLS and connection settings are the shared
//! `ofl_tls_config` and `ofl_connect_options`.

use std::ffi::c_char;

use crate::connect::ConnectConfig;
use crate::error::{Error, Result};
use crate::ffi::boundary::{
    arg_mut, arg_opt_str, check_out, ffi_fn, free_boxed, write_out,
};
use crate::ffi::connect_options::ofl_connect_options;
use crate::ffi::option_values;
use crate::ffi::tls_config::{ofl_tls_config, TlsOptions};
use crate::retry::RetryPolicy;
use crate::stream::DEFAULT_MAX_MESSAGE_SIZE;

/// Settings for `ofl_envoy_client_new` and `ofl_frontend_client_new`: the
/// director's address, TLS (on by default, as in OpenFL: attach it with
/// `ofl_director_client_options_set_tls`), connection settings, an envoy's
/// archive limit and a frontend's `client_id`. Not thread-safe: configure
/// from one thread; one options object may make several clients.
#[allow(non_camel_case_types)]
pub struct ofl_director_client_options {
    host: String,
    port: u16,
    tls: TlsOptions,
    connect: ofl_connect_options,
    pub(crate) max_archive_size: u64,
    pub(crate) client_id: Option<String>,
}

/// What both clients take from their options.
pub(crate) struct ClientSettings {
    pub connect: ConnectConfig,
    pub retry: RetryPolicy,
    pub max_message_size: usize,
}

impl ofl_director_client_options {
    /// The connection settings, TLS resolved (INVALID_ARGUMENT when TLS is
    /// on with nothing attached).
    pub(crate) fn settings(&self) -> Result<ClientSettings> {
        let mut connect = ConnectConfig::new(self.host.clone(), self.port);
        connect.tls = self.tls.resolve("ofl_director_client_options_set_tls")?;
        let (mut retry, mut max_message_size) = (RetryPolicy::default(), DEFAULT_MAX_MESSAGE_SIZE);
        self.connect.apply(&mut connect, &mut retry, &mut max_message_size);
        Ok(ClientSettings { connect, retry, max_message_size })
    }
}

fn options_mut<'a>(
    options: *mut ofl_director_client_options,
) -> Result<&'a mut ofl_director_client_options> {
    arg_mut(options, "options")
}

ffi_fn! {
    /// New client options for the director at `host`:`port` (OpenFL's
    /// `director_host`, `director_port`), written to `*out`: TLS on with
    /// nothing attached yet, every `ofl_connect_options` default, archives
    /// up to 1 GiB, no `client_id`.
    fn ofl_director_client_options_new(
        host: *const c_char,
        port: u16,
        out: *mut *mut ofl_director_client_options,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let host = option_values::host(host)?;
        let options = ofl_director_client_options {
            host,
            port,
            tls: TlsOptions::default(),
            connect: ofl_connect_options::default(),
            max_archive_size: 1 << 30,
            client_id: None,
        };
        write_out(out, options);
        Ok(())
    }
}

ffi_fn! {
    /// Frees client options. NULL is a no-op.
    fn ofl_director_client_options_free(options: *mut ofl_director_client_options) {
        free_boxed(options)
    }
}

ffi_fn! {
    /// TLS settings (copied; `tls` may be freed after): the root the
    /// director's certificate must chain to, and, for mutual TLS, this
    /// client's identity (an envoy's certificate CN is its shard name; a
    /// frontend's names it to the director). With `OFL_CLIENT_AUTH_NONE` no
    /// certificate is presented (the director then names the caller by its
    /// `client_id`). NULL turns TLS off (OpenFL's `tls=False`). Until this
    /// is called, `ofl_envoy_client_new` and `ofl_frontend_client_new` fail
    /// with INVALID_ARGUMENT.
    fn ofl_director_client_options_set_tls(
        options: *mut ofl_director_client_options,
        tls: *const ofl_tls_config,
    ) -> *mut ofl_error {
        options_mut(options)?.tls.attach(tls)
    }
}

ffi_fn! {
    /// Connection settings (copied; `connect` may be freed after; replaces
    /// what an earlier call set): server name, connect timeout, retry policy
    /// (a call is repeated whole: an upload or download restarts from its
    /// first byte), largest message.
    fn ofl_director_client_options_set_connect(
        options: *mut ofl_director_client_options,
        connect: *const ofl_connect_options,
    ) -> *mut ofl_error {
        let options = options_mut(options)?;
        options.connect = ofl_connect_options::copied(connect)?;
        Ok(())
    }
}

ffi_fn! {
    /// Envoys only: the largest archive `ofl_envoy_client_get_experiment_data`
    /// writes (default 1 GiB; beyond, RESOURCE_EXHAUSTED). Must be positive.
    fn ofl_director_client_options_set_max_archive_size(
        options: *mut ofl_director_client_options,
        bytes: u64,
    ) -> *mut ofl_error {
        if bytes == 0 {
            return Err(Error::invalid_argument("max archive size must be positive"));
        }
        options_mut(options)?.max_archive_size = bytes;
        Ok(())
    }
}

ffi_fn! {
    /// Frontends only: the `client_id` metadata sent with every call
    /// (printable ASCII), which names the caller to a director without TLS
    /// or to one that gets no client certificate (under mTLS the
    /// certificate CN does). NULL sends none (the director then says
    /// "__default__"). Envoys never send one, as in OpenFL.
    fn ofl_director_client_options_set_client_id(
        options: *mut ofl_director_client_options,
        client_id: *const c_char,
    ) -> *mut ofl_error {
        let id = arg_opt_str(client_id, "client_id")?;
        if let Some(id) = id {
            if id.is_empty() || !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(Error::invalid_argument(format!("client_id {id:?} is not non-empty printable ASCII")));
            }
        }
        options_mut(options)?.client_id = id.map(str::to_owned);
        Ok(())
    }
}
