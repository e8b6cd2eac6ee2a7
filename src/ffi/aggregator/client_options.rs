//! `ofl_aggregator_client_options`: what `ofl_aggregator_client_new` needs
//! (OpenFL's `AggregatorGRPCClient` arguments).

use std::ffi::c_char;

use crate::aggregator::AggregatorClientOptions;
use crate::error::Result;
use crate::ffi::boundary::{arg_mut, arg_opt_str, arg_str, check_out, ffi_fn, free_boxed, write_out};
use crate::ffi::connect_options::ofl_connect_options;
use crate::ffi::option_values;
use crate::ffi::tls_config::{ofl_tls_config, TlsOptions};

/// Settings for `ofl_aggregator_client_new`. TLS is on by default, as in
/// OpenFL: attach an `ofl_tls_config` with
/// `ofl_aggregator_client_options_set_tls`, or pass NULL there for plain
/// text. Not thread-safe: configure from one thread, then pass to
/// `ofl_aggregator_client_new`.
#[allow(non_camel_case_types)]
pub struct ofl_aggregator_client_options {
    config: AggregatorClientOptions,
    tls: TlsOptions,
    connect: ofl_connect_options,
}

impl ofl_aggregator_client_options {
    /// The client's settings with TLS and connection settings applied.
    pub(super) fn resolved(&self) -> Result<AggregatorClientOptions> {
        let mut config = self.config.clone();
        config.connect.tls = self.tls.resolve("ofl_aggregator_client_options_set_tls")?;
        self.connect.apply(&mut config.connect, &mut config.retry, &mut config.max_message_size);
        Ok(config)
    }
}

fn options_mut<'a>(options: *mut ofl_aggregator_client_options) -> Result<&'a mut ofl_aggregator_client_options> {
    arg_mut(options, "options")
}

ffi_fn! {
    /// New client options for the aggregator at `host`:`port` (OpenFL's
    /// `agg_addr`, `agg_port`), TLS on with nothing attached yet, written
    /// to `*out`.
    fn ofl_aggregator_client_options_new(
        host: *const c_char,
        port: u16,
        out: *mut *mut ofl_aggregator_client_options,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let host = option_values::host(host)?;
        write_out(
            out,
            ofl_aggregator_client_options {
                config: AggregatorClientOptions::new(host, port),
                tls: TlsOptions::default(),
                connect: ofl_connect_options::default(),
            },
        );
        Ok(())
    }
}

ffi_fn! {
    /// Frees client options. NULL is a no-op.
    fn ofl_aggregator_client_options_free(options: *mut ofl_aggregator_client_options) {
        free_boxed(options)
    }
}

ffi_fn! {
    /// TLS settings (copied; `tls` may be freed after): root CA, and under
    /// mutual TLS the collaborator's certificate and key. NULL connects in
    /// plain text (OpenFL's `tls=False`): the aggregator cannot authenticate
    /// this collaborator. Without a call `ofl_aggregator_client_new` fails
    /// with INVALID_ARGUMENT naming this function.
    fn ofl_aggregator_client_options_set_tls(options: *mut ofl_aggregator_client_options, tls: *const ofl_tls_config) -> *mut ofl_error {
        options_mut(options)?.tls.attach(tls)
    }
}

ffi_fn! {
    /// Connection settings: server name, connect timeout, retry policy,
    /// largest message (copied; `connect` may be freed after). What it
    /// leaves unset keeps the default; a second call replaces the first.
    fn ofl_aggregator_client_options_set_connect(
        options: *mut ofl_aggregator_client_options,
        connect: *const ofl_connect_options,
    ) -> *mut ofl_error {
        let connect = ofl_connect_options::copied(connect)?;
        options_mut(options)?.connect = connect;
        Ok(())
    }
}

ffi_fn! {
    /// The identity requests carry and replies must match (OpenFL's
    /// `aggregator_uuid`, `federation_uuid`, `single_col_cert_common_name`;
    /// the last may be NULL for none).
    fn ofl_aggregator_client_options_set_federation(
        options: *mut ofl_aggregator_client_options,
        aggregator_uuid: *const c_char,
        federation_uuid: *const c_char,
        single_col_cert_common_name: *const c_char,
    ) -> *mut ofl_error {
        let federation = &mut options_mut(options)?.config.federation;
        federation.aggregator_uuid = arg_str(aggregator_uuid, "aggregator_uuid")?.to_owned();
        federation.federation_uuid = arg_str(federation_uuid, "federation_uuid")?.to_owned();
        federation.single_col_cert_common_name =
            arg_opt_str(single_col_cert_common_name, "single_col_cert_common_name")?.unwrap_or("").to_owned();
        Ok(())
    }
}

ffi_fn! {
    /// Open a new connection for every call, as OpenFL 1.6 does (default
    /// off: one connection is reused).
    fn ofl_aggregator_client_options_set_reconnect_every_call(
        options: *mut ofl_aggregator_client_options,
        enabled: bool,
    ) -> *mut ofl_error {
        options_mut(options)?.config.reconnect_every_call = enabled;
        Ok(())
    }
}
