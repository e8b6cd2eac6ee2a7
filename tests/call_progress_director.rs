//! Per-call settings on the director's clients (issue 9, items 1 and 5):
//! archive upload and download progress, aborts that leave nothing behind,
//! and a time limit on WaitExperiment's long poll.

mod common;
mod director_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assert_bytes_eq, assert_error, pattern, within};
use director_common::*;
use openfl_transport::director::ExperimentStatus;
use openfl_transport::{ofl_code, CallOptions, PROGRESS_STEP};

const SIZE: usize = 20 << 20;

/// Progress reports `(bytes_done, bytes_total)` as recorded.
type Reports = Arc<Mutex<Vec<(u64, u64)>>>;

fn recorder() -> (Reports, CallOptions) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let options = CallOptions::default().progress(move |done, total| {
        log.lock().unwrap().push((done, total));
        true
    });
    (seen, options)
}

#[track_caller]
fn assert_progress(reports: &[(u64, u64)], total: u64, total_known: bool) {
    assert!(reports.len() >= 4, "too few reports: {reports:?}");
    assert_eq!(*reports.last().unwrap(), (total, total), "{reports:?}");
    for pair in reports.windows(2) {
        assert!(pair[1].0 >= pair[0].0 + PROGRESS_STEP || pair[1] == (total, total), "{reports:?}");
    }
    let expected_total = if total_known { total } else { 0 };
    assert!(reports[..reports.len() - 1].iter().all(|r| r.1 == expected_total), "{reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_transfers_report_progress_and_aborts_leave_nothing() {
    let d = start_with(false, |_| {}).await;
    assert!(within(10, d.envoy("col1").report_shard_info(shard(None))).await.unwrap());
    let archive = d.archive("exp", SIZE, 5);
    let alice = d.frontend("alice");

    // An upload aborted by its progress callback registers nothing.
    let stop = CallOptions::default().progress(|done, _| done < 2 * PROGRESS_STEP);
    let result = within(30, alice.set_new_experiment_with("exp", &names(&["col1"]), &archive, None, &stop)).await;
    assert_error(result, ofl_code::Cancelled, "the progress callback asked to stop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(within(10, alice.get_experiments_list()).await.unwrap().is_empty(), "an aborted upload registered");

    let (seen, options) = recorder();
    assert!(within(60, alice.set_new_experiment_with("exp", &names(&["col1"]), &archive, None, &options))
        .await
        .unwrap());
    assert_progress(&seen.lock().unwrap(), SIZE as u64, true);
    within(10, d.handle().wait_until(|h| h.experiment_status("exp") == Some(ExperimentStatus::InProgress))).await;

    let col1 = d.envoy("col1");
    assert_eq!(within(10, col1.wait_experiment()).await.unwrap(), "exp");
    let dest = d.dir.path().join("downloaded.zip");
    let stop = CallOptions::default().progress(|done, _| done < 2 * PROGRESS_STEP);
    let result = within(30, col1.get_experiment_data_with("exp", &dest, &stop)).await;
    assert_error(result, ofl_code::Cancelled, "the progress callback asked to stop");
    assert!(!dest.exists());

    let (seen, options) = recorder();
    assert_eq!(within(60, col1.get_experiment_data_with("exp", &dest, &options)).await.unwrap(), SIZE as u64);
    assert_bytes_eq(&std::fs::read(&dest).unwrap(), &pattern(SIZE, 5));
    assert_progress(&seen.lock().unwrap(), SIZE as u64, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_limit_ends_the_wait_for_an_experiment() {
    let d = start_with(false, |_| {}).await;
    let col1 = d.envoy("col1");
    assert!(within(10, col1.report_shard_info(shard(None))).await.unwrap());
    let started = Instant::now();
    let options = CallOptions::default().timeout(Duration::from_millis(400));
    let result = within(10, col1.wait_experiment_with(&options)).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(380) && took < Duration::from_millis(1500), "took {took:?}");
    assert_error(result, ofl_code::DeadlineExceeded, "WaitExperiment: not done within its call timeout of 400 ms");
}
