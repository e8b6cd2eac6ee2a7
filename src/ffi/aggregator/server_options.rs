//! `ofl_aggregator_server_options`: what `ofl_aggregator_server_start` (and
//! `ofl_aggregator_server_start_fedavg`) need before a server runs.

use std::ffi::c_char;
use std::time::Duration;

use crate::aggregator::{Federation, AggregatorServerOptions};
use crate::error::{Error, Result};
use crate::ffi::boundary::{arg_mut, arg_opt_str, arg_str, check_out, ffi_fn, free_boxed, write_out};
use crate::ffi::option_values;
use crate::ffi::server_limits::ofl_server_limits;
use crate::ffi::tls_config::{ofl_tls_config, TlsOptions};

/// Settings for `ofl_aggregator_server_start`. TLS is on by default, as in
/// OpenFL: attach an `ofl_tls_config` with
/// `ofl_aggregator_server_options_set_tls`, or pass NULL there to serve
/// without TLS. Not thread-safe: configure from one thread.
#[allow(non_camel_case_types)]
pub struct ofl_aggregator_server_options {
    pub(crate) config: AggregatorServerOptions,
    pub(crate) tls: TlsOptions,
    pub(crate) federation: Federation,
}

fn options_mut<'a>(options: *mut ofl_aggregator_server_options) -> Result<&'a mut ofl_aggregator_server_options> {
    arg_mut(options, "options")
}

ffi_fn! {
    /// New server options (listen on `[::]`, port 0 = any free port, TLS on
    /// with nothing attached yet, random delay up to 5 s before
    /// UNAUTHENTICATED, 1 GiB messages, default `ofl_server_limits`),
    /// written to `*out`.
    fn ofl_aggregator_server_options_new(out: *mut *mut ofl_aggregator_server_options) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(
            out,
            ofl_aggregator_server_options {
                config: AggregatorServerOptions::default(),
                tls: TlsOptions::default(),
                federation: Federation::default(),
            },
        );
        Ok(())
    }
}

ffi_fn! {
    /// Frees server options. NULL is a no-op.
    fn ofl_aggregator_server_options_free(options: *mut ofl_aggregator_server_options) {
        free_boxed(options)
    }
}

ffi_fn! {
    /// Address and port to listen on: `host` is a name or an IPv4/IPv6
    /// address (`"[::]"` = every interface, IPv4 and IPv6); port 0 picks a
    /// free port, reported by `ofl_aggregator_server_port`.
    fn ofl_aggregator_server_options_set_listen(
        options: *mut ofl_aggregator_server_options,
        host: *const c_char,
        port: u16,
    ) -> *mut ofl_error {
        let host = option_values::host(host)?;
        let options = options_mut(options)?;
        options.config.host = host;
        options.config.port = port;
        Ok(())
    }
}

ffi_fn! {
    /// TLS settings (copied; `tls` may be freed after): root CA, the
    /// server's certificate and key (required), client-auth mode, CRLs.
    /// NULL serves without TLS (OpenFL's `tls=False`): anyone can then claim
    /// to be any collaborator; a warning is logged at start. Without a call
    /// the start fails with INVALID_ARGUMENT naming this function.
    fn ofl_aggregator_server_options_set_tls(options: *mut ofl_aggregator_server_options, tls: *const ofl_tls_config) -> *mut ofl_error {
        options_mut(options)?.tls.attach(tls)
    }
}

ffi_fn! {
    /// Connection and request bounds (copied; `limits` may be freed after).
    fn ofl_aggregator_server_options_set_limits(
        options: *mut ofl_aggregator_server_options,
        limits: *const ofl_server_limits,
    ) -> *mut ofl_error {
        let limits = ofl_server_limits::copied(limits)?;
        options_mut(options)?.config.limits = limits;
        Ok(())
    }
}

