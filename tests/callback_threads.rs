//! Where C callbacks run, driven through the C API with `extern "C"`
//! callbacks behind a real mTLS server: a callback declared non-blocking
//! (`ofl_aggregator_callbacks_set_may_block(.., false)`) runs on one of the
//! library's async workers ("ofl-worker"), one left at the default on the
//! blocking pool ("ofl-blocking"); the declaration is copied at start; a
//! value that is no `ofl_logic_call` is refused.

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::Mutex;

use common::*;
use openfl_transport::aggregator::TensorRequest;
use openfl_transport::ffi::aggregator::callbacks::*;
use openfl_transport::ffi::aggregator::may_block::{ofl_aggregator_callbacks_set_may_block, ofl_logic_call};
use openfl_transport::ffi::aggregator::reply::{ofl_reply, ofl_reply_set_round_number, ofl_tensor_request};
use openfl_transport::ffi::aggregator::results::ofl_task_results;
use openfl_transport::ffi::aggregator::server::*;
use openfl_transport::ffi::aggregator::server_options::*;
use openfl_transport::ffi::error::{ofl_error, ofl_error_code, ofl_error_free, ofl_error_message, ofl_error_new};
use openfl_transport::ffi::tls_config::*;
use openfl_transport::ofl_code;

/// (callback, name of the thread it ran on), in call order.
type Calls = Mutex<Vec<(&'static str, String)>>;

fn record(user_data: *mut c_void, callback: &'static str) {
    // SAFETY: every server of this file is given a `&Calls` that outlives it.
    let calls = unsafe { &*(user_data as *const Calls) };
    let thread = std::thread::current().name().unwrap_or("<unnamed>").to_owned();
    calls.lock().unwrap().push((callback, thread));
}

extern "C" fn get_tasks(user_data: *mut c_void, _: *const c_char, reply: *mut ofl_reply) -> *mut ofl_error {
    record(user_data, "get_tasks");
    ofl_reply_set_round_number(reply, 7)
}

extern "C" fn get_aggregated_tensor(
    user_data: *mut c_void,
    _: *const c_char,
    _: *const ofl_tensor_request,
    _: *mut ofl_reply,
) -> *mut ofl_error {
    record(user_data, "get_aggregated_tensor");
    ofl_error_new(ofl_code::NotFound as i32, c"no such tensor in this test".as_ptr())
}

extern "C" fn send_local_task_results(user_data: *mut c_void, _: *const c_char, _: *const ofl_task_results) -> *mut ofl_error {
    record(user_data, "send_local_task_results");
    ptr::null_mut()
}

extern "C" fn all_quit_jobs_sent(user_data: *mut c_void) -> bool {
    record(user_data, "all_quit_jobs_sent");
    true
}

fn ok(error: *mut ofl_error) {
    if !error.is_null() {
        // SAFETY: a non-NULL error's message is a NUL-terminated string that
        // lives until the error is freed.
        let message = unsafe { CStr::from_ptr(ofl_error_message(error)) }.to_string_lossy().into_owned();
        ofl_error_free(error);
        panic!("C API call failed: {message}");
    }
}

/// Callbacks recording into `calls`, with `non_blocking` declared so.
fn callbacks(calls: &Calls, non_blocking: &[ofl_logic_call]) -> *mut ofl_aggregator_callbacks {
    let mut cb = ptr::null_mut();
    ok(ofl_aggregator_callbacks_new(&mut cb));
    ok(ofl_aggregator_callbacks_set_user_data(cb, calls as *const Calls as *mut c_void, None));
    ok(ofl_aggregator_callbacks_set_get_tasks(cb, Some(get_tasks)));
    ok(ofl_aggregator_callbacks_set_get_aggregated_tensor(cb, Some(get_aggregated_tensor)));
    ok(ofl_aggregator_callbacks_set_send_local_task_results(cb, Some(send_local_task_results)));
    ok(ofl_aggregator_callbacks_set_all_quit_jobs_sent(cb, Some(all_quit_jobs_sent)));
    for call in non_blocking {
        ok(ofl_aggregator_callbacks_set_may_block(cb, *call as i32, false));
    }
    cb
}

/// An mTLS server on 127.0.0.1 (test PKI, test federation) started with `cb`.
fn start(cb: *const ofl_aggregator_callbacks) -> *mut ofl_aggregator_server {
    let p = pki();
    let mut tls = ptr::null_mut();
    ok(ofl_tls_config_new(&mut tls));
    ok(ofl_tls_config_set_root_certificate_pem(tls, p.ca.as_ptr(), p.ca.len()));
    let (cert, key) = (&p.server.cert, &p.server.key);
    ok(ofl_tls_config_set_identity_pem(tls, cert.as_ptr(), cert.len(), key.as_ptr(), key.len()));
    let mut options = ptr::null_mut();
    ok(ofl_aggregator_server_options_new(&mut options));
    let (host, aggregator, federation) =
        (CString::new("127.0.0.1").unwrap(), CString::new(AGGREGATOR_UUID).unwrap(), CString::new(FEDERATION_UUID).unwrap());
    ok(ofl_aggregator_server_options_set_listen(options, host.as_ptr(), 0));
    ok(ofl_aggregator_server_options_set_tls(options, tls));
    ok(ofl_aggregator_server_options_set_federation(options, aggregator.as_ptr(), federation.as_ptr(), ptr::null()));
    ok(ofl_aggregator_server_options_add_collaborator(options, c"col1".as_ptr()));
    ok(ofl_aggregator_server_options_set_quit_poll_interval_ms(options, 50));
    let mut server = ptr::null_mut();
    ok(ofl_aggregator_server_start(options, cb, &mut server));
    ofl_aggregator_server_options_free(options);
    ofl_tls_config_free(tls);
    server
}

/// One call of each RPC by col1, then `serve` (which asks
/// all_quit_jobs_sent, and returns on its true); the threads each callback
/// ran on.
fn run_federation(server: *mut ofl_aggregator_server, calls: &Calls) -> Vec<(&'static str, String)> {
    let port = ofl_aggregator_server_port(server);
    let tls = Some(client_tls(identity("col1")));
    openfl_transport::block_on(async move {
        let client = client(port, tls);
        let tasks = within(10, client.get_tasks("col1")).await.expect("GetTasks");
        assert_eq!(tasks.round_number, 7);
        let request = TensorRequest { tensor_name: "w".into(), ..TensorRequest::default() };
        assert_error(within(10, client.get_aggregated_tensor("col1", &request)).await, ofl_code::NotFound, "no such tensor");
        within(10, client.send_local_task_results("col1", &task_results(1024, 3))).await.expect("SendLocalTaskResults");
    })
    .unwrap();
    ok(ofl_aggregator_server_serve(server));
    ofl_aggregator_server_free(server);
    let calls = calls.lock().unwrap().clone();
    let names: Vec<&str> = calls.iter().map(|c| c.0).collect();
    for callback in ["get_tasks", "get_aggregated_tensor", "send_local_task_results", "all_quit_jobs_sent"] {
        assert!(names.contains(&callback), "{callback} never ran: {calls:?}");
    }
    calls
}

fn threads_of<'a>(calls: &'a [(&'static str, String)], callback: &str) -> Vec<&'a str> {
    calls.iter().filter(|c| c.0 == callback).map(|c| c.1.as_str()).collect()
}

#[test]
fn callbacks_may_block_by_default_and_run_on_the_blocking_pool() {
    let calls = Calls::default();
    let cb = callbacks(&calls, &[]);
    let server = start(cb);
    ofl_aggregator_callbacks_free(cb);
    for (callback, thread) in run_federation(server, &calls) {
        assert_eq!(thread, "ofl-blocking", "{callback} did not run on the blocking pool");
    }
}

#[test]
fn callbacks_declared_non_blocking_run_on_the_async_workers() {
    let calls = Calls::default();
    let non_blocking = [ofl_logic_call::GetTasks, ofl_logic_call::SendLocalTaskResults, ofl_logic_call::AllQuitJobsSent];
    let cb = callbacks(&calls, &non_blocking);
    let server = start(cb);
    // The declarations were copied at start: changing them now changes
    // nothing for this server.
    ok(ofl_aggregator_callbacks_set_may_block(cb, ofl_logic_call::GetTasks as i32, true));
    ok(ofl_aggregator_callbacks_set_may_block(cb, ofl_logic_call::GetAggregatedTensor as i32, false));
    ofl_aggregator_callbacks_free(cb);
    let calls = run_federation(server, &calls);
    for callback in ["get_tasks", "send_local_task_results", "all_quit_jobs_sent"] {
        for thread in threads_of(&calls, callback) {
            assert_eq!(thread, "ofl-worker", "{callback}, declared non-blocking, did not run on an async worker");
        }
    }
    for thread in threads_of(&calls, "get_aggregated_tensor") {
        assert_eq!(thread, "ofl-blocking", "get_aggregated_tensor, left blocking, did not run on the blocking pool");
    }
}

fn assert_invalid(error: *mut ofl_error, needle: &str) {
    assert!(!error.is_null(), "expected INVALID_ARGUMENT mentioning {needle:?}, got success");
    assert_eq!(ofl_error_code(error), ofl_code::InvalidArgument);
    // SAFETY: a non-NULL error's message is a NUL-terminated string that
    // lives until the error is freed.
    let message = unsafe { CStr::from_ptr(ofl_error_message(error)) }.to_string_lossy().into_owned();
    ofl_error_free(error);
    assert!(message.contains(needle), "message {message:?} does not mention {needle:?}");
}

#[test]
fn a_value_that_is_no_logic_call_is_refused() {
    let mut cb = ptr::null_mut();
    ok(ofl_aggregator_callbacks_new(&mut cb));
    for bad in [-1, 4, 99] {
        assert_invalid(ofl_aggregator_callbacks_set_may_block(cb, bad, false), &format!("logic call {bad} is not an ofl_logic_call"));
    }
    assert_invalid(ofl_aggregator_callbacks_set_may_block(ptr::null_mut(), 0, false), "callbacks");
    ok(ofl_aggregator_callbacks_set_may_block(cb, ofl_logic_call::AllQuitJobsSent as i32, false));
    ofl_aggregator_callbacks_free(cb);
}
