//! FedAvg's behaviour through its public calls: rounds, weighting, tags,
//! waits, the best model, bad input, and the state directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::TensorKey;
use super::*;
use crate::aggregator::{AggregatorLogic, LogicCall, TaskResults, TasksReply, TensorPoll, TensorRequest};
use crate::error::{ofl_code, Result};
use crate::proto::NamedTensor;

const AGG: &str = "aggregator_uuid";
const VALIDATE: &str = "aggregated_model_validation";
const TRAIN: &str = "train";
const LOCAL: &str = "locally_tuned_model_validation";

fn config(collaborators: &[&str], rounds: i32) -> FedAvgOptions {
    let mut initial_model = Model::new();
    initial_model.insert("w".into(), Tensor::new(vec![2], vec![0.0, 0.0]).unwrap());
    initial_model.insert("b".into(), Tensor::scalar(7.0));
    FedAvgOptions {
        aggregator_uuid: AGG.into(),
        federation_uuid: "federation_uuid".into(),
        collaborators: collaborators.iter().map(|c| c.to_string()).collect(),
        rounds_to_train: rounds,
        initial_model,
        tensor_wait: Duration::from_millis(200),
        sleep_time: 3,
        ..Default::default()
    }
}

fn fedavg(collaborators: &[&str], rounds: i32) -> FedAvg {
    FedAvg::new(config(collaborators, rounds)).unwrap()
}

/// A metric as OpenFL's PyTorch task runner sends it.
fn metric(name: &str, round: i32, value: f32, tags: &[&str]) -> NamedTensor {
    Tensor::scalar(value).to_named_tensor(name, round, true, tags)
}

fn trained(name: &str, round: i32, values: &[f32]) -> NamedTensor {
    Tensor::new(vec![values.len()], values.to_vec()).unwrap().to_named_tensor(
        name,
        round,
        false,
        &["trained"],
    )
}

fn send(
    fa: &FedAvg,
    col: &str,
    round: i32,
    task: &str,
    data_size: i32,
    tensors: Vec<NamedTensor>,
) -> Result<()> {
    let results = TaskResults { round_number: round, task_name: task.into(), data_size, tensors };
    fa.send_local_task_results(col, results)
}

/// One collaborator's whole round: validation of the global model with
/// `acc`, training to `w`, local validation.
fn run_round(fa: &FedAvg, col: &str, round: i32, acc: f32, w: &[f32], data_size: i32) {
    send(
        fa,
        col,
        round,
        VALIDATE,
        data_size,
        vec![metric("acc", round, acc, &["metric", "validate_agg"])],
    )
    .unwrap();
    let train = vec![trained("w", round, w), metric("loss", round, 1.0 - acc, &["metric"])];
    send(fa, col, round, TRAIN, data_size, train).unwrap();
    send(
        fa,
        col,
        round,
        LOCAL,
        data_size,
        vec![metric("acc", round, acc, &["metric", "validate_local"])],
    )
    .unwrap();
}

fn model_request(name: &str, round: i32) -> TensorRequest {
    TensorRequest {
        tensor_name: name.into(),
        round_number: round,
        report: false,
        tags: vec!["model".into()],
        require_lossless: true,
    }
}

fn fetch(fa: &FedAvg, col: &str, name: &str, round: i32) -> Result<Tensor> {
    fa.get_aggregated_tensor(col, &model_request(name, round)).and_then(|t| Tensor::from_named_tensor(&t))
}

fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= 1e-6, "{actual:?} vs {expected:?}");
    }
}

