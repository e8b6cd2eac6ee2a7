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

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use openfl_transport::aggregator::{
    AggregatorLogic, AggregatorServer, Federation, ServerConfig, TaskResults, TasksReply, TensorRequest,
};
use openfl_transport::proto::aggregator::Task;
use openfl_transport::proto::{MetadataProto, NamedTensor};
use openfl_transport::tls::{PemSource, TlsConfig};
use openfl_transport::Result;

const MIB: f64 = (1u64 << 20) as f64;
const SEED_AGGREGATED: u8 = 1;
const SEED_UPLOADED: u8 = 2;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

struct Args {
    host: String,
    port: u16,
    mode: String,
    certs: Option<PathBuf>,
    collaborators: Vec<String>,
    aggregator_uuid: String,
    federation_uuid: String,
    size: usize,
    auth_delay: Duration,
    timeout: Duration,
    serve_forever: bool,
}

const USAGE: &str = "usage: interop_aggregator --mode mtls|tls|insecure [--certs DIR] [--host HOST] \
[--port PORT] [--collaborators a,b] [--aggregator-uuid U] [--federation-uuid F] [--size-mib N] \
[--auth-delay-ms MS] [--timeout SECS] [--serve-forever]";

fn usage_error(message: &str) -> ! {
    eprintln!("interop_aggregator: {message}\n{USAGE}");
    std::process::exit(2);
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value.parse().unwrap_or_else(|_| usage_error(&format!("{flag}: not a number: {value:?}")))
}

fn parse_args() -> Args {
    let mut args = Args {
        host: "[::]".into(),
        port: 0,
        mode: String::new(),
        certs: None,
        collaborators: vec!["col1".into(), "col2".into()],
        aggregator_uuid: "aggregator-uuid".into(),
        federation_uuid: "federation-uuid".into(),
        size: 64 << 20,
        auth_delay: Duration::ZERO,
        timeout: Duration::from_secs(120),
        serve_forever: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--serve-forever" {
            args.serve_forever = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().unwrap_or_else(|| usage_error(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--host" => args.host = value,
            "--port" => args.port = parse_number(&flag, &value),
            "--mode" => args.mode = value,
            "--certs" => args.certs = Some(PathBuf::from(value)),
            "--collaborators" => {
                args.collaborators = value.split(',').filter(|s| !s.is_empty()).map(String::from).collect()
            }
            "--aggregator-uuid" => args.aggregator_uuid = value,
            "--federation-uuid" => args.federation_uuid = value,
            "--size-mib" => {
                let mib: f64 = parse_number(&flag, &value);
                if !(0.0..=1024.0).contains(&mib) {
                    usage_error("--size-mib must be within 0..=1024");
                }
                args.size = (mib * MIB) as usize;
            }
            "--auth-delay-ms" => args.auth_delay = Duration::from_millis(parse_number(&flag, &value)),
            "--timeout" => args.timeout = Duration::from_secs_f64(parse_number(&flag, &value)),
            _ => usage_error(&format!("unknown option {flag}")),
        }
    }
    match args.mode.as_str() {
        "mtls" | "tls" if args.certs.is_none() => usage_error("--certs is required with --mode mtls/tls"),
        "mtls" | "tls" | "insecure" => {}
        "" => usage_error("--mode is required"),
        other => usage_error(&format!("--mode: {other:?} is not mtls, tls or insecure")),
    }
    args
}

// ---------------------------------------------------------------------------
// Payloads and JSON
// ---------------------------------------------------------------------------

/// n bytes where byte i is (i*7 + seed) % 256, as `common.pattern`.
fn pattern(seed: u8, n: usize) -> Vec<u8> {
    let period: Vec<u8> = (0..256u32).map(|i| ((i * 7 + u32::from(seed)) % 256) as u8).collect();
    let mut out = Vec::with_capacity(n);
    while out.len() + 256 <= n {
        out.extend_from_slice(&period);
    }
    out.extend_from_slice(&period[..n - out.len()]);
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    format!("[{}]", items.iter().map(f).collect::<Vec<_>>().join(", "))
}

fn json_f64(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        "null".into()
    }
}

/// `common.describe_tensor` in Rust.
fn describe_tensor(t: &NamedTensor, expected: &[u8]) -> String {
    format!(
        "{{\"name\": {}, \"round_number\": {}, \"lossless\": {}, \"report\": {}, \"tags\": {}, \
         \"int_list\": {}, \"bytes\": {}, \"match\": {}}}",
        json_str(&t.name),
        t.round_number,
        t.lossless,
        t.report,
        json_list(&t.tags, |s| json_str(s)),
        json_list(&t.transformer_metadata, |m| json_list(&m.int_list, |n| n.to_string())),
        t.data_bytes.len(),
        t.data_bytes.as_ref() == expected,
    )
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the test gave up) must not turn into a panic.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