ffi_fn! {
    /// The aggregator's identity (OpenFL's `Aggregator.uuid`,
    /// `federation_uuid`, `single_col_cert_common_name`; the last may be
    /// NULL for none).
    fn ofl_aggregator_server_options_set_federation(
        options: *mut ofl_aggregator_server_options,
        aggregator_uuid: *const c_char,
        federation_uuid: *const c_char,
        single_col_cert_common_name: *const c_char,
    ) -> *mut ofl_error {
        let federation = &mut options_mut(options)?.federation;
        federation.aggregator_uuid = arg_str(aggregator_uuid, "aggregator_uuid")?.to_owned();
        federation.federation_uuid = arg_str(federation_uuid, "federation_uuid")?.to_owned();
        federation.single_col_cert_common_name =
            arg_opt_str(single_col_cert_common_name, "single_col_cert_common_name")?.unwrap_or("").to_owned();
        Ok(())
    }
}

ffi_fn! {
    /// Authorizes a collaborator name (OpenFL's `authorized_cols`).
    fn ofl_aggregator_server_options_add_collaborator(
        options: *mut ofl_aggregator_server_options,
        collaborator_name: *const c_char,
    ) -> *mut ofl_error {
        let name = arg_str(collaborator_name, "collaborator_name")?;
        if name.is_empty() {
            return Err(Error::invalid_argument("collaborator_name is empty"));
        }
        let federation = &mut options_mut(options)?.federation;
        if !federation.is_authorized(name) {
            federation.authorized_collaborators.push(name.to_owned());
        }
        Ok(())
    }
}

ffi_fn! {
    /// Upper bound of the random delay before an UNAUTHENTICATED answer
    /// (default 5000 ms, as OpenFL; 0 answers at once). The delay holds no
    /// thread.
    fn ofl_aggregator_server_options_set_auth_failure_max_delay_ms(
        options: *mut ofl_aggregator_server_options,
        delay_ms: u64,
    ) -> *mut ofl_error {
        options_mut(options)?.config.auth_failure_max_delay = Duration::from_millis(delay_ms);
        Ok(())
    }
}

ffi_fn! {
    /// Largest message accepted or sent, streamed uploads included (default
    /// 1 GiB = 2^30, as OpenFL). INVALID_ARGUMENT below 1024.
    fn ofl_aggregator_server_options_set_max_message_size(
        options: *mut ofl_aggregator_server_options,
        bytes: u64,
    ) -> *mut ofl_error {
        let size = option_values::message_size(bytes)?;
        options_mut(options)?.config.max_message_size = size;
        Ok(())
    }
}

ffi_fn! {
    /// Bytes of SendLocalTaskResults uploads held in memory at once across
    /// the server; an upload that would go over gets RESOURCE_EXHAUSTED
    /// (default 2 GiB). INVALID_ARGUMENT below 1 MiB.
    fn ofl_aggregator_server_options_set_upload_memory_budget(
        options: *mut ofl_aggregator_server_options,
        bytes: u64,
    ) -> *mut ofl_error {
        let value = option_values::byte_size(bytes, 1 << 20, "upload_memory_budget")?;
        options_mut(options)?.config.upload_memory_budget = value;
        Ok(())
    }
}

ffi_fn! {
    /// Most tensors in one uploaded TaskResults; more get RESOURCE_EXHAUSTED
    /// before they are decoded (default 100000). INVALID_ARGUMENT when 0.
    fn ofl_aggregator_server_options_set_max_tensors_per_upload(
        options: *mut ofl_aggregator_server_options,
        max: u64,
    ) -> *mut ofl_error {
        let value = option_values::count(max, u64::from(u32::MAX), "max_tensors_per_upload")?;
        options_mut(options)?.config.max_tensors_per_upload = value;
        Ok(())
    }
}

ffi_fn! {
    /// How often `ofl_aggregator_server_serve` asks the `all_quit_jobs_sent`
    /// callback whether the federation is over (default 1000 ms; it also asks
    /// right after each GetTasks that told a collaborator to quit; OpenFL 1.6
    /// asks every 5 s). INVALID_ARGUMENT when 0 or over a year.
    fn ofl_aggregator_server_options_set_quit_poll_interval_ms(
        options: *mut ofl_aggregator_server_options,
        interval_ms: u64,
    ) -> *mut ofl_error {
        let value = option_values::timeout_millis(interval_ms, "quit_poll_interval")?;
        options_mut(options)?.config.quit_poll_interval = value;
        Ok(())
    }
}