fn task_names(reply: &TasksReply) -> Vec<&str> {
    reply.tasks.iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn averages_weighted_by_data_size() {
    let fa = fedavg(&["a", "b"], 2);
    run_round(&fa, "a", 0, 0.5, &[1.0, -2.0], 1);
    assert_eq!(fa.current_round(), 0);
    run_round(&fa, "b", 0, 0.9, &[3.0, 6.0], 3);
    assert_eq!(fa.current_round(), 1);
    // 0.25 * a + 0.75 * b
    let w = fetch(&fa, "a", "w", 1).unwrap();
    assert_eq!(w.shape, vec![2]);
    assert_close(&w.values, &[2.5, 4.0]);
    assert_close(&fa.last_model()["w"].values, &[2.5, 4.0]);
    // Untrained tensors carry over.
    assert_eq!(fa.last_model()["b"], Tensor::scalar(7.0));
    let averaged: Vec<_> = fa.metrics().into_iter().filter(|m| m.aggregated).collect();
    let acc = averaged.iter().find(|m| m.task == VALIDATE && m.name == "acc").unwrap();
    assert_eq!((acc.round, acc.origin.as_str()), (0, AGGREGATOR_METRIC_ORIGIN));
    assert!((acc.value - (0.25 * 0.5 + 0.75 * 0.9)).abs() < 1e-6, "{acc:?}");
    assert_eq!(averaged.len(), 3);
}

#[test]
fn tags_follow_openfl() {
    // Uploads: OpenFL's lossless pipeline adds "compressed"; tags sorted.
    let nt = metric("acc", 0, 0.5, &["validate_agg", "metric"]);
    assert_eq!(nt.tags, ["compressed", "metric", "validate_agg"]);
    assert!(nt.lossless && nt.report);
    assert_eq!(nt.transformer_metadata[0].int_list, Vec::<i32>::new());
    // Stored without "compressed", with the collaborator's name.
    let fa = fedavg(&["a", "b"], 1);
    send(&fa, "a", 0, TRAIN, 1, vec![trained("w", 0, &[1.0, 2.0])]).unwrap();
    let key = TensorKey::new("w", AGG, 0, false, ["trained", "a"]);
    assert!(fa.lock().store.get(&key).is_some());
    // Served: the request's tags plus "compressed", shape in int_list.
    let served = fa.get_aggregated_tensor("a", &model_request("w", 0)).unwrap();
    assert_eq!(served.tags, ["compressed", "model"]);
    assert_eq!(
        (served.name.as_str(), served.round_number, served.report, served.lossless),
        ("w", 0, false, true)
    );
    assert_eq!(served.transformer_metadata.len(), 1);
    assert_eq!(served.transformer_metadata[0].int_list, vec![2]);
    assert_eq!(served.data_bytes.len(), 8);
    let scalar = fa.get_aggregated_tensor("a", &model_request("b", 0)).unwrap();
    assert!(scalar.transformer_metadata[0].int_list.is_empty());
}

#[test]
fn non_model_requests_are_refused() {
    let fa = fedavg(&["a"], 1);
    let mut request = model_request("w", 0);
    request.tags = vec!["aggregated".into(), "compressed".into(), "delta".into()];
    assert_eq!(fa.get_aggregated_tensor("a", &request).unwrap_err().code(), ofl_code::InvalidArgument);
    request.tags = vec!["trained".into(), "a".into()];
    assert_eq!(fa.get_aggregated_tensor("a", &request).unwrap_err().code(), ofl_code::InvalidArgument);
    request.tags = vec!["model".into(), "compressed".into()];
    assert!(fa.get_aggregated_tensor("a", &request).is_ok());
}

#[test]
fn wrong_round_results_are_ignored() {
    let fa = fedavg(&["a"], 2);
    send(&fa, "a", 1, TRAIN, 1, vec![trained("w", 1, &[9.0, 9.0])]).unwrap();
    assert_eq!(task_names(&fa.get_tasks("a").unwrap()), [VALIDATE, TRAIN, LOCAL]);
    run_round(&fa, "a", 0, 0.5, &[1.0, 1.0], 1);
    send(&fa, "a", 0, TRAIN, 1, vec![trained("w", 0, &[9.0, 9.0])]).unwrap(); // late
    assert_eq!(fa.current_round(), 1);
    assert_eq!(task_names(&fa.get_tasks("a").unwrap()), [VALIDATE, TRAIN, LOCAL]);
    assert_close(&fa.last_model()["w"].values, &[1.0, 1.0]);
}

#[test]
fn duplicate_results_count_once() {
    let fa = fedavg(&["a", "b"], 1);
    let upload = || vec![trained("w", 0, &[1.0, 1.0]), metric("loss", 0, 0.5, &["metric"])];
    send(&fa, "a", 0, TRAIN, 1, upload()).unwrap();
    send(&fa, "a", 0, TRAIN, 1, vec![trained("w", 0, &[100.0, 100.0])]).unwrap();
    assert_eq!(fa.metrics().len(), 1);
    run_round(&fa, "a", 0, 0.5, &[5.0, 5.0], 1); // train part is a duplicate too
    run_round(&fa, "b", 0, 0.5, &[3.0, 3.0], 1);
    assert_close(&fa.last_model()["w"].values, &[2.0, 2.0]);
    let a_train = fa.metrics().iter().filter(|m| m.origin == "a" && m.task == TRAIN).count();
    assert_eq!(a_train, 1);
}

#[test]
fn missing_collaborator_keeps_round_open() {
    let fa = fedavg(&["a", "b"], 1);
    run_round(&fa, "a", 0, 0.5, &[1.0, 1.0], 1);
    let reply = fa.get_tasks("a").unwrap();
    assert_eq!((reply.round_number, reply.sleep_time, reply.quit), (0, 3, false));
    assert!(reply.tasks.is_empty());
    assert_eq!(fa.current_round(), 0);
    let reply = fa.get_tasks("b").unwrap();
    assert_eq!((task_names(&reply), reply.sleep_time), (vec![VALIDATE, TRAIN, LOCAL], 0));
    send(&fa, "b", 0, VALIDATE, 1, vec![metric("acc", 0, 0.5, &["metric", "validate_agg"])]).unwrap();
    assert_eq!(task_names(&fa.get_tasks("b").unwrap()), [TRAIN, LOCAL]);
}

#[test]
fn quit_after_last_round_counts_each_collaborator_once() {
    let fa = fedavg(&["a", "b"], 1);
    run_round(&fa, "a", 0, 0.5, &[1.0, 1.0], 1);
    run_round(&fa, "b", 0, 0.5, &[1.0, 1.0], 1);
    assert!(fa.is_finished());
    assert!(!fa.all_quit_jobs_sent());
    for _ in 0..2 {
        let reply = fa.get_tasks("a").unwrap();
        assert!(reply.quit && reply.tasks.is_empty());
        assert_eq!(reply.round_number, 1);
        assert!(!fa.all_quit_jobs_sent());
    }
    assert!(fa.get_tasks("b").unwrap().quit);
    assert!(fa.all_quit_jobs_sent());
    // Results after the end are ignored.
    assert!(send(&fa, "a", 1, TRAIN, 1, vec![trained("w", 1, &[1.0, 1.0])]).is_ok());
}

#[test]
fn missing_tensor_fails_after_bounded_wait() {
    let fa = fedavg(&["a"], 2);
    // A later round's model may still appear: wait, then fail.
    let start = Instant::now();
    let err = fetch(&fa, "a", "nope", 1).unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(200), "{:?}", start.elapsed());
    assert_eq!(err.code(), ofl_code::FailedPrecondition);
    assert!(err.message().contains("\"nope\"") && err.message().contains("not ready"), "{err}");
    // The current round's model is complete: no wait.
    let start = Instant::now();
    let err = fetch(&fa, "a", "nope", 0).unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(150));
    assert_eq!(err.code(), ofl_code::FailedPrecondition);
}

