//! Our aggregator server in its bench roles: GetTasks with Rust logic, with
//! C callbacks driven through the C API, and the transfer server (an
//! in-memory tensor for downloads; uploads checked for size and dropped).

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openfl_transport::aggregator::*;
use openfl_transport::ffi::aggregator::callbacks::*;
use openfl_transport::ffi::aggregator::may_block::{
    ofl_aggregator_callbacks_set_may_block, ofl_logic_call,
};
use openfl_transport::ffi::aggregator::reply::{ofl_reply, ofl_reply_add_task, ofl_tensor_request};
use openfl_transport::ffi::aggregator::results::ofl_task_results;
use openfl_transport::ffi::aggregator::server::*;
use openfl_transport::ffi::aggregator::server_options::*;
use openfl_transport::ffi::error::{ofl_error, ofl_error_free, ofl_error_message, ofl_error_new};
use openfl_transport::ffi::server_limits::*;
use openfl_transport::ffi::tls_config::*;
use openfl_transport::proto::aggregator::Task;
use openfl_transport::proto::{MetadataProto, NamedTensor};
use openfl_transport::{Error, Result, DEFAULT_MAX_MESSAGE_SIZE};

use crate::pki::{self, Pki};
use crate::roles::{self, Args};

/// The one task every GetTasks server hands out.
pub fn train_task() -> Task {
    Task {
        name: "train".into(),
        function_name: "train_task".into(),
        task_type: "train".into(),
        apply_local: false,
    }
}

/// Room for a message carrying `payload` bytes (the 1 GiB default is too
/// small for a 1 GiB tensor plus its description).
pub fn max_message_size(payload: usize) -> usize {
    DEFAULT_MAX_MESSAGE_SIZE.max(payload + (1 << 20))
}

/// `size` bytes of a repeating pattern, every page touched (zeroed memory
/// would be lazily mapped and fake the sender's RSS).
pub fn payload(size: usize) -> Bytes {
    let period: Vec<u8> = (0..=255u8).map(|i| i.wrapping_mul(7)).collect();
    let mut data = vec![0u8; size];
    for chunk in data.chunks_mut(256) {
        chunk.copy_from_slice(&period[..chunk.len()]);
    }
    Bytes::from(data)
}

/// The bench tensor: `data` as a flat uint8 array, as OpenFL describes it.
pub fn tensor(data: Bytes) -> NamedTensor {
    NamedTensor {
        name: "model_weights".into(),
        round_number: 0,
        lossless: true,
        report: false,
        tags: vec!["model".into()],
        transformer_metadata: vec![MetadataProto {
            int_list: vec![data.len() as i32],
            ..Default::default()
        }],
        data_bytes: data,
    }
}

/// Rust logic that never blocks: one task; the download tensor; uploads
/// checked for size and dropped.
struct BenchLogic {
    federation: Federation,
    tensor: Option<NamedTensor>,
    upload_size: usize,
}

impl AggregatorLogic for BenchLogic {
    fn federation(&self) -> &Federation {
        &self.federation
    }
    fn get_tasks(&self, _: &str) -> Result<TasksReply> {
        Ok(TasksReply {
            round_number: 0,
            tasks: vec![train_task()],
            sleep_time: 0,
            quit: false,
        })
    }
    fn get_aggregated_tensor(&self, _: &str, _: &TensorRequest) -> Result<NamedTensor> {
        self.tensor
            .clone()
            .ok_or_else(|| Error::invalid_argument("this bench server has no tensor"))
    }
    fn send_local_task_results(&self, _: &str, results: TaskResults) -> Result<()> {
        let got: usize = results.tensors.iter().map(|t| t.data_bytes.len()).sum();
        if got != self.upload_size {
            return Err(Error::invalid_argument(format!(
                "uploaded {got} bytes, expected {}",
                self.upload_size
            )));
        }
        Ok(())
    }
    fn may_block(&self, _: LogicCall) -> bool {
        false
    }
    fn all_quit_jobs_sent(&self) -> bool {
        false
    }
}

