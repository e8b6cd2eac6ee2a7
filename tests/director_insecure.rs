//! The director without TLS: callers are named by their `client_id`
//! metadata (default `__default__`, as OpenFL's get_caller), only the default
//! caller (an envoy) may fail an experiment, and a shutdown ends long polls.

mod common;
mod director_common;

use std::time::Duration;

use common::{assert_error, short_retry, within};
use director_common::*;
use openfl_transport::director::{default_caller, ExperimentStatus, FrontendClient, FrontendClientOptions};
use openfl_transport::ofl_code;

fn anonymous_frontend(d: &Director) -> FrontendClient {
    let mut config = FrontendClientOptions::new("127.0.0.1", d.port());
    config.retry = short_retry();
    FrontendClient::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_name_callers_and_only_envoys_fail_experiments() {
    let d = start_with(false, |_| {}).await;
    assert!(within(10, d.envoy("col1").report_shard_info(shard(None))).await.unwrap());
    let (alice, bob) = (d.frontend("alice"), d.frontend("bob"));
    let archive = d.archive("a", 4096, 1);
    assert!(within(10, alice.set_new_experiment("exp", &names(&["col1"]), &archive, None)).await.unwrap());
    assert_eq!(d.handle().experiment("exp").unwrap().info.owner, "alice");
    assert_error(within(10, bob.get_experiment_status("exp")).await, ofl_code::NotFound, "exp");
    assert!(within(10, bob.get_experiments_list()).await.unwrap().is_empty());
    assert_eq!(within(10, alice.get_experiments_list()).await.unwrap().len(), 1);

    // A frontend without client_id is the default caller.
    let anonymous = anonymous_frontend(&d);
    assert!(within(10, anonymous.set_new_experiment("anon", &names(&["col1"]), &archive, None)).await.unwrap());
    assert_eq!(d.handle().experiment("anon").unwrap().info.owner, default_caller());
    assert_eq!(within(10, anonymous.get_experiments_list()).await.unwrap()[0].name, "anon");

    let col1 = d.envoy("col1");
    assert_eq!(within(10, col1.wait_experiment()).await.unwrap(), "exp");
    // A frontend (a client_id) may not fail it; the envoy (no client_id) may.
    let mut raw = d.raw("alice");
    let mut request = tonic::Request::new(openfl_transport::proto::director::SetExperimentFailedRequest {
        experiment_name: "exp".into(),
        collaborator_name: "col1".into(),
        error_code: 1,
        error_description: String::new(),
    });
    request.metadata_mut().insert("client_id", "alice".parse().unwrap());
    let status = within(10, raw.set_experiment_failed(request)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(within(10, alice.get_experiment_status("exp")).await.unwrap(), ExperimentStatus::InProgress);
    within(10, col1.set_experiment_failed("exp", 1, "boom")).await.unwrap();
    assert_eq!(within(10, alice.get_experiment_status("exp")).await.unwrap(), ExperimentStatus::Failed);
    // Without TLS envoy names are not checked (anyone can claim any envoy).
    assert_eq!(within(10, d.envoy("col1").wait_experiment()).await.unwrap(), "anon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls_and_clients_give_up() {
    let d = start_with(false, |_| {}).await;
    assert!(within(10, d.envoy("col1").report_shard_info(shard(None))).await.unwrap());
    let col1 = d.envoy("col1");
    let waiting = tokio::spawn(async move { col1.wait_experiment().await });
    let archive = d.archive("a", 4096, 1);
    let alice = d.frontend("alice");
    assert!(within(10, alice.set_new_experiment("exp", &names(&["col2"]), &archive, None)).await.unwrap());
    let handle = d.handle();
    within(10, handle.wait_until(|h| h.experiment_status("exp") == Some(ExperimentStatus::InProgress))).await;
    let streamer = d.frontend("alice");
    let stream = tokio::spawn(async move { streamer.stream_metrics("exp", |_| true).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    within(10, d.server.shutdown()).await.unwrap();
    // The long polls ended (UNAVAILABLE, then the retry budget of 2 s is spent).
    assert_error(within(10, waiting).await.unwrap(), ofl_code::RetriesExhausted, "WaitExperiment");
    assert_error(within(10, stream).await.unwrap(), ofl_code::RetriesExhausted, "GetMetricStream");
    assert_error(within(10, alice.get_experiments_list()).await, ofl_code::RetriesExhausted, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_envoy_client_cancels_its_wait() {
    let d = start_with(false, |_| {}).await;
    let col1 = std::sync::Arc::new(d.envoy("col1"));
    let waiter = std::sync::Arc::clone(&col1);
    let waiting = tokio::spawn(async move { waiter.wait_experiment().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    col1.close();
    assert_error(within(5, waiting).await.unwrap(), ofl_code::Cancelled, "closed");
}
