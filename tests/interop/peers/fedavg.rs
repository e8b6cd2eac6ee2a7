//! Our `AggregatorServer` running the built-in FedAvg (`FedAvg`), as the
//! aggregator of a federation of real OpenFL 1.6 collaborators
//! (`tests/interop/test_fedavg_interop.py`, whose collaborators are OpenFL's
//! own `Collaborator` class: `tests/interop/openfl_fedavg_collaborator.py`).
//!
//! The FedAvg runs OpenFL's default task list (`aggregated_model_validation`,
//! `train`, `locally_tuned_model_validation`) for `--rounds` rounds over the
//! initial model given by `--tensor` (default: `w` of shape [4, 3] with
//! values `(i - 6) / 10`, and `b` of shape [3] = [0.1, 0.2, 0.3]).
//!
//! Output on stdout, one JSON object per line:
//! 1. `{"listening": PORT}` once the server accepts connections;
//! 2. after `serve` returns (every collaborator was told to quit after the
//!    last round), `{"result": {...}}` with
//!    - `initial_model`: the round-0 model;
//!    - `rounds`: one entry per trained round, `{"round": r, "model": M}`
//!      where `M` is the model aggregated at the end of round r (the model
//!      served for round r + 1);
//!    - `uploads`: every upload the FedAvg accepted or ignored, in arrival
//!      order (collaborator, round, task, data size, tensor names);
//!    - `metrics`: `FedAvg::metrics()` (collaborators' and averages);
//!    - `best`: `{"round", "score", "model"}` or null; `last_model`;
//!    - `current_round`, `rounds_to_train`, `all_quit_jobs_sent`.
//!
//!    A model is `{name: {"shape": [...], "values": [...]}}`, values in C
//!    order as JSON numbers (f32 printed exactly; NaN/inf as null).
//!
//! Exit status 0 then; 124 if `--timeout` seconds pass first; 1 on an error
//! (stderr says why); 2 on a usage error.
//!
//! ```text
//! interop_fedavg --mode mtls|tls|insecure [--certs DIR] [--host [::]] [--port 0]
//!     [--collaborators col1,col2] [--rounds 3] [--aggregator-uuid U] [--federation-uuid F]
//!     [--tensor NAME:DIMS:VALUES]... [--sleep-time 1] [--tensor-wait-ms 30000]
//!     [--best-metric NAME] [--timeout 120]
//! ```
//!
//! `--tensor w:4x3:0.1,0.2,...` adds a tensor of the initial model (DIMS
//! empty for a scalar: `s::0.5`); the first `--tensor` replaces the default
//! model. `--certs DIR` is a directory made by `tests/certs/make_certs.sh`.
//!
//! Per-round models are recorded through FedAvg's public API only: every
//! upload goes through a wrapper that holds its own lock around the FedAvg
//! call and reads `last_model()` when `current_round()` moved. Since a round
//! can only end inside an upload, and uploads are serialised by that lock,
//! the model read is exactly the one that round produced.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Map, Value};
use openfl_transport::aggregator::{
    AggregatorLogic, AggregatorServer, Federation, LogicCall, AggregatorServerOptions, TaskResults, TasksReply, TensorPoll,
    TensorRequest,
};
use openfl_transport::fedavg::{FedAvg, FedAvgOptions, FedAvgMetric, Model, Tensor};
use openfl_transport::proto::NamedTensor;
use openfl_transport::Result;

mod support;

use support::cli::{list, Cli, PeerArgs, ALL_MODES};
use support::json::{emit, emit_listening};

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

struct Args {
    peer: PeerArgs,
    collaborators: Vec<String>,
    rounds: i32,
    aggregator_uuid: String,
    federation_uuid: String,
    model: Option<Model>,
    sleep_time: i32,
    tensor_wait: Duration,
    best_metric: Option<String>,
}

const CLI: Cli = Cli {
    program: "interop_fedavg",
    usage: "usage: interop_fedavg --mode mtls|tls|insecure [--certs DIR] [--host HOST] [--port PORT] \
[--collaborators a,b] [--rounds N] [--aggregator-uuid U] [--federation-uuid F] \
[--tensor NAME:DIMS:VALUES]... [--sleep-time S] [--tensor-wait-ms MS] [--best-metric NAME] [--timeout SECS]",
};

