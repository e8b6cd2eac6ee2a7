//! Stalled archive downloads (issue 10, item 4): clients that open
//! GetExperimentData and never read. Each such download held about 10 MiB
//! of the director (100 of them: 17 MiB → 1 GiB). Raw HTTP/2 clients (the
//! `h2` crate, default 64 KiB windows) keep the streams open without
//! releasing flow-control capacity; the director's memory is the test
//! process's resident set, measured before and after.
//!
//! One test in this file, so that no other test's memory moves the measure.

mod common;
mod director_common;
mod raw_h2;

use std::time::{Duration, Instant};

use common::{assert_bytes_eq, pattern, within};
use director_common::*;
use openfl_transport::director::ExperimentStatus;
use openfl_transport::proto::director::{GetDatasetInfoRequest, GetExperimentDataRequest};

const MIB: usize = 1 << 20;
const ARCHIVE: usize = 32 * MIB;
const STALLED: usize = 100;
const PATH: &str = "/openfl.director.Director/GetExperimentData";

/// The resident set of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: usize = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

/// A director without TLS (the raw clients speak plaintext HTTP/2) serving
/// the ARCHIVE-byte archive "big" to envoy col1.
async fn director_serving_archive(max_download_buffer: usize) -> Director {
    let d = start_with(false, |c| c.max_download_buffer = max_download_buffer).await;
    assert!(within(10, d.envoy("col1").report_shard_info(shard(None))).await.unwrap());
    let archive = d.archive("big", ARCHIVE, 5);
    assert!(within(60, d.frontend("alice").set_new_experiment("big", &names(&["col1"]), &archive, None))
        .await
        .unwrap());
    let handle = d.handle();
    within(10, handle.wait_until(|h| h.experiment_status("big") == Some(ExperimentStatus::InProgress))).await;
    d
}

/// A download on a connection of its own whose response head arrived and
/// whose body is never read (no flow-control capacity is released).
/// Dropping it resets the stream and closes the connection.
struct Stalled {
    _send: h2::client::SendRequest<bytes::Bytes>,
    _body: h2::RecvStream,
}

async fn stall(port: u16) -> Stalled {
    let mut send = raw_h2::connect(port).await;
    let mut call = raw_h2::start_call(&mut send, PATH, &[]).await;
    let request = GetExperimentDataRequest { experiment_name: "big".into(), collaborator_name: "col1".into() };
    call.send_message(&request, true);
    let response = within(10, call.response).await.expect("a response head");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("grpc-status").is_none(), "a trailers-only error: {response:?}");
    Stalled { _send: send, _body: response.into_body() }
}

async fn download_ok(d: &Director, secs: u64) {
    let dest = d.dir.path().join("normal.zip");
    let _ = std::fs::remove_file(&dest);
    assert_eq!(within(secs, d.envoy("col1").get_experiment_data("big", &dest)).await.unwrap(), ARCHIVE as u64);
    assert_bytes_eq(&std::fs::read(&dest).unwrap(), &pattern(ARCHIVE, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_downloads_hold_bounded_memory_and_others_proceed() {
    // Part 1: the default budget. 100 stalled downloads of a 32 MiB archive.
    let d = director_serving_archive(openfl_transport::director::DirectorServerOptions::default().max_download_buffer).await;
    download_ok(&d, 60).await; // warms up every path once
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss();
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        stalled.push(stall(d.port()).await);
    }
    // Let the director read ahead as far as it will.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss().saturating_sub(before);
    eprintln!("{STALLED} stalled downloads: resident set grew by {:.1} MiB", grown as f64 / MIB as f64);
    // Each stalled download used to hold about 10 MiB (1 GiB in all); now
    // about two 64 KiB pieces, plus each connection's buffers on both sides.
    assert!(grown < 150 * MIB, "{STALLED} stalled downloads grew the resident set by {} MiB", grown / MIB);

    // Meanwhile other calls are answered and a normal download completes.
    let mut raw = d.raw("alice");
    let asked = Instant::now();
    within(5, raw.get_dataset_info(GetDatasetInfoRequest {})).await.unwrap();
    assert!(asked.elapsed() < Duration::from_secs(1), "GetDatasetInfo took {:?}", asked.elapsed());
    download_ok(&d, 60).await;
    drop(stalled);
    d.server.stop();

    // Part 2: a budget of four 64 KiB pieces. Two stalled downloads hold it
    // all (a piece partly sent, the next waiting for window): nothing more is
    // read for anyone, so a third download makes no progress ...
    let d = director_serving_archive(256 << 10).await;
    let hogs = [stall(d.port()).await, stall(d.port()).await];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dest = d.dir.path().join("starved.zip");
    let starved = tokio::time::timeout(Duration::from_secs(1), d.envoy("col1").get_experiment_data("big", &dest)).await;
    assert!(starved.is_err(), "a download proceeded past a budget held by stalled ones: {starved:?}");
    // ... until they are gone: their pieces are released with their streams.
    drop(hogs);
    download_ok(&d, 60).await;
}
