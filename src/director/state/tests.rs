//! The state's behaviour, one concern per test: envoy registry and health,
//! the experiment life cycle and queues, metric streams, the archive store.

use std::path::Path;
use std::time::Duration;

use super::{DirectorState, MetricPoll, StateConfig};
use crate::director::types::{CudaDevice, DirectorMetric, ExperimentStatus, ShardDetails};
use crate::error::ofl_code;

fn state(dir: &Path) -> DirectorState {
    DirectorState::new(StateConfig {
        archive_dir: dir.to_path_buf(),
        sample_shape: vec!["28".into(), "28".into()],
        target_shape: vec!["1".into()],
        envoy_health_check_period: Duration::from_millis(100),
        ..Default::default()
    })
    .unwrap()
}

fn shard(name: &str, sample: &[&str]) -> ShardDetails {
    ShardDetails {
        name: name.into(),
        cuda_devices: vec![],
        description: "mnist".into(),
        n_samples: 10,
        sample_shape: sample.iter().map(|s| s.to_string()).collect(),
        target_shape: vec!["1".into()],
    }
}

fn submit(s: &DirectorState, name: &str, owner: &str, cols: &[&str]) {
    let upload = s.upload_path();
    std::fs::write(&upload, b"archive").unwrap();
    let cols: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
    s.register_experiment(name, owner, &cols, &upload, 7, None).unwrap();
}

#[test]
fn shards_are_accepted_only_with_the_configured_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path());
    assert!(!s.acknowledge_shard(shard("col1", &["28"])).unwrap());
    assert!(s.acknowledge_shard(shard("col1", &["28", "28"])).unwrap());
    assert_eq!(s.acknowledge_shard(shard("", &["28", "28"])).unwrap_err().code(), ofl_code::InvalidArgument);
    assert_eq!(s.envoys().len(), 1);
    assert!(s.envoys()[0].is_online);
    assert_eq!(s.update_envoy_status("nope", false, vec![]).unwrap_err().code(), ofl_code::NotFound);
}

#[test]
fn health_checks_keep_an_envoy_online_for_two_periods() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path());
    s.acknowledge_shard(shard("col1", &["28", "28"])).unwrap();
    assert_eq!(s.envoys()[0].valid_duration, Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(250));
    assert!(!s.envoys()[0].is_online);
    let devices = vec![CudaDevice { index: 0, name: "gpu".into(), ..Default::default() }];
    assert_eq!(s.update_envoy_status("col1", true, devices).unwrap(), Duration::from_millis(100));
    let envoy = &s.envoys()[0];
    assert!(envoy.is_online && envoy.is_experiment_running);
    assert_eq!(envoy.shard_info.cuda_devices[0].name, "gpu");
}

#[test]
fn life_cycle_queues_reassignment_and_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path());
    submit(&s, "e1", "alice", &["col1", "col2", "col1"]);
    assert_eq!(s.experiment_status("alice", "e1"), Some(ExperimentStatus::Pending));
    assert_eq!(s.experiment_status("bob", "e1"), None, "another caller's: OpenFL's empty status");
    assert_eq!(s.experiment_status("alice", "nope"), None);
    assert!(s.experiments_list("bob").is_empty());
    assert_eq!(s.poll_experiment("col1", true), None);

    let info = s.take_next().unwrap();
    assert_eq!(info.collaborators, vec!["col1".to_string(), "col2".to_string()]);
    assert!(s.take_next().is_none(), "one active experiment at a time");
    assert_eq!(s.remove_experiment("alice", "e1").unwrap_err().code(), ofl_code::FailedPrecondition);
    assert!(s.begin("e1"));
    assert_eq!(s.poll_experiment("col1", true), None, "not handed out before dispatch");
    s.dispatch("e1");
    assert_eq!(s.poll_experiment("col1", true).as_deref(), Some("e1"));
    // Reconnecting into a running experiment hands it out again.
    assert_eq!(s.poll_experiment("col1", true).as_deref(), Some("e1"));
    assert_eq!(s.poll_experiment("col1", false), None);
    assert!(!s.active_done("e1"));

    s.push_metric("e1", DirectorMetric { metric_name: "acc".into(), value: 0.5, ..Default::default() }).unwrap();
    assert_eq!(s.open_metric_stream("bob", "e1").unwrap_err().code(), ofl_code::NotFound);
    let stream = s.open_metric_stream("alice", "e1").unwrap();
    assert!(matches!(s.poll_metric("e1", stream), MetricPoll::Metric(m) if m.value == 0.5));
    assert_eq!(s.poll_metric("e1", stream), MetricPoll::Wait);
    // A newer stream takes over: the older one (perhaps cancelled by its
    // client, not yet noticed) ends and takes nothing.
    s.push_metric("e1", DirectorMetric { metric_name: "acc".into(), value: 0.75, ..Default::default() }).unwrap();
    let newer = s.open_metric_stream("alice", "e1").unwrap();
    assert_eq!(s.poll_metric("e1", stream), MetricPoll::End);
    assert!(matches!(s.poll_metric("e1", newer), MetricPoll::Metric(m) if m.value == 0.75));
    s.mark_finished("e1").unwrap();
    assert_eq!(s.poll_metric("e1", newer), MetricPoll::End);
    assert!(s.active_done("e1"));
    assert_eq!(s.poll_experiment("col1", true), None, "a finished experiment is not handed out again");
    assert_eq!(s.poll_experiment("col2", true), None, "nor one that finished before the envoy asked");
    assert_eq!(s.mark_failed("e1", "late").unwrap_err().code(), ofl_code::FailedPrecondition);

    assert!(!s.remove_experiment("bob", "e1").unwrap(), "another caller's: a no-op, as OpenFL");
    assert!(s.snapshot("e1").is_some());
    assert!(s.remove_experiment("alice", "e1").unwrap());
    assert!(!s.remove_experiment("alice", "e1").unwrap(), "already gone: a no-op");
    assert!(!s.archive_path("e1").exists());
}

#[test]
fn rejection_deletes_the_archive_and_duplicates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path());
    submit(&s, "e1", "alice", &["col1"]);
    assert!(s.archive_path("e1").exists());
    let upload = s.upload_path();
    std::fs::write(&upload, b"x").unwrap();
    let e = s.register_experiment("e1", "bob", &["col1".into()], &upload, 1, None).unwrap_err();
    assert_eq!(e.code(), ofl_code::AlreadyExists);
    s.take_next().unwrap();
    s.reject("e1");
    assert_eq!(s.experiment_status("alice", "e1"), Some(ExperimentStatus::Rejected));
    assert!(!s.archive_path("e1").exists());
    assert!(!s.begin("e1"));
}