// ---------------------------------------------------------------------------
// The logic
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Seen {
    get_tasks: Vec<String>,
    tensor_requests: Vec<String>,
    results: Vec<String>,
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

    fn report(&self) -> String {
        let seen = self.seen();
        format!(
            "{{\"received\": {{\"get_tasks\": {}, \"tensor_requests\": {}, \"results\": {}}}}}",
            json_list(&seen.get_tasks, |s| json_str(s)),
            json_list(&seen.tensor_requests, Clone::clone),
            json_list(&seen.results, Clone::clone),
        )
    }
}

impl AggregatorLogic for PatternAggregator {
    fn federation(&self) -> &Federation {
        &self.federation
    }

    fn get_tasks(&self, collaborator: &str) -> Result<TasksReply> {
        self.seen().get_tasks.push(collaborator.to_string());
        Ok(TasksReply {
            round_number: 0,
            tasks: vec![Task {
                name: "train".into(),
                function_name: "train_task".into(),
                task_type: "train".into(),
                apply_local: false,
            }],
            sleep_time: 0,
            quit: false,
        })
    }

    fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> Result<NamedTensor> {
        let mut seen = self.seen();
        seen.tensor_requests.push(format!(
            "{{\"collaborator\": {}, \"tensor_name\": {}, \"round_number\": {}, \"report\": {}, \
             \"tags\": {}, \"require_lossless\": {}}}",
            json_str(collaborator),
            json_str(&request.tensor_name),
            request.round_number,
            request.report,
            json_list(&request.tags, |s| json_str(s)),
            request.require_lossless,
        ));
        seen.tensor_served_at = Some(Instant::now());
        Ok(NamedTensor {
            name: "model_weights".into(),
            round_number: request.round_number,
            lossless: true,
            report: false,
            tags: request.tags.clone(),
            transformer_metadata: vec![MetadataProto {
                int_list: vec![self.model.len() as i32],
                ..Default::default()
            }],
            data_bytes: self.model.clone(),
        })
    }

    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> Result<()> {
        let now = Instant::now();
        // Compare outside the lock: 64 MiB takes a while.
        let tensors = json_list(&results.tensors, |t| describe_tensor(t, &self.expected_upload));
        let mut seen = self.seen();
        let since_served = seen.tensor_served_at.map(|t| now.duration_since(t).as_secs_f64());
        seen.results.push(format!(
            "{{\"collaborator\": {}, \"round_number\": {}, \"task_name\": {}, \"data_size\": {}, \
             \"tensors\": {}, \"received_at_s\": {}, \"seconds_since_tensor_served\": {}}}",
            json_str(collaborator),
            results.round_number,
            json_str(&results.task_name),
            results.data_size,
            tensors,
            json_f64(now.duration_since(self.started).as_secs_f64()),
            since_served.map_or("null".into(), json_f64),
        ));
        Ok(())
    }

    fn all_quit_jobs_sent(&self) -> bool {
        !self.serve_forever && !self.seen().results.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

fn tls_config(args: &Args) -> Option<TlsConfig> {
    let certs = args.certs.as_ref()?;
    if args.mode == "insecure" {
        return None;
    }
    let file = |name: &str| Some(PemSource::File(certs.join(name)));
    Some(TlsConfig {
        root_certificate: file("ca.crt"),
        certificate: file("server.crt"),
        private_key: file("server.key"),
        disable_client_auth: args.mode == "tls",
    })
}

fn start_watchdog(timeout: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("interop_aggregator: timed out after {:.0} s", timeout.as_secs_f64());
        std::process::exit(124);
    });
}

fn main() {
    let args = parse_args();
    start_watchdog(args.timeout);

    let logic = Arc::new(PatternAggregator {
        federation: Federation {
            aggregator_uuid: args.aggregator_uuid.clone(),
            federation_uuid: args.federation_uuid.clone(),
            single_col_cert_common_name: String::new(),
            authorized_collaborators: args.collaborators.clone(),
        },
        started: Instant::now(),
        model: Bytes::from(pattern(SEED_AGGREGATED, args.size)),
        expected_upload: pattern(SEED_UPLOADED, args.size),
        serve_forever: args.serve_forever,
        seen: Mutex::default(),
    });
    let config = ServerConfig {
        host: args.host.clone(),
        port: args.port,
        tls: tls_config(&args),
        auth_failure_max_delay: args.auth_delay,
        quit_poll_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    };

    let server_logic: Arc<dyn AggregatorLogic> = logic.clone();
    let serve_forever = args.serve_forever;
    let outcome = openfl_transport::runtime::block_on(async move {
        let server = Arc::new(AggregatorServer::start(config, server_logic).await?);
        emit(&format!("{{\"listening\": {}}}", server.local_addr().port()));
        if serve_forever {
            // End of file on stdin stops the server (the test closes the pipe).
            let stopper = Arc::clone(&server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock().by_ref(), &mut std::io::sink());
                stopper.stop();
            });
        }
        server.serve().await
    });
    match outcome {
        Ok(Ok(())) => {
            emit(&logic.report());
            std::process::exit(0);
        }
        Ok(Err(e)) => {
            eprintln!("interop_aggregator: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("interop_aggregator: {e}");
            std::process::exit(1);
        }
    }
}
