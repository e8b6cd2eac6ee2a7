//! A 100 MiB experiment archive over mTLS: uploaded by a frontend, stored,
//! downloaded by an envoy byte-identical, streamed in chunks of at most
//! 2 MiB each way.

mod common;
mod director_common;

use std::time::Instant;

use common::{assert_bytes_eq, pattern, within};
use director_common::*;
use openfl_transport::director::ExperimentStatus;
use openfl_transport::proto::director::GetExperimentDataRequest;

const SIZE: usize = 100 << 20;
const CHUNK: usize = 2 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_archive_goes_up_and_down_byte_identical() {
    let d = start_mtls().await;
    assert!(within(10, d.envoy("col1").report_shard_info(shard(None))).await.unwrap());
    let archive = d.archive("big", SIZE, 11);
    let initial = model(4 << 20, 12);

    let started = Instant::now();
    let alice = d.frontend("alice");
    assert!(within(120, alice.set_new_experiment("big", &names(&["col1"]), &archive, Some(&initial))).await.unwrap());
    let up = started.elapsed();
    let stored = d.archive_dir().join("big.archive");
    assert_bytes_eq(&std::fs::read(&stored).unwrap(), &pattern(SIZE, 11));
    // The model rode along once and was kept intact.
    let handle = d.handle();
    within(10, handle.wait_until(|h| h.experiment_status("big") == Some(ExperimentStatus::InProgress))).await;
    assert_eq!(d.hooks.started.lock().unwrap()[0].initial_model.as_ref(), Some(&initial));

    let col1 = d.envoy("col1");
    assert_eq!(within(10, col1.wait_experiment()).await.unwrap(), "big");
    let dest = d.dir.path().join("downloaded.zip");
    let started = Instant::now();
    assert_eq!(within(120, col1.get_experiment_data("big", &dest)).await.unwrap(), SIZE as u64);
    let down = started.elapsed();
    assert_bytes_eq(&std::fs::read(&dest).unwrap(), &pattern(SIZE, 11));
    eprintln!(
        "100 MiB archive over mTLS (debug build): up {:.0} MiB/s, down {:.0} MiB/s",
        100.0 / up.as_secs_f64(),
        100.0 / down.as_secs_f64()
    );

    // On the wire: full 2 MiB chunks, then the rest, each size field exact.
    let mut raw = d.raw("col1");
    let request = GetExperimentDataRequest { experiment_name: "big".into(), collaborator_name: "col1".into() };
    let mut stream = within(10, raw.get_experiment_data(request)).await.unwrap().into_inner();
    let mut sizes = Vec::new();
    while let Some(chunk) = within(60, stream.message()).await.unwrap() {
        assert_eq!(chunk.size as usize, chunk.npbytes.len());
        sizes.push(chunk.npbytes.len());
    }
    assert_eq!(sizes.len(), SIZE / CHUNK);
    assert!(sizes.iter().all(|&s| s == CHUNK));
}
