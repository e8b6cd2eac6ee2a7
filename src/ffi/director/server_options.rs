//! `ofl_director_server_options`: the settings of
//! `ofl_director_server_start` (OpenFL's `DirectorGRPCServer` and
//! `Director` arguments).

use std::ffi::c_char;
use std::path::PathBuf;
use std::time::Duration;

use crate::director::DirectorServerOptions;
use crate::error::{Error, Result};
use crate::ffi::boundary::{arg_mut, arg_str, check_out, ffi_fn, free_boxed, write_out};
use crate::ffi::option_values;
use crate::ffi::server_limits::ofl_server_limits;
use crate::ffi::tensor::string_list;
use crate::ffi::tls_config::{ofl_tls_config, TlsOptions};

/// Settings for `ofl_director_server_start`. TLS is on by default, as in
/// OpenFL: attach an `ofl_tls_config` with
/// `ofl_director_server_options_set_tls` (or pass NULL there to turn TLS
/// off). Not thread-safe: configure from one thread.
#[allow(non_camel_case_types)]
pub struct ofl_director_server_options {
    pub(crate) config: DirectorServerOptions,
    pub(crate) tls: TlsOptions,
}

fn options_mut<'a>(
    options: *mut ofl_director_server_options,
) -> Result<&'a mut ofl_director_server_options> {
    arg_mut(options, "options")
}

ffi_fn! {
    /// New director options, written to `*out`: listen on `[::]`, port 0
    /// (any free port; OpenFL's default is 50051), TLS on with nothing
    /// attached yet, default server limits, empty sample and target shapes,
    /// envoy health checks every 60 s, archives under a fresh directory of
    /// the system temporary directory (set one:
    /// `ofl_director_server_options_set_archive_dir`), archives and messages
    /// up to 1 GiB, 100 000 queued metrics per experiment, envoy identity
    /// checked.
    fn ofl_director_server_options_new(out: *mut *mut ofl_director_server_options) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(out, ofl_director_server_options { config: DirectorServerOptions::default(), tls: TlsOptions::default() });
        Ok(())
    }
}

ffi_fn! {
    /// Frees director options. NULL is a no-op.
    fn ofl_director_server_options_free(options: *mut ofl_director_server_options) {
        free_boxed(options)
    }
}

