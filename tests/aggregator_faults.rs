//! The collaborator client when the aggregator is not there: it waits for a
//! server that starts late, survives a restart, gives up with a clear error
//! when its retry budget is spent, and stops at once when closed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use openfl_transport::aggregator::{AggregatorClient, TasksReply};
use openfl_transport::ofl_code;
use openfl_transport::RetryPolicy;

fn col1_tls() -> Option<openfl_transport::tls::TlsConfig> {
    Some(client_tls(&pki().col1))
}

/// A client of 127.0.0.1:`port` that retries for up to 20 s.
fn patient_client(port: u16) -> Arc<AggregatorClient> {
    Arc::new(AggregatorClient::new(client_config(port, col1_tls())).expect("building the client"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_made_before_the_server_is_up_succeeds_once_it_starts() {
    let port = free_port();
    let client = patient_client(port);
    let call = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.get_tasks("col1").await }
    });

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!call.is_finished(), "the call must wait for the server");
    let logic = TestLogic::new();
    logic.set_tasks_reply(TasksReply { round_number: 5, sleep_time: 3, ..TasksReply::default() });
    let _server = start_server_with(server_config(port, Some(server_tls())), logic.clone()).await;

    let reply = within(20, call).await.expect("call task").expect("GetTasks after the server came up");
    assert_eq!(reply.round_number, 5);
    assert_eq!(logic.get_tasks_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_made_before_the_server_is_up_arrives_once_and_whole() {
    let port = free_port();
    let client = patient_client(port);
    let results = task_results(8 << 20, 17);
    let call = tokio::spawn({
        let client = Arc::clone(&client);
        let results = results.clone();
        async move { client.send_local_task_results("col1", &results).await }
    });

    tokio::time::sleep(Duration::from_secs(1)).await;
    let logic = TestLogic::new();
    let _server = start_server_with(server_config(port, Some(server_tls())), logic.clone()).await;

    within(30, call).await.expect("call task").expect("upload after the server came up");
    let received = logic.results();
    assert_eq!(received.len(), 1);
    assert_bytes_eq(&received[0].1.tensors[0].data_bytes, &results.tensors[0].data_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_after_a_server_restart_succeeds() {
    let first_logic = TestLogic::new();
    let first = start_server(Some(server_tls()), first_logic.clone()).await;
    let port = first.local_addr().port();
    let client = patient_client(port);
    within(20, client.get_tasks("col1")).await.expect("GetTasks on the first server");
    within(20, first.shutdown()).await.expect("stopping the first server");
    drop(first);

    let second_logic = TestLogic::new();
    let _second = start_server_with(server_config(port, Some(server_tls())), second_logic.clone()).await;
    within(20, client.get_tasks("col1")).await.expect("GetTasks on the restarted server");
    assert_eq!((first_logic.get_tasks_calls(), second_logic.get_tasks_calls()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_retry_budget_is_retries_exhausted() {
    let mut config = client_config(free_port(), col1_tls());
    config.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        deadline: Some(Duration::from_secs(1)),
    };
    let client = AggregatorClient::new(config).unwrap();

    let started = Instant::now();
    let result = within(20, client.get_tasks("col1")).await;
    let elapsed = started.elapsed();
    let error = assert_error(result, ofl_code::RetriesExhausted, "GetTasks: gave up after");
    assert!(error.message().contains("attempt"), "{error}");
    assert!(error.message().contains("last error"), "{error}");
    assert!(elapsed < Duration::from_secs(5), "gave up after {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_cancels_a_call_that_is_retrying() {
    let mut config = client_config(free_port(), col1_tls());
    config.retry.deadline = None; // would retry forever
    let client = Arc::new(AggregatorClient::new(config).unwrap());
    let call = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.get_tasks("col1").await }
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "the call must still be retrying");
    let closed_at = Instant::now();
    client.close();
    let result = within(10, call).await.expect("call task");
    assert_error(result, ofl_code::Cancelled, "closed");
    assert!(closed_at.elapsed() < Duration::from_secs(2), "took {:?}", closed_at.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_client_refuses_new_calls() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let client = AggregatorClient::new(client_config(server.local_addr().port(), col1_tls())).unwrap();
    within(20, client.get_tasks("col1")).await.expect("GetTasks before close");
    client.close();
    assert_error(within(10, client.get_tasks("col1")).await, ofl_code::Cancelled, "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_after_disconnect_reconnects() {
    let server = start_server(Some(server_tls()), TestLogic::new()).await;
    let client = AggregatorClient::new(client_config(server.local_addr().port(), col1_tls())).unwrap();
    within(20, client.get_tasks("col1")).await.expect("GetTasks before disconnect");
    client.disconnect();
    within(20, client.get_tasks("col1")).await.expect("GetTasks after disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_around_every_call_works() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let mut config = client_config(server.local_addr().port(), col1_tls());
    config.reconnect_every_call = true;
    let client = AggregatorClient::new(config).unwrap();
    for _ in 0..3 {
        within(20, client.get_tasks("col1")).await.expect("GetTasks on a new connection");
    }
    within(20, client.send_local_task_results("col1", &task_results(4 << 20, 2))).await.expect("upload");
    assert_eq!((logic.get_tasks_calls(), logic.results().len()), (3, 1));
}
