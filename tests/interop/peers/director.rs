//! A director host built on this crate's `DirectorServer`, as the peer of
//! OpenFL 1.6's own `ShardDirectorClient` (envoys) and `DirectorClient`
//! (frontends) in `tests/interop/test_director_interop.py`.
//!
//! The host plays the part OpenFL's director gives its aggregator:
//! - the review hook rejects experiments whose name starts with "reject";
//! - an experiment whose name starts with "doomed" is left running until an
//!   envoy fails it (SetExperimentFailed);
//! - when any other experiment starts, the host waits until every
//!   collaborator downloaded the archive (or the experiment failed), then for rounds
//!   1..=3 reports the round and two metrics per round (`aggregator` /
//!   `aggregated_model_validation` / `accuracy` = 0.25 * round, and
//!   `<first collaborator>` / `train` / `loss` = 1 / round), sets the last
//!   model to the initial model and the best model to the initial model with
//!   every float32 negated, and marks the experiment finished.
//!
//! Output on stdout, one JSON object per line:
//! 1. `{"listening": PORT}` once the director accepts connections;
//! 2. at end of file on stdin, `{"summary": {...}}`: per experiment its
//!    owner, status, collaborators, archive size, downloads, failure and the
//!    hook calls, then exit 0. Exit 124 when `--timeout` seconds pass first.
//!
//! ```text
//! interop_director --mode mtls|insecure [--certs DIR] [--host 127.0.0.1] [--port 0]
//!     [--sample-shape 28,28] [--target-shape 1] [--health-period-secs 1]
//!     [--archive-dir DIR] [--timeout 150]
//! ```
//!
//! `--certs DIR` is a directory made by `tests/certs/make_certs.sh`: the
//! director presents `server.crt`/`server.key` and trusts `ca.crt`.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use openfl_transport::director::{
    DirectorServerOptions, DirectorHandle, DirectorHooks, DirectorServer, ExperimentDetails, ExperimentFailure,
    ExperimentStatus, DirectorMetric,
};
use openfl_transport::proto::ModelProto;
use openfl_transport::Result;

mod support;

use support::cli::{list, on_stdin_eof, Cli, PeerArgs};
use support::json::{emit, emit_listening};

const CLI: Cli = Cli {
    program: "interop_director",
    usage: "usage: interop_director --mode mtls|insecure [--certs DIR] [--host HOST] [--port PORT] \
[--sample-shape a,b] [--target-shape c] [--health-period-secs N] [--archive-dir DIR] [--timeout SECS]",
};

/// The director speaks mutual TLS or nothing, as OpenFL's.
const MODES: &[&str] = &["mtls", "insecure"];

struct Args {
    peer: PeerArgs,
    sample_shape: Vec<String>,
    target_shape: Vec<String>,
    health_period: Duration,
    archive_dir: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        peer: PeerArgs::new("127.0.0.1", Duration::from_secs(150)),
        sample_shape: list("28,28"),
        target_shape: list("1"),
        health_period: Duration::from_secs(1),
        archive_dir: None,
    };
    CLI.parse(&mut args.peer, &[], |flag, value| match flag {
        "--sample-shape" => args.sample_shape = list(&value),
        "--target-shape" => args.target_shape = list(&value),
        "--health-period-secs" => args.health_period = Duration::from_secs(CLI.number(flag, &value)),
        "--archive-dir" => args.archive_dir = Some(PathBuf::from(value)),
        _ => CLI.unknown_option(flag),
    });
    args.peer.check_mode(&CLI, MODES);
    args
}

// ---------------------------------------------------------------------------
// Hooks and the host's "aggregator"
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Calls {
    reviewed: Vec<String>,
    started: Vec<String>,
    failed: Vec<String>,
}

struct Hooks {
    calls: Mutex<Calls>,
    started: Mutex<mpsc::Sender<ExperimentDetails>>,
}