ffi_fn! {
    /// Address and port to listen on (OpenFL's `listen_host`,
    /// `listen_port`): `host` is a name or an IPv4/IPv6 address (`"[::]"` =
    /// every interface); port 0 picks a free port, reported by
    /// `ofl_director_server_port`.
    fn ofl_director_server_options_set_listen(
        options: *mut ofl_director_server_options,
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
    /// TLS settings (copied; `tls` may be freed after): the server's
    /// identity, the root its clients must chain to, mutual (default) or
    /// one-way (`OFL_CLIENT_AUTH_NONE`: a caller that presents no
    /// certificate is named by its `client_id` metadata), CRLs. NULL turns
    /// TLS off (OpenFL's `tls=False`): callers are then named by their
    /// `client_id` metadata, which any peer can set (envoys send none: they
    /// are all "__default__"); a warning is logged at start. Until this is
    /// called, `ofl_director_server_start` fails with INVALID_ARGUMENT.
    fn ofl_director_server_options_set_tls(
        options: *mut ofl_director_server_options,
        tls: *const ofl_tls_config,
    ) -> *mut ofl_error {
        options_mut(options)?.tls.attach(tls)
    }
}

ffi_fn! {
    /// Connection and request bounds (copied; `limits` may be freed after):
    /// streams per connection, connections, handshake and idle timeouts,
    /// largest unary request. Default: `ofl_server_limits_new`'s.
    fn ofl_director_server_options_set_limits(
        options: *mut ofl_director_server_options,
        limits: *const ofl_server_limits,
    ) -> *mut ofl_error {
        let options = options_mut(options)?;
        options.config.limits = ofl_server_limits::copied(limits)?;
        Ok(())
    }
}

ffi_fn! {
    /// The sample shape every shard must report to be accepted
    /// (UpdateShardInfo), as OpenFL writes it: `len` strings such as "28".
    /// `dims` may be NULL when `len` is 0. Copied.
    fn ofl_director_server_options_set_sample_shape(
        options: *mut ofl_director_server_options,
        dims: *const *const c_char,
        len: usize,
    ) -> *mut ofl_error {
        let shape = string_list(dims, len, "dims")?;
        options_mut(options)?.config.sample_shape = shape;
        Ok(())
    }
}

ffi_fn! {
    /// The target shape every shard must report, as
    /// `ofl_director_server_options_set_sample_shape`.
    fn ofl_director_server_options_set_target_shape(
        options: *mut ofl_director_server_options,
        dims: *const *const c_char,
        len: usize,
    ) -> *mut ofl_error {
        let shape = string_list(dims, len, "dims")?;
        options_mut(options)?.config.target_shape = shape;
        Ok(())
    }
}

ffi_fn! {
    /// How often envoys send health checks (OpenFL's
    /// `envoy_health_check_period`, default 60 000 ms; OpenFL envoys read
    /// whole seconds). An envoy is online for two periods after its last
    /// one. Must be positive.
    fn ofl_director_server_options_set_envoy_health_check_period_ms(
        options: *mut ofl_director_server_options,
        period_ms: u64,
    ) -> *mut ofl_error {
        if period_ms == 0 {
            return Err(Error::invalid_argument("period_ms must be positive"));
        }
        options_mut(options)?.config.envoy_health_check_period = Duration::from_millis(period_ms);
        Ok(())
    }
}

ffi_fn! {
    /// The directory experiment archives are stored in, as
    /// `<dir>/<experiment name>.archive` (created at start if missing;
    /// OpenFL: the working directory).
    fn ofl_director_server_options_set_archive_dir(
        options: *mut ofl_director_server_options,
        path: *const c_char,
    ) -> *mut ofl_error {
        let path = arg_str(path, "path")?;
        if path.is_empty() {
            return Err(Error::invalid_argument("path is empty"));
        }
        options_mut(options)?.config.archive_dir = PathBuf::from(path);
        Ok(())
    }
}

ffi_fn! {
    /// Largest archive SetNewExperiment accepts, in bytes (default 1 GiB;
    /// larger uploads get RESOURCE_EXHAUSTED). Must be positive.
    fn ofl_director_server_options_set_max_archive_size(
        options: *mut ofl_director_server_options,
        bytes: u64,
    ) -> *mut ofl_error {
        if bytes == 0 {
            return Err(Error::invalid_argument("max archive size must be positive"));
        }
        options_mut(options)?.config.max_archive_size = bytes;
        Ok(())
    }
}

ffi_fn! {
    /// Largest gRPC message received or sent (default 1 GiB = 2^30, as
    /// OpenFL). INVALID_ARGUMENT below 1024.
    fn ofl_director_server_options_set_max_message_size(
        options: *mut ofl_director_server_options,
        bytes: u64,
    ) -> *mut ofl_error {
        let size = option_values::message_size(bytes)?;
        options_mut(options)?.config.max_message_size = size;
        Ok(())
    }
}

ffi_fn! {
    /// Metrics kept per experiment until a frontend streams them (default
    /// 100 000); beyond, the oldest is dropped. Must be positive.
    fn ofl_director_server_options_set_max_queued_metrics(
        options: *mut ofl_director_server_options,
        count: usize,
    ) -> *mut ofl_error {
        if count == 0 {
            return Err(Error::invalid_argument("count must be positive"));
        }
        options_mut(options)?.config.max_queued_metrics = count;
        Ok(())
    }
}

ffi_fn! {
    /// Under mTLS, whether envoy RPCs must come from a certificate whose CN
    /// is the envoy name they carry (default true; OpenFL checks nothing, so
    /// any certified peer could download any archive or fail any
    /// experiment).
    fn ofl_director_server_options_set_check_envoy_identity(
        options: *mut ofl_director_server_options,
        enabled: bool,
    ) -> *mut ofl_error {
        options_mut(options)?.config.check_envoy_identity = enabled;
        Ok(())
    }
}
