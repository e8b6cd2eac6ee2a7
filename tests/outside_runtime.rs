//! The Rust API used from plain threads, as the C API uses it: no Tokio
//! runtime on the caller's thread. Regression test for clients that panicked
//! with "no reactor running" when made outside a runtime.

mod common;

use std::sync::Arc;

use common::*;
use openfl_transport::block_on;

#[test]
fn client_made_and_used_on_a_plain_thread() {
    let logic = TestLogic::new();
    logic.set_tasks_reply(openfl_transport::aggregator::TasksReply {
        round_number: 3,
        sleep_time: 7,
        ..Default::default()
    });
    let server = block_on(start_server(Some(server_tls()), logic))
        .expect("the runtime ran the start");
    let port = server.local_addr().port();

    let client = Arc::new(client(port, Some(client_tls(&pki().col1))));
    let tasks = {
        let client = Arc::clone(&client);
        block_on(async move { client.get_tasks("col1").await }).expect("the runtime ran the call")
    };
    let tasks = tasks.expect("GetTasks succeeds");
    assert_eq!((tasks.round_number, tasks.sleep_time), (3, 7));

    client.reconnect().expect("reconnect outside a runtime");
    block_on(async move { server.shutdown().await }).unwrap().unwrap();
}