#[test]
fn waiting_request_gets_tensor_when_round_ends() {
    let mut cfg = config(&["a"], 2);
    cfg.tensor_wait = Duration::from_secs(10);
    let fa = Arc::new(FedAvg::new(cfg).unwrap());
    let waiter = {
        let fa = Arc::clone(&fa);
        std::thread::spawn(move || fetch(&fa, "a", "w", 1))
    };
    std::thread::sleep(Duration::from_millis(50));
    run_round(&fa, "a", 0, 0.5, &[4.0, 2.0], 1);
    assert_close(&waiter.join().unwrap().unwrap().values, &[4.0, 2.0]);
}

#[test]
fn best_and_last_model() {
    let fa = fedavg(&["a"], 3);
    assert_eq!(fa.best_model(), None);
    assert_close(&fa.last_model()["w"].values, &[0.0, 0.0]);
    // Round r validates the round-r model, then trains it to [r+1, r+1].
    for (round, acc) in [(0, 0.5), (1, 0.9), (2, 0.7)] {
        let w = (round + 1) as f32;
        run_round(&fa, "a", round, acc, &[w, w], 10);
    }
    let (best_round, score) = fa.best_model_score().unwrap();
    assert_eq!(best_round, 1);
    assert!((score - 0.9).abs() < 1e-6);
    assert_close(&fa.best_model().unwrap()["w"].values, &[1.0, 1.0]);
    assert_close(&fa.last_model()["w"].values, &[3.0, 3.0]);
    assert_eq!(fa.current_round(), 3);
}

#[test]
fn best_model_metric_is_configurable() {
    let mut cfg = config(&["a"], 2);
    cfg.best_model_metric = Some("f1".into());
    let fa = FedAvg::new(cfg).unwrap();
    for (round, f1) in [(0, 0.8f32), (1, 0.2)] {
        let validate = vec![
            metric("acc", round, 1.0 - f1, &["metric", "validate_agg"]),
            metric("f1", round, f1, &["metric", "validate_agg"]),
        ];
        send(&fa, "a", round, VALIDATE, 1, validate).unwrap();
        send(&fa, "a", round, TRAIN, 1, vec![trained("w", round, &[5.0, 5.0])]).unwrap();
        send(&fa, "a", round, LOCAL, 1, vec![]).unwrap();
    }
    assert_eq!(fa.best_model_score().map(|(r, _)| r), Some(0));
}