/// `NAME:DIMS:VALUES`, e.g. `w:4x3:1,2,...` or `s::0.5` (a scalar).
fn parse_tensor(spec: &str) -> (String, Tensor) {
    let mut parts = spec.splitn(3, ':');
    let (Some(name), Some(dims), Some(values)) = (parts.next(), parts.next(), parts.next()) else {
        CLI.usage_error(&format!("--tensor {spec:?}: expected NAME:DIMS:VALUES"));
    };
    if name.is_empty() {
        CLI.usage_error(&format!("--tensor {spec:?}: empty name"));
    }
    let shape: Vec<usize> =
        if dims.is_empty() { Vec::new() } else { dims.split('x').map(|d| CLI.number("--tensor", d)).collect() };
    let values: Vec<f32> = values.split(',').map(|v| CLI.number("--tensor", v.trim())).collect();
    let tensor = Tensor::new(shape, values).unwrap_or_else(|e| CLI.usage_error(&format!("--tensor {spec:?}: {e}")));
    (name.to_string(), tensor)
}

fn default_model() -> Model {
    let mut model = Model::new();
    let w = (0..12).map(|i| (i as f32 - 6.0) / 10.0).collect();
    model.insert("w".into(), Tensor::new(vec![4, 3], w).expect("12 values fill [4, 3]"));
    model.insert("b".into(), Tensor::new(vec![3], vec![0.1, 0.2, 0.3]).expect("3 values fill [3]"));
    model
}

