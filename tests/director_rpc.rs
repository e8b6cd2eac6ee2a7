//! The director over mTLS on 127.0.0.1: every RPC through the envoy and
//! frontend clients, the experiment life cycle (pending → in_progress →
//! finished / failed / rejected), the host hooks and handle, and every bad
//! input with its exact code.

mod common;
mod director_common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use tonic::Code;

use common::{assert_bytes_eq, assert_error, assert_status, client_tls, pattern, pki, patient_retry, within};
use director_common::*;
use openfl_transport::director::{DirectorMetric, ExperimentStatus, MAX_COLLABORATORS, MAX_COLLABORATOR_NAME_LEN};
use openfl_transport::ofl_code;
use openfl_transport::proto::director::{
    ExperimentData, ExperimentInfo, GetDatasetInfoRequest, GetExperimentDataRequest, GetExperimentStatusRequest,
    GetTrainedModelRequest, RemoveExperimentRequest, SetExperimentFailedRequest, WaitExperimentRequest,
};

fn metric(name: &str, value: f32, round: u32) -> DirectorMetric {
    DirectorMetric { origin: "aggregator".into(), task_name: "validate".into(), metric_name: name.into(), value, round }
}

async fn register(d: &Director, envoy: &str) {
    assert!(within(10, d.envoy(envoy).report_shard_info(shard(None))).await.unwrap());
}

/// Submits `name` as `owner` for `collaborators` (a 64 KiB archive, a model).
async fn submit(d: &Director, owner: &str, name: &str, collaborators: &[&str]) {
    let archive = d.archive(name, 64 << 10, 9);
    let accepted =
        within(20, d.frontend(owner).set_new_experiment(name, &names(collaborators), &archive, Some(&model(256, 1))))
            .await
            .unwrap();
    assert!(accepted);
}

