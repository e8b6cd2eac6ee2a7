//! An aggregator built on this crate's `AggregatorServer`, as an interop peer
//! for real OpenFL 1.6 collaborators (`tests/interop/test_interop.py`).
//!
//! The in-process `AggregatorLogic` mirrors the aggregator object of
//! `tests/interop/openfl_server.py`: it hands out one task
//! (name "train", function "train_task", type "train"), serves the tensor
//! "model_weights" = pattern(1, size) as OpenFL's lossless pipeline would
//! describe a flat uint8 array (one `MetadataProto` with `int_list` [size],
//! tags copied from the request), and records what arrives, checking each
//! uploaded tensor against pattern(2, size). Byte i of pattern(seed, n) is
//! (i*7 + seed) % 256 (see `tests/interop/common.py`).
//!
//! Output on stdout, one JSON object per line:
//! 1. `{"listening": PORT}` once the server accepts connections;
//! 2. when done, `{"received": {...}}` with everything it saw: the
//!    collaborators that asked for tasks, the tensor requests, and the
//!    results (collaborator, round, task, data size, and per tensor its name,
//!    tags, `int_list`, byte count and whether the bytes matched), with the
//!    time the server took from serving the tensor to holding the upload.
//!
//! "Done" is: one upload was received (`all_quit_jobs_sent` turns true and
//! `serve` shuts down gracefully, so the upload's reply is still sent); or,
//! with `--serve-forever`, end of file on stdin. Exit status 0 then; 124 if
//! `--timeout` seconds pass first; 1 on a start-up error (stderr says why).
//!
//! ```text
//! interop_aggregator --mode mtls|tls|insecure [--certs DIR] [--host [::]] [--port 0]
//!     [--collaborators col1,col2] [--aggregator-uuid U] [--federation-uuid F]
//!     [--size-mib 64] [--auth-delay-ms 0] [--timeout 120] [--serve-forever]
//! ```
//!
//! `--certs DIR` is a directory made by `tests/certs/make_certs.sh`: the
//! server presents `server.crt`/`server.key` and trusts `ca.crt`. `--mode tls`
//! makes client certificates optional (one-way TLS).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use openfl_transport::aggregator::{
    AggregatorLogic, AggregatorServer, Federation, AggregatorServerOptions, TaskResults, TasksReply, TensorRequest,
};
use openfl_transport::proto::NamedTensor;
use openfl_transport::Result;

mod support;

use support::cli::{list, on_stdin_eof, Cli, PeerArgs, ALL_MODES};
use support::json::{emit, emit_listening, rounded};
use support::payload::{describe_tensor, named_tensor, pattern, train_task, SEED_AGGREGATED, SEED_UPLOADED};

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

struct Args {
    peer: PeerArgs,
    collaborators: Vec<String>,
    aggregator_uuid: String,
    federation_uuid: String,
    size: usize,
    auth_delay: Duration,
    serve_forever: bool,
}

const CLI: Cli = Cli {
    program: "interop_aggregator",
    usage: "usage: interop_aggregator --mode mtls|tls|insecure [--certs DIR] [--host HOST] \
[--port PORT] [--collaborators a,b] [--aggregator-uuid U] [--federation-uuid F] [--size-mib N] \
[--auth-delay-ms MS] [--timeout SECS] [--serve-forever]",
};

fn parse_args() -> Args {
    let mut args = Args {
        peer: PeerArgs::new("[::]", Duration::from_secs(120)),
        collaborators: vec!["col1".into(), "col2".into()],
        aggregator_uuid: "aggregator-uuid".into(),
        federation_uuid: "federation-uuid".into(),
        size: 64 << 20,
        auth_delay: Duration::ZERO,
        serve_forever: false,
    };
    CLI.parse(&mut args.peer, &["--serve-forever"], |flag, value| match flag {
        "--serve-forever" => args.serve_forever = true,
        "--collaborators" => args.collaborators = list(&value),
        "--aggregator-uuid" => args.aggregator_uuid = value,
        "--federation-uuid" => args.federation_uuid = value,
        "--size-mib" => args.size = CLI.size_mib(flag, &value),
        "--auth-delay-ms" => args.auth_delay = Duration::from_millis(CLI.number(flag, &value)),
        _ => CLI.unknown_option(flag),
    });
    args.peer.check_mode(&CLI, ALL_MODES);
    args
}