fn server_options(pki: &Pki, collaborators: usize, payload: usize) -> AggregatorServerOptions {
    let mut options = AggregatorServerOptions {
        host: "127.0.0.1".into(),
        tls: Some(pki::tls_config(pki, true)),
        auth_failure_max_delay: Duration::ZERO,
        max_message_size: max_message_size(payload),
        ..AggregatorServerOptions::default()
    };
    options.limits.max_connections = collaborators + 64;
    options.upload_memory_budget = options
        .upload_memory_budget
        .max(2 * max_message_size(payload));
    options
}

fn start_rust(role: &str, options: AggregatorServerOptions, logic: BenchLogic) -> ! {
    let runtime = roles::runtime();
    let server = runtime
        .block_on(AggregatorServer::start(options, Arc::new(logic)))
        .unwrap_or_else(|e| roles::fail(role, format!("server start: {e}")));
    let port = server.local_addr().port();
    // Kept alive by never returning.
    let _server = server;
    roles::serve_stats(port)
}

/// Role `gettasks-rust --pki DIR --collaborators N`.
pub fn rust_role(args: &Args) -> ! {
    let role = "gettasks-rust";
    let pki = Pki::at(args.str("pki").unwrap_or_else(|e| roles::fail(role, e)));
    let n: usize = args
        .num("collaborators")
        .unwrap_or_else(|e| roles::fail(role, e));
    let logic = BenchLogic {
        federation: pki::federation(n),
        tensor: None,
        upload_size: 0,
    };
    start_rust(role, server_options(&pki, n, 0), logic)
}

/// Role `ours-server --pki DIR --dir up|down --size BYTES`: the transfer
/// server; for a download the tensor is built before READY.
pub fn transfer_role(args: &Args) -> ! {
    let role = "ours-server";
    let pki = Pki::at(args.str("pki").unwrap_or_else(|e| roles::fail(role, e)));
    let size: usize = args.num("size").unwrap_or_else(|e| roles::fail(role, e));
    let download = args.str("dir").unwrap_or_else(|e| roles::fail(role, e)) == "down";
    let tensor = download.then(|| tensor(payload(size)));
    let logic = BenchLogic {
        federation: pki::federation(1),
        tensor,
        upload_size: size,
    };
    start_rust(role, server_options(&pki, 1, size), logic)
}

// ---- C callbacks, through the C API ----

extern "C" fn c_get_tasks(
    _: *mut c_void,
    _: *const c_char,
    reply: *mut ofl_reply,
) -> *mut ofl_error {
    ofl_reply_add_task(
        reply,
        c"train".as_ptr(),
        c"train_task".as_ptr(),
        c"train".as_ptr(),
        false,
    )
}

extern "C" fn c_no_tensor(
    _: *mut c_void,
    _: *const c_char,
    _: *const ofl_tensor_request,
    _: *mut ofl_reply,
) -> *mut ofl_error {
    ofl_error_new(3, c"the GetTasks bench server has no tensor".as_ptr())
}

extern "C" fn c_no_results(
    _: *mut c_void,
    _: *const c_char,
    _: *const ofl_task_results,
) -> *mut ofl_error {
    ofl_error_new(3, c"the GetTasks bench server takes no results".as_ptr())
}

/// Fails the role if a C API call returned an error.
fn ok(role: &str, what: &str, error: *mut ofl_error) {
    if error.is_null() {
        return;
    }
    // SAFETY: a non-NULL error from the C API is valid until freed; its
    // message is a NUL-terminated string owned by it.
    let message = unsafe { CStr::from_ptr(ofl_error_message(error)) }
        .to_string_lossy()
        .into_owned();
    ofl_error_free(error);
    roles::fail(role, format!("{what}: {message}"));
}

fn c_string(role: &str, text: impl Into<Vec<u8>>) -> CString {
    CString::new(text).unwrap_or_else(|e| roles::fail(role, e))
}

fn c_path(role: &str, path: std::path::PathBuf) -> CString {
    c_string(role, path.into_os_string().into_encoded_bytes())
}