impl Hooks {
    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DirectorHooks for Hooks {
    fn review_experiment(&self, experiment: &ExperimentDetails) -> bool {
        self.calls().reviewed.push(experiment.name.clone());
        !experiment.name.starts_with("reject")
    }

    fn start_experiment(&self, experiment: &ExperimentDetails) -> Result<()> {
        self.calls().started.push(experiment.name.clone());
        let _ = self.started.lock().unwrap_or_else(|e| e.into_inner()).send(experiment.clone());
        Ok(())
    }

    fn experiment_failed(&self, experiment: &ExperimentDetails, failure: &ExperimentFailure) {
        self.calls().failed.push(format!(
            "{}: {} (code {}): {}",
            experiment.name, failure.collaborator, failure.error_code, failure.description
        ));
    }
}

/// The initial model with every float32 negated (flip each sign bit).
fn negated(model: &ModelProto) -> ModelProto {
    let mut out = model.clone();
    for tensor in &mut out.tensors {
        let mut data = tensor.data_bytes.to_vec();
        for word in data.chunks_exact_mut(4) {
            word[3] ^= 0x80;
        }
        tensor.data_bytes = data.into();
    }
    out
}

/// What OpenFL's aggregator would report for one experiment.
async fn run_experiment(handle: DirectorHandle, experiment: ExperimentDetails) -> Result<()> {
    let name = experiment.name.clone();
    if name.starts_with("doomed") {
        let over = |h: &DirectorHandle| h.experiment_status(&name) != Some(ExperimentStatus::InProgress);
        if tokio::time::timeout(Duration::from_secs(60), handle.wait_until(over)).await.is_err() {
            return handle.mark_failed(&name, "no envoy failed it within 60 s");
        }
        return Ok(());
    }
    let everyone_has_it = |h: &DirectorHandle| {
        h.experiment(&name).map_or(true, |s| {
            s.status != ExperimentStatus::InProgress || experiment.collaborators.iter().all(|c| s.downloads.contains(c))
        })
    };
    if tokio::time::timeout(Duration::from_secs(60), handle.wait_until(everyone_has_it)).await.is_err() {
        return handle.mark_failed(&name, "the envoys did not download the archive within 60 s");
    }
    if handle.experiment_status(&name) != Some(ExperimentStatus::InProgress) {
        return Ok(()); // failed by an envoy, or removed
    }
    let first = experiment.collaborators.first().cloned().unwrap_or_default();
    handle.set_tasks(
        &name,
        vec![
            ("train".into(), "local training".into()),
            ("aggregated_model_validation".into(), "validation of the aggregated model".into()),
        ],
    )?;
    for round in 1..=3u32 {
        handle.set_round(&name, round, 3)?;
        handle.push_metric(
            &name,
            DirectorMetric {
                origin: "aggregator".into(),
                task_name: "aggregated_model_validation".into(),
                metric_name: "accuracy".into(),
                value: 0.25 * round as f32,
                round,
            },
        )?;
        handle.push_metric(
            &name,
            DirectorMetric {
                origin: first.clone(),
                task_name: "train".into(),
                metric_name: "loss".into(),
                value: 1.0 / round as f32,
                round,
            },
        )?;
    }
    let initial = experiment.initial_model.clone().unwrap_or_default();
    handle.set_last_model(&name, initial.clone())?;
    handle.set_best_model(&name, negated(&initial))?;
    handle.mark_finished(&name)
}

/// The `{"summary": ...}` line: every experiment, the envoys and the hook calls.
fn summary(handle: &DirectorHandle, hooks: &Hooks) -> Value {
    let experiments: Vec<Value> = handle.experiment_names().into_iter().map(|name| experiment(handle, name)).collect();
    let envoys: Vec<String> = handle
        .envoys()
        .into_iter()
        .map(|e| e.shard_info.name)
        .collect();
    let calls = hooks.calls();
    json!({
        "summary": {
            "experiments": experiments,
            "envoys": envoys,
            "reviewed": calls.reviewed,
            "started": calls.started,
            "failed": calls.failed,
        }
    })
}

/// One experiment of the summary (`"removed": true` once it is gone).
fn experiment(handle: &DirectorHandle, name: String) -> Value {
    let Some(s) = handle.experiment(&name) else {
        return json!({ "name": name, "removed": true });
    };
    let failure = s.failure.as_ref().map(|f| {
        json!({ "collaborator": f.collaborator, "error_code": f.error_code, "description": f.description })
    });
    let initial_tensors: Vec<&str> =
        s.info.initial_model.iter().flat_map(|m| m.tensors.iter()).map(|t| t.name.as_str()).collect();
    json!({
        "name": name,
        "owner": s.info.owner,
        "status": s.status.as_str(),
        "collaborators": s.info.collaborators,
        "archive_size": s.info.archive_size,
        "downloads": s.downloads,
        "initial_tensors": initial_tensors,
        "failure": failure,
    })
}

fn main() {
    let args = parse_args();
    CLI.start_watchdog(args.peer.timeout);

    let archive_tmp = match &args.archive_dir {
        Some(_) => None,
        None => Some(tempfile_dir()),
    };
    let archive_dir = args.archive_dir.clone().unwrap_or_else(|| archive_tmp.clone().expect("made above"));
    let config = DirectorServerOptions {
        host: args.peer.host.clone(),
        port: args.peer.port,
        tls: args.peer.server_tls(),
        sample_shape: args.sample_shape.clone(),
        target_shape: args.target_shape.clone(),
        envoy_health_check_period: args.health_period,
        archive_dir,
        ..DirectorServerOptions::default()
    };
    let (started_tx, started_rx) = mpsc::channel::<ExperimentDetails>();
    let hooks = Arc::new(Hooks { calls: Mutex::default(), started: Mutex::new(started_tx) });

    let server_hooks: Arc<dyn DirectorHooks> = hooks.clone();
    let outcome = openfl_transport::block_on(async move {
        let server = DirectorServer::start(config, server_hooks).await?;
        emit_listening(server.local_addr().port());
        let handle = server.handle();
        // The host's aggregator side: one task per started experiment.
        let runner = handle.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            for experiment in started_rx {
                let handle = runner.clone();
                runtime.spawn(async move {
                    let name = experiment.name.clone();
                    if let Err(e) = run_experiment(handle, experiment).await {
                        eprintln!("interop_director: experiment {name:?}: {e}");
                    }
                });
            }
        });
        // End of file on stdin: report and stop.
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        on_stdin_eof(move || {
            let _ = eof_tx.send(());
        });
        let _ = eof_rx.await;
        server.shutdown().await?;
        Ok::<_, openfl_transport::Error>(handle)
    });
    let code = match outcome {
        Ok(Ok(handle)) => {
            emit(&summary(&handle, &hooks));
            0
        }
        Ok(Err(e)) | Err(e) => {
            eprintln!("interop_director: {e}");
            1
        }
    };
    if let Some(dir) = archive_tmp {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(code);
}

/// A fresh directory for archives under the system temporary directory.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("interop-director-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