// ---------------------------------------------------------------------------
// The logic
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Seen {
    get_tasks: Vec<String>,
    tensor_requests: Vec<Value>,
    results: Vec<Value>,
    /// When the last aggregated tensor was handed to the server.
    tensor_served_at: Option<Instant>,
}

struct PatternAggregator {
    federation: Federation,
    started: Instant,
    model: Bytes,
    expected_upload: Vec<u8>,
    serve_forever: bool,
    seen: Mutex<Seen>,
}

impl PatternAggregator {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self) -> Value {
        let seen = self.seen();
        json!({
            "received": {
                "get_tasks": seen.get_tasks,
                "tensor_requests": seen.tensor_requests,
                "results": seen.results,
            }
        })
    }
}

impl AggregatorLogic for PatternAggregator {
    fn federation(&self) -> &Federation {
        &self.federation
    }

    fn get_tasks(&self, collaborator: &str) -> Result<TasksReply> {
        self.seen().get_tasks.push(collaborator.to_string());
        Ok(TasksReply { round_number: 0, tasks: vec![train_task()], sleep_time: 0, quit: false })
    }

    fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> Result<NamedTensor> {
        let mut seen = self.seen();
        seen.tensor_requests.push(json!({
            "collaborator": collaborator,
            "tensor_name": request.tensor_name,
            "round_number": request.round_number,
            "report": request.report,
            "tags": request.tags,
            "require_lossless": request.require_lossless,
        }));
        seen.tensor_served_at = Some(Instant::now());
        Ok(named_tensor("model_weights", self.model.clone(), request.round_number, request.tags.clone()))
    }

    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> Result<()> {
        let now = Instant::now();
        // Compare outside the lock: 64 MiB takes a while.
        let tensors: Vec<Value> = results.tensors.iter().map(|t| describe_tensor(t, &self.expected_upload)).collect();
        let mut seen = self.seen();
        let since_served = seen.tensor_served_at.map(|t| now.duration_since(t).as_secs_f64());
        // Seconds to the microsecond.
        seen.results.push(json!({
            "collaborator": collaborator,
            "round_number": results.round_number,
            "task_name": results.task_name,
            "data_size": results.data_size,
            "tensors": tensors,
            "received_at_s": rounded(now.duration_since(self.started).as_secs_f64(), 6),
            "seconds_since_tensor_served": since_served.map(|s| rounded(s, 6)),
        }));
        Ok(())
    }

    fn all_quit_jobs_sent(&self) -> bool {
        !self.serve_forever && !self.seen().results.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

fn main() {
    let args = parse_args();
    CLI.start_watchdog(args.peer.timeout);

    let logic = Arc::new(PatternAggregator {
        federation: Federation {
            aggregator_uuid: args.aggregator_uuid.clone(),
            federation_uuid: args.federation_uuid.clone(),
            single_col_cert_common_name: String::new(),
            authorized_collaborators: args.collaborators.clone().into(),
        },
        started: Instant::now(),
        model: Bytes::from(pattern(SEED_AGGREGATED, args.size)),
        expected_upload: pattern(SEED_UPLOADED, args.size),
        serve_forever: args.serve_forever,
        seen: Mutex::default(),
    });
    let config = AggregatorServerOptions {
        host: args.peer.host.clone(),
        port: args.peer.port,
        tls: args.peer.server_tls(),
        auth_failure_max_delay: args.auth_delay,
        quit_poll_interval: Duration::from_millis(100),
        ..AggregatorServerOptions::default()
    };

    let server_logic: Arc<dyn AggregatorLogic> = logic.clone();
    let serve_forever = args.serve_forever;
    let outcome = openfl_transport::block_on(async move {
        let server = Arc::new(AggregatorServer::start(config, server_logic).await?);
        emit_listening(server.local_addr().port());
        if serve_forever {
            // End of file on stdin stops the server (the test closes the pipe).
            let stopper = Arc::clone(&server);
            on_stdin_eof(move || stopper.stop());
        }
        server.serve().await
    });
    match outcome {
        Ok(Ok(())) => {
            emit(&logic.report());
            std::process::exit(0);
        }
        Ok(Err(e)) | Err(e) => CLI.fail(e),
    }
}