#[test]
fn bad_uploads_are_rejected_whole() {
    let fa = fedavg(&["a", "b"], 1);
    let code = |tensors: Vec<NamedTensor>| send(&fa, "a", 0, TRAIN, 1, tensors).unwrap_err().code();
    let good = || trained("w", 0, &[1.0, 1.0]);
    assert_eq!(code(vec![good(), trained("w", 0, &[1.0, 2.0, 3.0])]), ofl_code::InvalidArgument);
    assert_eq!(code(vec![good(), good()]), ofl_code::InvalidArgument);
    let long_metric =
        Tensor::new(vec![2], vec![1.0, 2.0]).unwrap().to_named_tensor("acc", 0, true, &["metric"]);
    assert_eq!(code(vec![good(), long_metric]), ofl_code::InvalidArgument);
    let mut lossy = good();
    lossy.tags = vec!["lossy_compressed".into(), "trained".into()];
    assert_eq!(code(vec![lossy]), ofl_code::InvalidArgument);
    let mut delta = good();
    delta.tags = vec!["compressed".into(), "delta".into(), "trained".into()];
    assert_eq!(code(vec![delta]), ofl_code::InvalidArgument);
    let unknown_task = send(&fa, "a", 0, "bogus", 1, vec![good()]).unwrap_err();
    assert_eq!(unknown_task.code(), ofl_code::InvalidArgument);
    // Nothing was kept: the task is still pending.
    assert_eq!(task_names(&fa.get_tasks("a").unwrap()), [VALIDATE, TRAIN, LOCAL]);
    assert!(fa.metrics().is_empty());
    // Tensors outside the model must agree between collaborators.
    send(&fa, "a", 0, TRAIN, 1, vec![good(), trained("opt", 0, &[1.0])]).unwrap();
    let err = send(&fa, "b", 0, TRAIN, 1, vec![good(), trained("opt", 0, &[1.0, 2.0])]).unwrap_err();
    assert_eq!(err.code(), ofl_code::InvalidArgument);
}

#[test]
fn unauthorized_collaborator_is_refused() {
    let fa = fedavg(&["a"], 1);
    assert_eq!(fa.get_tasks("mallory").unwrap_err().code(), ofl_code::PermissionDenied);
    assert_eq!(fetch(&fa, "mallory", "w", 0).unwrap_err().code(), ofl_code::PermissionDenied);
    let err = send(&fa, "mallory", 0, TRAIN, 1, vec![]).unwrap_err();
    assert_eq!(err.code(), ofl_code::PermissionDenied);
}

/// Spoils one field of a valid configuration.
type Spoil = fn(&mut FedAvgOptions);

#[test]
fn config_validation() {
    let check = |change: Spoil| {
        let mut cfg = config(&["a", "b"], 1);
        change(&mut cfg);
        FedAvg::new(cfg).unwrap_err().code()
    };
    let cases: Vec<(&str, Spoil)> = vec![
        ("no collaborators", |c| c.collaborators.clear()),
        ("duplicate collaborator", |c| c.collaborators.push("a".into())),
        ("empty collaborator", |c| c.collaborators.push(String::new())),
        ("zero rounds", |c| c.rounds_to_train = 0),
        ("no tasks", |c| c.tasks.clear()),
        ("duplicate task", |c| c.tasks.push(FedAvgOptions::default_tasks()[1].clone())),
        ("empty model", |c| c.initial_model.clear()),
        ("length mismatch", |c| c.initial_model.get_mut("w").unwrap().values.push(1.0)),
        ("scalar with two values", |c| c.initial_model.get_mut("b").unwrap().values.push(1.0)),
        ("huge dimension", |c| c.initial_model.get_mut("w").unwrap().shape = vec![1 << 31, 0]),
        ("zero sleep", |c| c.sleep_time = 0),
        ("empty best metric", |c| c.best_model_metric = Some(String::new())),
    ];
    for (what, change) in cases {
        assert_eq!(check(change), ofl_code::InvalidArgument, "{what}");
    }
    assert!(FedAvg::new(config(&["a"], 1)).is_ok());
    assert_eq!(Tensor::new(vec![2, 2], vec![0.0; 3]).unwrap_err().code(), ofl_code::InvalidArgument);
}