fn parse_args() -> Args {
    let mut args = Args {
        peer: PeerArgs::new("[::]", Duration::from_secs(120)),
        collaborators: vec!["col1".into(), "col2".into()],
        rounds: 3,
        aggregator_uuid: "aggregator-uuid".into(),
        federation_uuid: "federation-uuid".into(),
        model: None,
        sleep_time: 1,
        tensor_wait: Duration::from_secs(30),
        best_metric: None,
    };
    CLI.parse(&mut args.peer, &[], |flag, value| match flag {
        "--collaborators" => args.collaborators = list(&value),
        "--rounds" => args.rounds = CLI.number(flag, &value),
        "--aggregator-uuid" => args.aggregator_uuid = value,
        "--federation-uuid" => args.federation_uuid = value,
        "--tensor" => {
            let (name, tensor) = parse_tensor(&value);
            if args.model.get_or_insert_with(Model::new).insert(name.clone(), tensor).is_some() {
                CLI.usage_error(&format!("--tensor {name:?} given twice"));
            }
        }
        "--sleep-time" => args.sleep_time = CLI.number(flag, &value),
        "--tensor-wait-ms" => args.tensor_wait = Duration::from_millis(CLI.number(flag, &value)),
        "--best-metric" => args.best_metric = Some(value),
        _ => CLI.unknown_option(flag),
    });
    args.peer.check_mode(&CLI, ALL_MODES);
    args
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// A model as `{name: {"shape": [...], "values": [...]}}`. Each f32 value is
/// written as the f64 it equals (exact when read back as f32); NaN and the
/// infinities as `null`.
fn json_model(model: &Model) -> Value {
    let tensors: Map<String, Value> = model
        .iter()
        .map(|(name, t)| (name.clone(), json!({ "shape": t.shape, "values": t.values })))
        .collect();
    Value::Object(tensors)
}

fn json_metric(m: &FedAvgMetric) -> Value {
    json!({
        "round": m.round,
        "origin": m.origin,
        "aggregated": m.aggregated,
        "task": m.task,
        "name": m.name,
        "value": m.value,
    })
}

// ---------------------------------------------------------------------------
// Recording wrapper
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Record {
    /// (round, the model aggregated at its end).
    rounds: Vec<(i32, Model)>,
    /// JSON objects, one per upload.
    uploads: Vec<Value>,
}

/// The FedAvg behind the server, plus what the test needs afterwards: the
/// model of every round (not readable from `FedAvg` once the next round
/// ended) and the uploads' data sizes.
struct RecordingFedAvg {
    inner: Arc<FedAvg>,
    record: Mutex<Record>,
}

impl RecordingFedAvg {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result line's object, given the round-0 model.
    fn report(&self, initial_model: &Model) -> Value {
        let record = self.record();
        let fa = &self.inner;
        let best = match (fa.best_model_score(), fa.best_model()) {
            (Some((round, score)), Some(model)) => {
                json!({ "round": round, "score": score, "model": json_model(&model) })
            }
            _ => Value::Null,
        };
        let rounds: Vec<Value> =
            record.rounds.iter().map(|(round, model)| json!({ "round": round, "model": json_model(model) })).collect();
        let metrics: Vec<Value> = fa.metrics().iter().map(json_metric).collect();
        json!({
            "initial_model": json_model(initial_model),
            "rounds": rounds,
            "uploads": record.uploads,
            "metrics": metrics,
            "best": best,
            "last_model": json_model(&fa.last_model()),
            "current_round": fa.current_round(),
            "rounds_to_train": fa.rounds_to_train(),
            "all_quit_jobs_sent": fa.all_quit_jobs_sent(),
        })
    }
}

impl AggregatorLogic for RecordingFedAvg {
    fn federation(&self) -> &Federation {
        self.inner.federation()
    }

    fn get_tasks(&self, collaborator: &str) -> Result<TasksReply> {
        self.inner.get_tasks(collaborator)
    }

    fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> Result<NamedTensor> {
        self.inner.get_aggregated_tensor(collaborator, request)
    }

    fn poll_aggregated_tensor(
        &self,
        collaborator: &str,
        request: &TensorRequest,
        started: std::time::Instant,
    ) -> Result<TensorPoll> {
        self.inner.poll_aggregated_tensor(collaborator, request, started)
    }

    fn may_block(&self, call: LogicCall) -> bool {
        // The record lock is held across an upload: keep uploads off the async workers.
        call == LogicCall::SendLocalTaskResults || self.inner.may_block(call)
    }

    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> Result<()> {
        // Held across the FedAvg call: no other upload (the only way a round
        // ends) can slip in between the call and reading the model.
        let mut record = self.record();
        let tensor_names: Vec<&str> = results.tensors.iter().map(|t| t.name.as_str()).collect();
        let upload = json!({
            "collaborator": collaborator,
            "round": results.round_number,
            "task": results.task_name,
            "data_size": results.data_size,
            "tensors": tensor_names,
        });
        let before = self.inner.current_round();
        let outcome = self.inner.send_local_task_results(collaborator, results);
        record.uploads.push(upload);
        if self.inner.current_round() != before {
            record.rounds.push((before, self.inner.last_model()));
        }
        outcome
    }

    fn all_quit_jobs_sent(&self) -> bool {
        self.inner.all_quit_jobs_sent()
    }
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

fn main() {
    let args = parse_args();
    CLI.start_watchdog(args.peer.timeout);

    let initial_model = args.model.clone().unwrap_or_else(default_model);
    let config = FedAvgOptions {
        aggregator_uuid: args.aggregator_uuid.clone(),
        federation_uuid: args.federation_uuid.clone(),
        collaborators: args.collaborators.clone(),
        rounds_to_train: args.rounds,
        initial_model: initial_model.clone(),
        best_model_metric: args.best_metric.clone(),
        tensor_wait: args.tensor_wait,
        sleep_time: args.sleep_time,
        ..FedAvgOptions::default()
    };
    let fedavg = FedAvg::new(config).unwrap_or_else(|e| CLI.fail(e));
    let logic = Arc::new(RecordingFedAvg { inner: Arc::new(fedavg), record: Mutex::default() });

    let server_config = AggregatorServerOptions {
        host: args.peer.host.clone(),
        port: args.peer.port,
        tls: args.peer.server_tls(),
        auth_failure_max_delay: Duration::ZERO,
        quit_poll_interval: Duration::from_millis(100),
        ..AggregatorServerOptions::default()
    };
    let server_logic: Arc<dyn AggregatorLogic> = logic.clone();
    let outcome = openfl_transport::block_on(async move {
        let server = AggregatorServer::start(server_config, server_logic).await?;
        emit_listening(server.local_addr().port());
        server.serve().await
    });
    match outcome {
        Ok(Ok(())) => {
            emit(&json!({ "result": logic.report(&initial_model) }));
            std::process::exit(0);
        }
        Ok(Err(e)) | Err(e) => CLI.fail(e),
    }
}
