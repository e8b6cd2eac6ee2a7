//! A collaborator built on this crate's `AggregatorClient`, as an interop peer
//! for real OpenFL 1.6 aggregators (`tests/interop/test_interop.py`). It does
//! what `tests/interop/openfl_client.py` does with OpenFL's own client.
//!
//! Normal run: GetTasks; GetAggregatedTensor("model_weights", round 0,
//! tags ["model"], require_lossless) checked byte for byte against
//! pattern(1, size); SendLocalTaskResults of task "train", data size 100, with
//! "model_weights" = pattern(2, size) tagged ["trained"]. Prints one JSON line
//! with the tasks, a summary of the received tensor and the MiB/s of the
//! download and the upload. Byte i of pattern(seed, n) is (i*7 + seed) % 256.
//!
//! `--spoof NAME`: one GetTasks whose header claims to be NAME (the TLS
//! certificate stays `--cert`'s); prints `{"spoof": NAME, "code": CODE,
//! "details": ...}` where CODE is the gRPC status name ("OK",
//! "UNAUTHENTICATED", ...) or, for this library's own codes, "TLS",
//! "RETRIES_EXHAUSTED", "INVALID_RESPONSE", ....
//!
//! Calls retry an unreachable aggregator for at most `--retry-deadline`
//! seconds (20). Exit status: 0 after printing the result line (a spoof run
//! prints its code and exits 0 whatever the code); 1 on a failed call or a
//! byte mismatch (stderr says which); 124 after `--timeout` seconds (120).
//!
//! ```text
//! interop_collaborator --port P --mode mtls|tls|insecure [--certs DIR] [--host localhost]
//!     [--collaborator col1] [--cert NAME] [--aggregator-uuid U] [--federation-uuid F]
//!     [--size-mib 64] [--spoof NAME] [--retry-deadline 20] [--timeout 120]
//! ```
//!
//! `--certs DIR` is a directory made by `tests/certs/make_certs.sh`: the
//! client trusts `ca.crt` and, under mTLS, presents `NAME.crt`/`NAME.key`
//! (NAME = `--cert`, default the collaborator name; e.g. `foreign`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use openfl_transport::aggregator::{AggregatorClient, AggregatorClientOptions, Federation, TaskResults, TensorRequest};
use openfl_transport::RetryPolicy;
use openfl_transport::{ofl_code, Error};

mod support;

use support::cli::{Cli, PeerArgs, ALL_MODES};
use support::json::{emit, rounded};
use support::payload::{describe_tensor, named_tensor, pattern, MIB, SEED_AGGREGATED, SEED_UPLOADED};

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

struct Args {
    peer: PeerArgs,
    collaborator: String,
    cert: Option<String>,
    aggregator_uuid: String,
    federation_uuid: String,
    size: usize,
    spoof: Option<String>,
    retry_deadline: Duration,
}

const CLI: Cli = Cli {
    program: "interop_collaborator",
    usage: "usage: interop_collaborator --port PORT --mode mtls|tls|insecure [--certs DIR] \
[--host HOST] [--collaborator NAME] [--cert NAME] [--aggregator-uuid U] [--federation-uuid F] \
[--size-mib N] [--spoof NAME] [--retry-deadline SECS] [--timeout SECS]",
};

fn parse_args() -> Args {
    let mut args = Args {
        peer: PeerArgs::new("localhost", Duration::from_secs(120)),
        collaborator: "col1".into(),
        cert: None,
        aggregator_uuid: "aggregator-uuid".into(),
        federation_uuid: "federation-uuid".into(),
        size: 64 << 20,
        spoof: None,
        retry_deadline: Duration::from_secs(20),
    };
    CLI.parse(&mut args.peer, &[], |flag, value| match flag {
        "--collaborator" => args.collaborator = value,
        "--cert" => args.cert = Some(value),
        "--aggregator-uuid" => args.aggregator_uuid = value,
        "--federation-uuid" => args.federation_uuid = value,
        "--size-mib" => args.size = CLI.size_mib(flag, &value),
        "--spoof" => args.spoof = Some(value),
        "--retry-deadline" => args.retry_deadline = CLI.seconds(flag, &value),
        _ => CLI.unknown_option(flag),
    });
    if args.peer.port == 0 {
        CLI.usage_error("--port is required");
    }
    args.peer.check_mode(&CLI, ALL_MODES);
    args
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// A transfer's size, time (to 0.1 ms) and rate (to 0.1 MiB/s).
fn rate(nbytes: usize, seconds: f64) -> Value {
    json!({
        "bytes": nbytes,
        "seconds": rounded(seconds, 4),
        "mib_s": rounded(nbytes as f64 / MIB / seconds.max(1e-9), 1),
    })
}

/// The gRPC status name of a code, as Python's `grpc.StatusCode.X.name`; the
/// library's own codes get names in the same style.
fn code_name(code: ofl_code) -> &'static str {
    use ofl_code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
        Tls => "TLS",
        Io => "IO",
        Panic => "PANIC",
        InvalidResponse => "INVALID_RESPONSE",
        RetriesExhausted => "RETRIES_EXHAUSTED",
        ProtocolMismatch => "PROTOCOL_MISMATCH",
    }
}