#[test]
fn default_tasks_match_openfl() {
    let tasks = FedAvgOptions::default_tasks();
    let fields: Vec<_> = tasks
        .iter()
        .map(|t| (t.name.as_str(), t.function_name.as_str(), t.task_type.as_str(), t.apply_local))
        .collect();
    assert_eq!(
        fields,
        [
            (VALIDATE, "validate_task", "validate", false),
            (TRAIN, "train_task", "train", false),
            (LOCAL, "validate_task", "validate", true),
        ]
    );
    let cfg = FedAvgOptions::default();
    assert_eq!((cfg.sleep_time, cfg.tensor_wait, cfg.rounds_to_train), (10, Duration::from_secs(30), 10));
}

// --- state directory ------------------------------------------------------

fn persistent_config(dir: &std::path::Path) -> FedAvgOptions {
    FedAvgOptions { state_dir: Some(dir.to_path_buf()), ..config(&["a", "b"], 3) }
}

/// Round 0 by both, then round 1 by a, and b's validation of round 1.
fn part_of_two_rounds(fa: &FedAvg) {
    run_round(fa, "a", 0, 0.5, &[1.0, 2.0], 1);
    run_round(fa, "b", 0, 0.7, &[3.0, 4.0], 3);
    run_round(fa, "a", 1, 0.6, &[5.0, 6.0], 1);
    send(fa, "b", 1, VALIDATE, 3, vec![metric("acc", 1, 0.8, &["metric", "validate_agg"])]).unwrap();
}

/// The rest of the federation after `part_of_two_rounds`.
fn rest_of_federation(fa: &FedAvg) {
    let train = vec![trained("w", 1, &[7.0, 8.0]), metric("loss", 1, 0.2, &["metric"])];
    send(fa, "b", 1, TRAIN, 3, train).unwrap();
    send(fa, "b", 1, LOCAL, 3, vec![metric("acc", 1, 0.8, &["metric", "validate_local"])]).unwrap();
    run_round(fa, "a", 2, 0.4, &[9.0, 9.5], 1);
    run_round(fa, "b", 2, 0.9, &[1.5, 2.5], 3);
}

fn bits(model: &Model) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    model.iter().map(|(n, t)| (n.clone(), t.shape.clone(), t.values.iter().map(|v| v.to_bits()).collect())).collect()
}

/// The outcome of the federation without any restart.
fn undisturbed() -> FedAvg {
    let fa = fedavg(&["a", "b"], 3);
    part_of_two_rounds(&fa);
    rest_of_federation(&fa);
    fa
}

fn assert_same_outcome(fa: &FedAvg, reference: &FedAvg) {
    assert_eq!(fa.current_round(), reference.current_round());
    assert_eq!(bits(&fa.last_model()), bits(&reference.last_model()));
    assert_eq!(fa.best_model().as_ref().map(bits), reference.best_model().as_ref().map(bits));
    assert_eq!(fa.best_model_score(), reference.best_model_score());
    assert_eq!(fa.metrics(), reference.metrics());
}

#[test]
fn state_dir_resumes_the_round_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let first = FedAvg::new(persistent_config(dir.path())).unwrap();
    part_of_two_rounds(&first);
    let metrics_before = first.metrics();
    drop(first); // the process dies; only the directory is left

    let fa = FedAvg::new(persistent_config(dir.path())).unwrap();
    assert_eq!(fa.current_round(), 1);
    assert_eq!(fa.metrics(), metrics_before);
    // a reported everything: it sleeps; b still owes two tasks.
    let reply = fa.get_tasks("a").unwrap();
    assert_eq!((reply.round_number, reply.tasks.len(), reply.sleep_time), (1, 0, 3));
    assert_eq!(task_names(&fa.get_tasks("b").unwrap()), [TRAIN, LOCAL]);
    // The round-1 model is served; a's resent upload counts once.
    assert_close(&fetch(&fa, "a", "w", 1).unwrap().values, &[2.5, 3.5]);
    send(&fa, "a", 1, TRAIN, 1, vec![trained("w", 1, &[100.0, 100.0])]).unwrap();
    rest_of_federation(&fa);
    assert_same_outcome(&fa, &undisturbed());
    // Old rounds' result files are gone once a later round is saved.
    let results = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("result-"))
        .count();
    assert_eq!(results, 0);
}