async fn wait_status(d: &Director, name: &str, status: ExperimentStatus) {
    let handle = d.handle();
    within(10, handle.wait_until(|h| h.experiment_status(name) == Some(status))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_register_send_health_checks_and_go_offline() {
    let d = start_with(true, |c| c.envoy_health_check_period = Duration::from_millis(500)).await;
    let alice = d.frontend("alice");

    // GetEnvoys works before any envoy called WaitExperiment (OpenFL: KeyError).
    assert!(within(10, alice.get_envoys()).await.unwrap().is_empty());
    let (sample, target) = within(10, alice.get_dataset_info()).await.unwrap();
    assert_eq!((sample, target), (sample_shape(), target_shape()));

    let col1 = d.envoy("col1");
    assert!(!within(10, col1.report_shard_info(shard(Some(names(&["32", "32"]))))).await.unwrap());
    let mut wrong_target = shard(None);
    wrong_target.target_shape = names(&["10"]);
    assert!(!within(10, col1.report_shard_info(wrong_target)).await.unwrap());
    assert!(within(10, alice.get_envoys()).await.unwrap().is_empty(), "a refused shard is not registered");
    assert!(within(10, col1.report_shard_info(shard(None))).await.unwrap());

    let envoys = within(10, alice.get_envoys()).await.unwrap();
    assert_eq!(envoys.len(), 1);
    let e = &envoys[0];
    assert_eq!(e.shard_info.as_ref().unwrap().node_info.as_ref().unwrap().name, "col1");
    assert_eq!(e.shard_info.as_ref().unwrap().n_samples, 6000);
    assert!(e.is_online && !e.is_experiment_running);
    assert_eq!(e.experiment_name, "");
    let valid = e.valid_duration.unwrap();
    assert_eq!((valid.seconds, valid.nanos), (1, 0), "valid for two periods");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((e.last_updated.unwrap().seconds - now).abs() <= 2);

    // A health check from an envoy that never registered: NOT_FOUND.
    assert_error(within(10, d.envoy("col2").send_health_check(false, vec![])).await, ofl_code::NotFound, "col2");

    // No health check for more than two periods: offline; one more: online.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(!within(10, alice.get_envoys()).await.unwrap()[0].is_online);
    let gpu = openfl_transport::proto::director::CudaDeviceInfo {
        index: 0,
        memory_total: 16 << 30,
        name: "Tesla".into(),
        ..Default::default()
    };
    let period = within(10, col1.send_health_check(true, vec![gpu])).await.unwrap();
    assert_eq!(period, Duration::from_millis(500));
    let e = &within(10, alice.get_envoys()).await.unwrap()[0];
    assert!(e.is_online && e.is_experiment_running);
    let devices = &e.shard_info.as_ref().unwrap().node_info.as_ref().unwrap().cuda_devices;
    assert_eq!((devices.len(), devices[0].name.as_str(), devices[0].memory_total), (1, "Tesla", 16 << 30));

    // Under mTLS an envoy must be the one its certificate names.
    let impostor = d.envoy_as("col2", "col1");
    assert_error(within(10, impostor.report_shard_info(shard(None))).await, ofl_code::PermissionDenied, "col1");
    assert_error(within(10, impostor.wait_experiment()).await, ofl_code::PermissionDenied, "col2");
    // ... except that a health check for an envoy that is not registered is
    // NOT_FOUND whoever asks, as OpenFL answers (its envoy client turns that
    // into ShardNotFoundError and reports its shard again).
    assert_error(within(10, impostor.send_health_check(false, vec![])).await, ofl_code::NotFound, "Unknown shard col2");
    register(&d, "col2").await;
    assert_error(within(10, impostor.send_health_check(false, vec![])).await, ofl_code::PermissionDenied, "col2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_runs_from_submission_to_removal() {
    let d = start_mtls().await;
    register(&d, "col1").await;
    register(&d, "col2").await;
    let alice = d.frontend("alice");
    let (col1, col2) = (d.envoy("col1"), d.envoy("col2"));

    // Both envoys wait before anything is submitted.
    let wait1 = tokio::spawn(async move { (col1.wait_experiment().await, Instant::now(), col1) });
    let wait2 = tokio::spawn(async move { (col2.wait_experiment().await, Instant::now(), col2) });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let archive = d.archive("mnist", 5 << 20, 3);
    let initial = model(1024, 4);
    let submitted = Instant::now();
    assert!(within(20, alice.set_new_experiment("mnist", &names(&["col1", "col2"]), &archive, Some(&initial)))
        .await
        .unwrap());

    // The waiting envoys are woken at once (OpenFL 1.6: up to 10 s later).
    let (got1, at1, col1) = within(10, wait1).await.unwrap();
    let (got2, at2, col2) = within(10, wait2).await.unwrap();
    assert_eq!((got1.unwrap().as_str(), got2.unwrap().as_str()), ("mnist", "mnist"));
    assert!(at1.max(at2) - submitted < Duration::from_secs(2), "waiters must be woken on submission");
    assert_eq!(within(10, alice.get_experiment_status("mnist")).await.unwrap(), ExperimentStatus::InProgress);

    // The host heard about it, with its collaborators, archive and model.
    {
        let started = d.hooks.started.lock().unwrap();
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].name, "mnist");
        assert_eq!(started[0].owner, "alice");
        assert_eq!(started[0].collaborators, names(&["col1", "col2"]));
        assert_eq!(started[0].archive_size, 5 << 20);
        assert_eq!(started[0].initial_model.as_ref(), Some(&initial));
        assert_eq!(*d.hooks.reviewed.lock().unwrap(), names(&["mnist"]));
    }
    let envoys = within(10, alice.get_envoys()).await.unwrap();
    assert!(envoys.iter().all(|e| e.experiment_name == "mnist"));

    // An envoy that reconnects while the experiment runs gets it again.
    assert_eq!(within(5, col1.wait_experiment()).await.unwrap(), "mnist");

    // Both download the archive byte-identical.
    for (envoy, file) in [(&col1, "col1.bin"), (&col2, "col2.bin")] {
        let dest = d.dir.path().join(file);
        assert_eq!(within(30, envoy.get_experiment_data("mnist", &dest)).await.unwrap(), 5 << 20);
        assert_bytes_eq(&std::fs::read(&dest).unwrap(), &pattern(5 << 20, 3));
    }
    let snapshot = d.handle().experiment("mnist").unwrap();
    assert_eq!(snapshot.downloads.iter().cloned().collect::<Vec<_>>(), names(&["col1", "col2"]));

    // Before the host reports anything: models pending, no model to get.
    let description = within(10, alice.get_experiment_description("mnist")).await.unwrap();
    assert_eq!(description.status, "in_progress");
    let models = &description.download_statuses.as_ref().unwrap().models;
    let statuses: Vec<_> = models.iter().map(|m| (m.name.as_str(), m.status.as_str())).collect();
    assert_eq!(statuses, vec![("best", "pending"), ("last", "pending"), ("init", "ready")]);
    assert_eq!(description.collaborators.len(), 2);
    assert!(description.collaborators.iter().all(|c| c.status == "running"));
    assert_eq!(within(10, alice.get_best_model("mnist")).await.unwrap(), None);
    assert_eq!(within(10, alice.get_last_model("mnist")).await.unwrap(), None);

    // Metrics stream while the host reports progress; the stream ends with the experiment.
    let streamer = d.frontend("alice");
    let stream = tokio::spawn(async move {
        let mut seen = Vec::new();
        let result = streamer
            .stream_metrics("mnist", |m| {
                seen.push(m);
                true
            })
            .await;
        (result, seen)
    });
    let h = d.handle();
    h.set_tasks("mnist", vec![("train".into(), "local training".into()), ("validate".into(), "".into())]).unwrap();
    for round in 0..3u32 {
        h.set_round("mnist", round + 1, 3).unwrap();
        h.push_metric("mnist", metric("accuracy", 0.5 + round as f32 / 10.0, round)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = within(10, alice.get_experiments_list()).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].name.as_str(), list[0].status.as_str()), ("mnist", "in_progress"));
    assert_eq!((list[0].collaborators_amount, list[0].tasks_amount, list[0].progress), (2, 2, 1.0));
    let best = model(1024, 5);
    let last = model(1024, 6);
    h.set_best_model("mnist", best.clone()).unwrap();
    h.set_last_model("mnist", last.clone()).unwrap();
    h.mark_finished("mnist").unwrap();

    let (result, seen) = within(10, stream).await.unwrap();
    result.unwrap();
    assert_eq!(seen, (0..3).map(|r| metric("accuracy", 0.5 + r as f32 / 10.0, r)).collect::<Vec<_>>());
    assert_eq!(within(10, alice.get_experiment_status("mnist")).await.unwrap(), ExperimentStatus::Finished);
    assert_eq!(within(10, alice.get_best_model("mnist")).await.unwrap(), Some(best));
    assert_eq!(within(10, alice.get_last_model("mnist")).await.unwrap(), Some(last));
    let description = within(10, alice.get_experiment_description("mnist")).await.unwrap();
    assert_eq!((description.status.as_str(), description.progress), ("finished", 1.0));
    assert_eq!((description.current_round, description.total_rounds), (3, 3));
    assert_eq!(description.tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["train", "validate"]);
    assert!(description.collaborators.iter().all(|c| c.status == "finished"));

    // A finished experiment is neither served nor handed out again.
    let late = d.dir.path().join("late.bin");
    assert_error(within(10, col1.get_experiment_data("mnist", &late)).await, ofl_code::FailedPrecondition, "finished");
    assert!(!late.exists() && !d.dir.path().join("late.bin.part").exists());
    assert!(tokio::time::timeout(Duration::from_millis(300), col1.wait_experiment()).await.is_err());
    assert_eq!(within(10, alice.get_envoys()).await.unwrap()[0].experiment_name, "");

    // Removal forgets it and deletes its archive.
    let stored = d.archive_dir().join("mnist.archive");
    assert!(stored.exists());
    assert!(within(10, alice.remove_experiment_data("mnist")).await.unwrap());
    assert!(!stored.exists());
    assert_error(within(10, alice.get_experiment_status("mnist")).await, ofl_code::NotFound, "mnist");
    assert!(within(10, alice.get_experiments_list()).await.unwrap().is_empty());
    // Removing it again: a no-op acknowledged, as OpenFL does.
    assert!(within(10, alice.remove_experiment_data("mnist")).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_run_one_at_a_time_in_submission_order() {
    let d = start_mtls().await;
    register(&d, "col1").await;
    submit(&d, "alice", "first", &["col1"]).await;
    submit(&d, "alice", "second", &["col1"]).await;
    wait_status(&d, "first", ExperimentStatus::InProgress).await;
    let alice = d.frontend("alice");
    assert_eq!(within(10, alice.get_experiment_status("second")).await.unwrap(), ExperimentStatus::Pending);
    let col1 = d.envoy("col1");
    assert_eq!(within(10, col1.wait_experiment()).await.unwrap(), "first");

    // A pending experiment's archive is not served, a running one cannot be removed.
    let dest = d.dir.path().join("x.bin");
    assert_error(within(10, col1.get_experiment_data("second", &dest)).await, ofl_code::FailedPrecondition, "pending");
    // Before it starts (OpenFL 1.6: UNKNOWN AttributeError, no aggregator yet):
    // described, no model, cannot be failed by an envoy.
    let description = within(10, alice.get_experiment_description("second")).await.unwrap();
    assert_eq!((description.status.as_str(), description.progress, description.total_rounds), ("pending", 0.0, 0));
    assert!(description.collaborators.iter().all(|c| c.status == "pending"));
    assert_eq!(within(10, alice.get_best_model("second")).await.unwrap(), None);
    assert_error(
        within(10, col1.set_experiment_failed("second", 1, "")).await,
        ofl_code::FailedPrecondition,
        "pending",
    );
    assert_error(within(10, alice.remove_experiment_data("first")).await, ofl_code::FailedPrecondition, "first");

    // Finish first, then wait: a wait that reaches the director while "first"
    // still runs is answered "first" again (an envoy reconnecting into a
    // running experiment gets it back), which made this test racy.
    d.handle().mark_finished("first").unwrap();
    assert_eq!(within(10, col1.wait_experiment()).await.unwrap(), "second");
    assert_eq!(within(10, alice.get_experiment_status("second")).await.unwrap(), ExperimentStatus::InProgress);
    let list: Vec<_> =
        within(10, alice.get_experiments_list()).await.unwrap().into_iter().map(|e| (e.name, e.status)).collect();
    assert_eq!(list, vec![("first".into(), "finished".into()), ("second".into(), "in_progress".into())]);

    // A pending experiment can be removed before it starts.
    submit(&d, "alice", "third", &["col1"]).await;
    assert!(within(10, alice.remove_experiment_data("third")).await.unwrap());
    assert!(!d.archive_dir().join("third.archive").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_hook_rejects_and_a_failing_start_fails() {
    let d = start_mtls().await;
    register(&d, "col1").await;
    submit(&d, "alice", "reject-me", &["col1"]).await;
    wait_status(&d, "reject-me", ExperimentStatus::Rejected).await;
    let alice = d.frontend("alice");
    assert_eq!(within(10, alice.get_experiment_status("reject-me")).await.unwrap(), ExperimentStatus::Rejected);
    assert!(!d.archive_dir().join("reject-me.archive").exists(), "a rejected archive is deleted");
    assert!(d.hooks.started.lock().unwrap().is_empty());
    let dest = d.dir.path().join("x.bin");
    assert_error(
        within(10, d.envoy("col1").get_experiment_data("reject-me", &dest)).await,
        ofl_code::FailedPrecondition,
        "rejected",
    );

    // The host cannot start it: failed, and the next one runs.
    submit(&d, "alice", "nostart", &["col1"]).await;
    submit(&d, "alice", "after", &["col1"]).await;
    wait_status(&d, "nostart", ExperimentStatus::Failed).await;
    assert_eq!(within(10, d.envoy("col1").wait_experiment()).await.unwrap(), "after");
    assert!(d.handle().experiment("nostart").unwrap().failure.unwrap().description.contains("plan does not parse"));

    // Rejected and failed experiments can be removed.
    assert!(within(10, alice.remove_experiment_data("reject-me")).await.unwrap());
    assert!(within(10, alice.remove_experiment_data("nostart")).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_fails_an_experiment() {
    let d = start_mtls().await;
    register(&d, "col1").await;
    register(&d, "col2").await;
    submit(&d, "alice", "doomed", &["col1"]).await;
    submit(&d, "alice", "next", &["col2"]).await;
    let col1 = d.envoy("col1");
    assert_eq!(within(10, col1.wait_experiment()).await.unwrap(), "doomed");
    let streamer = d.frontend("alice");
    let stream = tokio::spawn(async move { streamer.stream_metrics("doomed", |_| true).await });

    // Only the envoy itself may fail it (OpenFL 1.6 never honours this under TLS).
    let request = |collaborator: &str| SetExperimentFailedRequest {
        experiment_name: "doomed".into(),
        collaborator_name: collaborator.into(),
        error_code: 7,
        error_description: "out of memory".into(),
    };
    assert_status(
        within(10, d.raw("alice").set_experiment_failed(request("col1"))).await,
        Code::PermissionDenied,
        "alice",
    );
    assert_status(
        within(10, d.raw("col2").set_experiment_failed(request("col1"))).await,
        Code::PermissionDenied,
        "col2",
    );
    // col2 is not a collaborator of "doomed".
    assert_status(
        within(10, d.raw("col2").set_experiment_failed(request("col2"))).await,
        Code::PermissionDenied,
        "not a collaborator",
    );
    assert_error(within(10, col1.set_experiment_failed("nope", 1, "")).await, ofl_code::NotFound, "nope");
    assert_eq!(d.handle().experiment_status("doomed"), Some(ExperimentStatus::InProgress));

    within(10, col1.set_experiment_failed("doomed", 7, "out of memory")).await.unwrap();
    let alice = d.frontend("alice");
    assert_eq!(within(10, alice.get_experiment_status("doomed")).await.unwrap(), ExperimentStatus::Failed);
    // Idempotent.
    within(10, col1.set_experiment_failed("doomed", 7, "again")).await.unwrap();
    within(10, stream).await.unwrap().unwrap();
    let handle = d.handle();
    within(10, handle.wait_until(|_| !d.hooks.failures.lock().unwrap().is_empty())).await;
    let failures = d.hooks.failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "doomed");
    assert_eq!((failures[0].1.collaborator.as_str(), failures[0].1.error_code), ("col1", 7));
    assert_eq!(failures[0].1.description, "out of memory");
    let description = within(10, alice.get_experiment_description("doomed")).await.unwrap();
    assert_eq!(description.collaborators[0].status, "failed");

    // The failure frees the director for the next experiment.
    assert_eq!(within(10, d.envoy("col2").wait_experiment()).await.unwrap(), "next");
    // A failed experiment cannot finish.
    assert_error(d.handle().mark_finished("doomed"), ofl_code::FailedPrecondition, "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_see_only_their_own_experiments() {
    let d = start_mtls().await;
    register(&d, "col1").await;
    submit(&d, "alice", "secret", &["col1"]).await;
    wait_status(&d, "secret", ExperimentStatus::InProgress).await;
    d.handle().set_best_model("secret", model(16, 1)).unwrap();
    let (alice, bob) = (d.frontend("alice"), d.frontend("bob"));

    assert_eq!(within(10, alice.get_experiments_list()).await.unwrap().len(), 1);
    assert!(within(10, bob.get_experiments_list()).await.unwrap().is_empty());
    // Our client reports the empty status OpenFL's director answers as NOT_FOUND.
    assert_error(within(10, bob.get_experiment_status("secret")).await, ofl_code::NotFound, "secret");
    assert_error(within(10, bob.get_experiment_description("secret")).await, ofl_code::NotFound, "secret");
    assert_error(within(10, bob.get_best_model("secret")).await, ofl_code::NotFound, "secret");
    assert_error(within(10, bob.stream_metrics("secret", |_| true)).await, ofl_code::NotFound, "secret");
    assert!(within(10, alice.get_best_model("secret")).await.unwrap().is_some());

    // On the wire, as OpenFL 1.6 answers (its client raises on anything
    // else): another caller's (or an unknown) experiment has an empty status,
    // and removing it is a no-op acknowledged with true.
    let mut raw_bob = d.raw("bob");
    for name in ["secret", "unknown"] {
        let request = GetExperimentStatusRequest { experiment_name: name.into() };
        let status = within(10, raw_bob.get_experiment_status(request)).await.expect("OK, as OpenFL");
        assert_eq!(status.into_inner().experiment_status, "", "{name}");
        let request = RemoveExperimentRequest { experiment_name: name.into() };
        let removed = within(10, raw_bob.remove_experiment_data(request)).await.expect("OK, as OpenFL");
        assert!(removed.into_inner().acknowledgement, "{name}");
    }
    assert!(within(10, bob.remove_experiment_data("secret")).await.unwrap());
    assert_eq!(within(10, alice.get_experiment_status("secret")).await.unwrap(), ExperimentStatus::InProgress);
    assert!(d.archive_dir().join("secret.archive").exists(), "bob removed nothing");

    // Names are global: bob cannot reuse alice's.
    let archive = d.archive("bob", 10, 1);
    assert_error(
        within(10, bob.set_new_experiment("secret", &names(&["col1"]), &archive, None)).await,
        ofl_code::AlreadyExists,
        "secret",
    );
    // An envoy's certificate is a caller too: it sees nothing.
    assert!(within(
        10,
        d.raw("col1").get_experiments_list(openfl_transport::proto::director::GetExperimentsListRequest {})
    )
    .await
    .unwrap()
    .into_inner()
    .experiments
    .is_empty());
}

fn info(name: &str, data: &[u8], declared: u32) -> ExperimentInfo {
    ExperimentInfo {
        name: name.into(),
        collaborator_names: names(&["col1"]),
        experiment_data: Some(ExperimentData { size: declared, npbytes: Bytes::copy_from_slice(data) }),
        model_proto: None,
    }
}

fn leftover_uploads(d: &Director) -> Vec<String> {
    std::fs::read_dir(d.archive_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_exact_codes_and_leave_no_file() {
    let d = start_with(true, |c| c.max_archive_size = 1 << 20).await;
    let alice = d.frontend("alice");
    let archive = d.archive("small", 1000, 2);
    let cols = names(&["col1"]);

    for bad in ["../evil", "a/b", "..", ".hidden", "x\0y", "back\\slash", ""] {
        let e = assert_error(
            within(10, alice.set_new_experiment(bad, &cols, &archive, None)).await,
            ofl_code::InvalidArgument,
            "",
        );
        assert!(e.message().contains("experiment name"), "{bad:?}: {e}");
    }
    assert!(!d.dir.path().join("evil.archive").exists());
    assert_error(
        within(10, alice.set_new_experiment("nocols", &[], &archive, None)).await,
        ofl_code::InvalidArgument,
        "no collaborators",
    );
    assert_error(
        within(10, alice.set_new_experiment("emptycol", &names(&["col1", ""]), &archive, None)).await,
        ofl_code::InvalidArgument,
        "empty name",
    );
    let long_name = "c".repeat(MAX_COLLABORATOR_NAME_LEN + 1);
    assert_error(
        within(10, alice.set_new_experiment("longcol", &[long_name], &archive, None)).await,
        ofl_code::InvalidArgument,
        "at most 1024",
    );
    let empty = d.archive("empty", 0, 0);
    assert_error(
        within(10, alice.set_new_experiment("empty", &cols, &empty, None)).await,
        ofl_code::InvalidArgument,
        "empty",
    );
    let big = d.archive("big", 3 << 20, 1);
    assert_error(
        within(20, alice.set_new_experiment("big", &cols, &big, None)).await,
        ofl_code::ResourceExhausted,
        "maximum archive size",
    );
    let missing = d.dir.path().join("missing.zip");
    assert_error(
        within(10, alice.set_new_experiment("missing", &cols, &missing, None)).await,
        ofl_code::Io,
        "missing.zip",
    );

    // Raw streams OpenFL's client would not send.
    let mut raw = d.raw("alice");
    let no_messages: Vec<ExperimentInfo> = vec![];
    assert_status(
        within(10, raw.set_new_experiment(tokio_stream::iter(no_messages))).await,
        Code::InvalidArgument,
        "empty stream",
    );
    let zero = vec![info("zero", b"", 0), info("zero", b"", 0)];
    assert_status(
        within(10, raw.set_new_experiment(tokio_stream::iter(zero))).await,
        Code::InvalidArgument,
        "empty archive",
    );
    // OpenFL 1.6's director refuses such a chunk too (it raises: UNKNOWN).
    let lying = vec![info("lying", b"abcd", 4), info("lying", b"abcd", 5)];
    assert_status(
        within(10, raw.set_new_experiment(tokio_stream::iter(lying))).await,
        Code::InvalidArgument,
        "chunk 1: size field says 5",
    );
    let renamed = vec![info("one", b"abcd", 4), info("two", b"abcd", 4)];
    assert_status(
        within(10, raw.set_new_experiment(tokio_stream::iter(renamed))).await,
        Code::InvalidArgument,
        "differs",
    );
    let bad_request = GetTrainedModelRequest { experiment_name: "x".into(), model_type: 7 };
    assert_status(within(10, raw.get_trained_model(bad_request)).await, Code::InvalidArgument, "model_type 7");

    // Duplicates.
    assert!(within(10, alice.set_new_experiment("dup", &cols, &archive, None)).await.unwrap());
    assert_error(
        within(10, alice.set_new_experiment("dup", &cols, &archive, None)).await,
        ofl_code::AlreadyExists,
        "dup",
    );

    // Nothing but the accepted archive is left behind.
    assert!(leftover_uploads(&d).is_empty(), "{:?}", leftover_uploads(&d));
    let stored: Vec<_> = std::fs::read_dir(d.archive_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(stored, vec![std::ffi::OsString::from("dup.archive")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_envoy_requests_get_exact_codes() {
    let d = start_mtls().await;
    register(&d, "col1").await;
    submit(&d, "alice", "exp", &["col1"]).await;
    wait_status(&d, "exp", ExperimentStatus::InProgress).await;
    let dest = d.dir.path().join("x.bin");

    assert_error(within(10, d.envoy("col1").get_experiment_data("nope", &dest)).await, ofl_code::NotFound, "nope");
    assert_error(
        within(10, d.envoy("col2").get_experiment_data("exp", &dest)).await,
        ofl_code::PermissionDenied,
        "not a collaborator",
    );
    assert_error(
        within(10, d.envoy_as("col1", "col2").get_experiment_data("exp", &dest)).await,
        ofl_code::PermissionDenied,
        "col2",
    );
    let mut raw = d.raw("col1");
    let empty_name = WaitExperimentRequest { collaborator_name: String::new() };
    assert_status(within(10, raw.wait_experiment(empty_name)).await, Code::InvalidArgument, "empty");
    let request = GetExperimentDataRequest { experiment_name: "exp".into(), collaborator_name: String::new() };
    assert_status(within(10, raw.get_experiment_data(request)).await, Code::InvalidArgument, "empty");
    assert!(!dest.exists());

    // A certificate from another CA is refused at the handshake, not retried.
    let mut config = openfl_transport::director::FrontendClientOptions::new("127.0.0.1", d.port());
    let p = pki();
    config.connect.tls = Some(openfl_transport::tls::TlsConfig {
        certificate: Some(openfl_transport::tls::PemSource::Pem(p.foreign_alice.cert.clone().into_bytes())),
        private_key: Some(openfl_transport::tls::PemSource::Pem(p.foreign_alice.key.clone().into_bytes())),
        ..client_tls(&p.alice)
    });
    config.connect.server_name = Some("localhost".into());
    // Under TLS 1.3 the rejection may first look like a dropped connection
    // (retried) before the alert is seen: give it a retry budget, as the
    // aggregator TLS tests do.
    config.retry = patient_retry();
    let foreign = openfl_transport::director::FrontendClient::new(config).unwrap();
    assert_error(within(30, foreign.get_experiments_list()).await, ofl_code::Tls, "");
}

// ---------------------------------------------------------------------------
// A huge collaborator list (issue 10, item 3)
// ---------------------------------------------------------------------------

/// A Tokio runtime shut down in the background when dropped, so that a
/// worker a bug keeps busy does not hold up the end of the test.
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn runtime() -> BackgroundRuntime {
    BackgroundRuntime(Some(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()))
}

/// Collaborator names were deduplicated with `Vec::contains` on an async
/// worker: 300k names held a worker for about 100 s, and two such
/// submissions stalled the director. Now a list over the bound is refused at
/// once (RESOURCE_EXHAUSTED), a list at the bound is deduplicated in linear
/// time, and another RPC is answered meanwhile.
#[test]
fn huge_collaborator_lists_neither_stall_the_director_nor_pass() {
    // The director on a runtime of its own: a worker it blocks cannot stop
    // the test's clock.
    let server_runtime = runtime();
    let d = server_runtime.0.as_ref().unwrap().block_on(start_with(false, |_| {}));
    let client_runtime = runtime();
    client_runtime.0.as_ref().unwrap().block_on(async {
        let huge: Vec<String> = (0..300_000).map(|i| format!("envoy-{i:06}")).collect();
        let submit = |name: &str, collaborator_names: Vec<String>| {
            let mut raw = d.raw("alice");
            let message = ExperimentInfo {
                name: name.into(),
                collaborator_names,
                experiment_data: Some(ExperimentData { size: 4, npbytes: Bytes::from_static(b"abcd") }),
                model_proto: None,
            };
            tokio::spawn(async move { raw.set_new_experiment(tokio_stream::iter(vec![message])).await })
        };
        let submissions = [submit("huge1", huge.clone()), submit("huge2", huge)];

        // Meanwhile GetDatasetInfo is answered, each time well under a second.
        let mut raw = d.raw("alice");
        let started = Instant::now();
        let mut answered = 0;
        while answered < 3 || submissions.iter().any(|s| !s.is_finished()) {
            assert!(started.elapsed() < Duration::from_secs(30), "the submissions were not answered in 30 s");
            let asked = Instant::now();
            let reply = tokio::time::timeout(Duration::from_secs(1), raw.get_dataset_info(GetDatasetInfoRequest {}))
                .await
                .unwrap_or_else(|_| panic!("GetDatasetInfo not answered within 1 s (call {answered}): a worker is held"));
            reply.expect("GetDatasetInfo");
            assert!(asked.elapsed() < Duration::from_secs(1));
            answered += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for submission in submissions {
            assert_status(submission.await.unwrap(), Code::ResourceExhausted, "at most 10000");
        }

        // At the bound (with duplicates beyond it refused by count): accepted,
        // deduplicated in order.
        let mut at_bound: Vec<String> = (0..MAX_COLLABORATORS - 2).map(|i| format!("envoy-{i:05}")).collect();
        at_bound.push("envoy-00000".into());
        at_bound.push("envoy-00001".into());
        let accepted = within(20, submit("bound", at_bound)).await.unwrap();
        assert!(accepted.expect("a list at the bound is accepted").into_inner().accepted);
        let info = d.handle().experiment("bound").expect("registered").info;
        assert_eq!(info.collaborators.len(), MAX_COLLABORATORS - 2);
        assert_eq!(info.collaborators[..2], ["envoy-00000".to_string(), "envoy-00001".to_string()]);
    });
    d.server.stop();
}
