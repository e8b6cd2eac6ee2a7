//! The tracing bridge (issue 9, item 7): the events of the crates under the
//! transport (h2 and tonic log through `tracing`, rustls through `log`)
//! reach the host's log callback at their level, and none of them when the
//! level is WARN. One test: the log callback is process-wide.

mod common;

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

use common::*;
use openfl_transport::ffi::logging::{ofl_log_level, ofl_set_log_callback};

static RECORDS: Mutex<Vec<(ofl_log_level, String)>> = Mutex::new(Vec::new());

extern "C" fn record(_: *mut c_void, level: ofl_log_level, target: *const c_char, _message: *const c_char) {
    // SAFETY: the library passes a NUL-terminated target valid for the call.
    let target = unsafe { CStr::from_ptr(target) }.to_string_lossy().into_owned();
    RECORDS.lock().unwrap().push((level, target));
}

fn set_level(level: ofl_log_level) {
    let error = ofl_set_log_callback(level as i32, Some(record), std::ptr::null_mut());
    assert!(error.is_null(), "ofl_set_log_callback failed");
    RECORDS.lock().unwrap().clear();
}

/// Targets of the records received from crates other than this library.
fn foreign_targets() -> Vec<(ofl_log_level, String)> {
    RECORDS.lock().unwrap().iter().filter(|(_, t)| !t.starts_with("openfl_transport")).cloned().collect()
}

/// One mTLS connection and a few calls.
async fn exchange() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let client = client(server.local_addr().port(), Some(client_tls(identity("col1"))));
    for _ in 0..3 {
        within(20, client.get_tasks("col1")).await.expect("GetTasks");
    }
    client.close();
    within(10, server.shutdown()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_and_rustls_events_reach_the_callback_at_their_level_and_not_at_warn() {
    set_level(ofl_log_level::Trace);
    exchange().await;
    let seen = foreign_targets();
    let from = |krate: &str| seen.iter().filter(|(_, t)| t == krate || t.starts_with(&format!("{krate}::"))).count();
    assert!(from("h2") > 0, "no h2 event at TRACE: {seen:?}");
    assert!(from("rustls") > 0, "no rustls event at TRACE: {seen:?}");
    assert!(
        seen.iter().any(|(level, t)| t.starts_with("h2") && *level == ofl_log_level::Trace),
        "h2's TRACE events keep their level: {seen:?}"
    );
    assert!(!seen.iter().any(|(_, t)| t.starts_with("tracing")), "tracing's own span records are not forwarded");

    set_level(ofl_log_level::Debug);
    exchange().await;
    let seen = foreign_targets();
    assert!(seen.iter().all(|(level, _)| *level <= ofl_log_level::Debug), "{seen:?}");
    assert!(!seen.is_empty(), "h2 and rustls log at DEBUG too: {seen:?}");

    set_level(ofl_log_level::Warn);
    exchange().await;
    assert_eq!(foreign_targets(), vec![], "nothing from h2/rustls/tonic at WARN on a clean exchange");
}