#[test]
fn a_round_whose_end_was_not_saved_ends_again() {
    let dir = tempfile::tempdir().unwrap();
    let first = FedAvg::new(persistent_config(dir.path())).unwrap();
    first.skip_round_saves(true); // crash right before each round-end save
    part_of_two_rounds(&first);
    drop(first);

    let fa = FedAvg::new(persistent_config(dir.path())).unwrap();
    assert_eq!(fa.current_round(), 1);
    assert_eq!(task_names(&fa.get_tasks("b").unwrap()), [TRAIN, LOCAL]);
    rest_of_federation(&fa);
    assert_same_outcome(&fa, &undisturbed());
}

#[test]
fn quit_answers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = FedAvg::new(persistent_config(dir.path())).unwrap();
    part_of_two_rounds(&first);
    rest_of_federation(&first);
    assert!(first.get_tasks("a").unwrap().quit);
    drop(first);

    let fa = FedAvg::new(persistent_config(dir.path())).unwrap();
    assert!(fa.is_finished());
    assert!(!fa.all_quit_jobs_sent());
    assert!(fa.get_tasks("b").unwrap().quit);
    assert!(fa.all_quit_jobs_sent(), "a was told before the restart");
    assert_same_outcome(&fa, &undisturbed());
}

#[test]
fn damaged_or_foreign_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = FedAvg::new(persistent_config(dir.path())).unwrap();
    run_round(&first, "a", 0, 0.5, &[1.0, 2.0], 1);
    // In use by a running aggregator.
    let in_use = FedAvg::new(persistent_config(dir.path())).unwrap_err();
    assert_eq!(in_use.code(), ofl_code::FailedPrecondition);
    assert!(in_use.message().contains("in use"), "{in_use}");
    drop(first);

    // A half-written temporary file (crash during a save) is ignored.
    std::fs::write(dir.path().join(".federation.state.tmp"), b"OFLSTATE\x10").unwrap();
    assert_eq!(FedAvg::new(persistent_config(dir.path())).unwrap().metrics().len(), 3);
    assert!(!dir.path().join(".federation.state.tmp").exists());

    // Another federation's directory.
    let mut other = persistent_config(dir.path());
    other.collaborators = vec!["a".into(), "c".into()];
    let foreign = FedAvg::new(other).unwrap_err();
    assert_eq!(foreign.code(), ofl_code::FailedPrecondition);
    assert!(foreign.message().contains("another federation"), "{foreign}");

    // A damaged result file, then a damaged federation.state.
    let result = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("result-"))
        .unwrap();
    let bytes = std::fs::read(&result).unwrap();
    std::fs::write(&result, &bytes[..bytes.len() / 2]).unwrap();
    let damaged = FedAvg::new(persistent_config(dir.path())).unwrap_err();
    assert_eq!(damaged.code(), ofl_code::DataLoss);
    assert!(damaged.message().contains(&result.display().to_string()), "{damaged}");
    std::fs::write(&result, &bytes).unwrap();
    let manifest = dir.path().join("federation.state");
    let mut bytes = std::fs::read(&manifest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&manifest, &bytes).unwrap();
    let damaged = FedAvg::new(persistent_config(dir.path())).unwrap_err();
    assert_eq!(damaged.code(), ofl_code::DataLoss);
    assert!(damaged.message().contains("federation.state") && damaged.message().contains("checksum"), "{damaged}");
}

#[test]
fn waits_are_polled_without_blocking() {
    let fa = fedavg(&["a"], 2);
    assert!(!fa.may_block(LogicCall::GetAggregatedTensor) && !fa.may_block(LogicCall::GetTasks));
    let started = Instant::now();
    let TensorPoll::Pending(wait) = fa.poll_aggregated_tensor("a", &model_request("w", 1), started).unwrap()
    else {
        panic!("round 1's model is not there yet")
    };
    assert_eq!(wait.deadline, started + Duration::from_millis(200));
    assert!(!wait.changed.has_changed().unwrap());
    run_round(&fa, "a", 0, 0.5, &[4.0, 2.0], 1);
    assert!(wait.changed.has_changed().unwrap(), "the round's end must wake the waiter");
    let poll = fa.poll_aggregated_tensor("a", &model_request("w", 1), started).unwrap();
    assert!(matches!(poll, TensorPoll::Ready(_)));
    let expired = Instant::now() - Duration::from_secs(1);
    let err = fa.poll_aggregated_tensor("a", &model_request("w", 2), expired).unwrap_err();
    assert!(err.message().contains("not ready after waiting"), "{err}");
}