/// The server options of a C host: TLS files, federation, limits.
fn c_options(role: &str, pki: &Pki, collaborators: usize) -> *mut ofl_aggregator_server_options {
    let mut tls = std::ptr::null_mut();
    ok(role, "ofl_tls_config_new", ofl_tls_config_new(&mut tls));
    let (cert, key) = pki.server();
    let ca = c_path(role, pki.ca());
    ok(
        role,
        "root certificate",
        ofl_tls_config_set_root_certificate_file(tls, ca.as_ptr()),
    );
    let (cert, key) = (c_path(role, cert), c_path(role, key));
    ok(
        role,
        "identity",
        ofl_tls_config_set_identity_files(tls, cert.as_ptr(), key.as_ptr()),
    );
    let mut limits = std::ptr::null_mut();
    ok(
        role,
        "ofl_server_limits_new",
        ofl_server_limits_new(&mut limits),
    );
    ok(
        role,
        "max connections",
        ofl_server_limits_set_max_connections(limits, (collaborators + 64) as u32),
    );
    let mut options = std::ptr::null_mut();
    ok(
        role,
        "ofl_aggregator_server_options_new",
        ofl_aggregator_server_options_new(&mut options),
    );
    ok(
        role,
        "listen",
        ofl_aggregator_server_options_set_listen(options, c"127.0.0.1".as_ptr(), 0),
    );
    ok(
        role,
        "tls",
        ofl_aggregator_server_options_set_tls(options, tls),
    );
    ok(
        role,
        "limits",
        ofl_aggregator_server_options_set_limits(options, limits),
    );
    let (agg, fed, cn) = (
        c_string(role, pki::AGGREGATOR_UUID),
        c_string(role, pki::FEDERATION_UUID),
        c_string(role, pki::CLIENT_CN),
    );
    ok(
        role,
        "federation",
        ofl_aggregator_server_options_set_federation(
            options,
            agg.as_ptr(),
            fed.as_ptr(),
            cn.as_ptr(),
        ),
    );
    for name in pki::federation(collaborators).authorized_collaborators {
        let name = c_string(role, name);
        ok(
            role,
            "add collaborator",
            ofl_aggregator_server_options_add_collaborator(options, name.as_ptr()),
        );
    }
    ok(
        role,
        "auth delay",
        ofl_aggregator_server_options_set_auth_failure_max_delay_ms(options, 0),
    );
    ofl_tls_config_free(tls);
    ofl_server_limits_free(limits);
    options
}

/// Role `gettasks-c --pki DIR --collaborators N` (and, once the lead
/// enables it, `gettasks-c-nonblock`): GetTasks answered by an
/// `extern "C"` callback, started through the C API as a C host would.
pub fn c_role(args: &Args, non_blocking: bool) -> ! {
    let role = if non_blocking {
        "gettasks-c-nonblock"
    } else {
        "gettasks-c"
    };
    let pki = Pki::at(args.str("pki").unwrap_or_else(|e| roles::fail(role, e)));
    let n: usize = args
        .num("collaborators")
        .unwrap_or_else(|e| roles::fail(role, e));
    let options = c_options(role, &pki, n);
    let mut callbacks = std::ptr::null_mut();
    ok(
        role,
        "ofl_aggregator_callbacks_new",
        ofl_aggregator_callbacks_new(&mut callbacks),
    );
    ok(
        role,
        "get_tasks",
        ofl_aggregator_callbacks_set_get_tasks(callbacks, Some(c_get_tasks)),
    );
    ok(
        role,
        "get_aggregated_tensor",
        ofl_aggregator_callbacks_set_get_aggregated_tensor(callbacks, Some(c_no_tensor)),
    );
    ok(
        role,
        "send_local_task_results",
        ofl_aggregator_callbacks_set_send_local_task_results(callbacks, Some(c_no_results)),
    );
    if non_blocking {
        // The other callbacks never run here.
        let get_tasks = ofl_logic_call::GetTasks as i32;
        ok(
            role,
            "may_block",
            ofl_aggregator_callbacks_set_may_block(callbacks, get_tasks, false),
        );
    }
    let mut server = std::ptr::null_mut();
    ok(
        role,
        "ofl_aggregator_server_start",
        ofl_aggregator_server_start(options, callbacks, &mut server),
    );
    ofl_aggregator_callbacks_free(callbacks);
    ofl_aggregator_server_options_free(options);
    roles::serve_stats(ofl_aggregator_server_port(server))
}