// ---------------------------------------------------------------------------
// The collaborator
// ---------------------------------------------------------------------------

fn client_config(args: &Args) -> AggregatorClientOptions {
    let mut config = AggregatorClientOptions::new(args.peer.host.clone(), args.peer.port);
    config.connect.tls = args.peer.client_tls(args.cert.as_ref().unwrap_or(&args.collaborator));
    config.federation = Federation {
        aggregator_uuid: args.aggregator_uuid.clone(),
        federation_uuid: args.federation_uuid.clone(),
        ..Federation::default()
    };
    config.retry = RetryPolicy { deadline: Some(args.retry_deadline), ..RetryPolicy::default() };
    config
}

async fn spoof(client: AggregatorClient, name: String) -> Value {
    let (code, details) = match client.get_tasks(&name).await {
        Ok(_) => ("OK", String::new()),
        Err(e) => (code_name(e.code()), e.message().to_string()),
    };
    json!({ "spoof": name, "code": code, "details": details })
}

async fn round_trip(client: AggregatorClient, name: String, size: usize) -> Result<Value, String> {
    let step = |what: &'static str| move |e: Error| format!("{what}: {e}");

    let tasks = client.get_tasks(&name).await.map_err(step("GetTasks"))?;

    let expected = pattern(SEED_AGGREGATED, size);
    let request = TensorRequest {
        tensor_name: "model_weights".into(),
        round_number: 0,
        report: false,
        tags: vec!["model".into()],
        require_lossless: true,
    };
    let t0 = Instant::now();
    let tensor = client.get_aggregated_tensor(&name, &request).await.map_err(step("GetAggregatedTensor"))?;
    let download = rate(tensor.data_bytes.len(), t0.elapsed().as_secs_f64());
    let received = describe_tensor(&tensor, &expected);
    if tensor.name != "model_weights" || tensor.data_bytes.as_ref() != expected.as_slice() {
        return Err(format!("aggregated tensor differs from pattern(1, {size}): {received}"));
    }
    drop((tensor, expected));

    let trained = Bytes::from(pattern(SEED_UPLOADED, size));
    let results = TaskResults {
        round_number: 0,
        task_name: "train".into(),
        data_size: 100,
        tensors: vec![named_tensor("model_weights", trained, 0, vec!["trained".into()])],
    };
    let t0 = Instant::now();
    client.send_local_task_results(&name, &results).await.map_err(step("SendLocalTaskResults"))?;
    let upload = rate(size, t0.elapsed().as_secs_f64());

    let task_list: Vec<Value> = tasks
        .tasks
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "function_name": t.function_name,
                "task_type": t.task_type,
                "apply_local": t.apply_local,
            })
        })
        .collect();
    Ok(json!({
        "tasks": task_list,
        "round_number": tasks.round_number,
        "sleep_time": tasks.sleep_time,
        "quit": tasks.quit,
        "tensor": received,
        "download": download,
        "upload": upload,
    }))
}

fn main() {
    let args = parse_args();
    CLI.start_watchdog(args.peer.timeout);

    // The client must be made on the runtime: its channel spawns a task there.
    let config = client_config(&args);
    let mode = args.peer.mode.clone();
    let (spoof_name, name, size) = (args.spoof.clone(), args.collaborator.clone(), args.size);
    let outcome = openfl_transport::block_on(async move {
        let client = AggregatorClient::new(config).map_err(|e| format!("client: {e}"))?;
        match spoof_name {
            Some(spoofed) => Ok(spoof(client, spoofed).await),
            None => round_trip(client, name, size).await,
        }
    });
    match outcome {
        Ok(Ok(mut body)) => {
            // "mode" in the object, as openfl_client.py does.
            body["mode"] = Value::from(mode);
            emit(&body);
            std::process::exit(0);
        }
        Ok(Err(message)) => CLI.fail(message),
        Err(e) => CLI.fail(e),
    }
}
