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

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use openfl_transport::aggregator::{AggregatorClient, ClientConfig, Federation, TaskResults, TensorRequest};
use openfl_transport::proto::{MetadataProto, NamedTensor};
use openfl_transport::retry::RetryPolicy;
use openfl_transport::tls::{PemSource, TlsConfig};
use openfl_transport::{ofl_code, Error};

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
    collaborator: String,
    cert: Option<String>,
    aggregator_uuid: String,
    federation_uuid: String,
    size: usize,
    spoof: Option<String>,
    retry_deadline: Duration,
    timeout: Duration,
}

const USAGE: &str = "usage: interop_collaborator --port PORT --mode mtls|tls|insecure [--certs DIR] \
[--host HOST] [--collaborator NAME] [--cert NAME] [--aggregator-uuid U] [--federation-uuid F] \
[--size-mib N] [--spoof NAME] [--retry-deadline SECS] [--timeout SECS]";

fn usage_error(message: &str) -> ! {
    eprintln!("interop_collaborator: {message}\n{USAGE}");
    std::process::exit(2);
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value.parse().unwrap_or_else(|_| usage_error(&format!("{flag}: not a number: {value:?}")))
}

fn parse_args() -> Args {
    let mut args = Args {
        host: "localhost".into(),
        port: 0,
        mode: String::new(),
        certs: None,
        collaborator: "col1".into(),
        cert: None,
        aggregator_uuid: "aggregator-uuid".into(),
        federation_uuid: "federation-uuid".into(),
        size: 64 << 20,
        spoof: None,
        retry_deadline: Duration::from_secs(20),
        timeout: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
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
            "--collaborator" => args.collaborator = value,
            "--cert" => args.cert = Some(value),
            "--aggregator-uuid" => args.aggregator_uuid = value,
            "--federation-uuid" => args.federation_uuid = value,
            "--size-mib" => {
                let mib: f64 = parse_number(&flag, &value);
                if !(0.0..=1024.0).contains(&mib) {
                    usage_error("--size-mib must be within 0..=1024");
                }
                args.size = (mib * MIB) as usize;
            }
            "--spoof" => args.spoof = Some(value),
            "--retry-deadline" => args.retry_deadline = Duration::from_secs_f64(parse_number(&flag, &value)),
            "--timeout" => args.timeout = Duration::from_secs_f64(parse_number(&flag, &value)),
            _ => usage_error(&format!("unknown option {flag}")),
        }
    }
    if args.port == 0 {
        usage_error("--port is required");
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

fn rate(nbytes: usize, seconds: f64) -> String {
    format!(
        "{{\"bytes\": {nbytes}, \"seconds\": {:.4}, \"mib_s\": {:.1}}}",
        seconds,
        nbytes as f64 / MIB / seconds.max(1e-9)
    )
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
    }
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(message: &str) -> ! {
    eprintln!("interop_collaborator: {message}");
    std::process::exit(1);
}

// ---------------------------------------------------------------------------
// The collaborator
// ---------------------------------------------------------------------------

fn client_config(args: &Args) -> ClientConfig {
    let mut config = ClientConfig::new(args.host.clone(), args.port);
    if args.mode != "insecure" {
        let certs = args.certs.clone().expect("checked by parse_args");
        let file = |name: String| Some(PemSource::File(certs.join(name)));
        let mut tls = TlsConfig {
            root_certificate: file("ca.crt".into()),
            disable_client_auth: args.mode == "tls",
            ..TlsConfig::default()
        };
        if args.mode == "mtls" {
            let cert = args.cert.clone().unwrap_or_else(|| args.collaborator.clone());
            tls.certificate = file(format!("{cert}.crt"));
            tls.private_key = file(format!("{cert}.key"));
        }
        config.connect.tls = Some(tls);
    }
    config.federation = Federation {
        aggregator_uuid: args.aggregator_uuid.clone(),
        federation_uuid: args.federation_uuid.clone(),
        ..Federation::default()
    };
    config.retry = RetryPolicy { deadline: Some(args.retry_deadline), ..RetryPolicy::default() };
    config
}

async fn spoof(client: AggregatorClient, name: String) -> String {
    let (code, details) = match client.get_tasks(&name).await {
        Ok(_) => ("OK", String::new()),
        Err(e) => (code_name(e.code()), e.message().to_string()),
    };
    format!("{{\"spoof\": {}, \"code\": {}, \"details\": {}}}", json_str(&name), json_str(code), json_str(&details))
}

async fn round_trip(client: AggregatorClient, name: String, size: usize) -> Result<String, String> {
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

    let results = TaskResults {
        round_number: 0,
        task_name: "train".into(),
        data_size: 100,
        tensors: vec![NamedTensor {
            name: "model_weights".into(),
            round_number: 0,
            lossless: true,
            report: false,
            tags: vec!["trained".into()],
            transformer_metadata: vec![MetadataProto { int_list: vec![size as i32], ..Default::default() }],
            data_bytes: Bytes::from(pattern(SEED_UPLOADED, size)),
        }],
    };
    let t0 = Instant::now();
    client.send_local_task_results(&name, &results).await.map_err(step("SendLocalTaskResults"))?;
    let upload = rate(size, t0.elapsed().as_secs_f64());

    Ok(format!(
        "{{\"tasks\": {}, \"round_number\": {}, \"sleep_time\": {}, \"quit\": {}, \"tensor\": {}, \
         \"download\": {}, \"upload\": {}}}",
        json_list(&tasks.tasks, |t| format!(
            "{{\"name\": {}, \"function_name\": {}, \"task_type\": {}, \"apply_local\": {}}}",
            json_str(&t.name),
            json_str(&t.function_name),
            json_str(&t.task_type),
            t.apply_local
        )),
        tasks.round_number,
        tasks.sleep_time,
        tasks.quit,
        received,
        download,
        upload,
    ))
}

fn main() {
    let args = parse_args();
    let timeout = args.timeout;
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("interop_collaborator: timed out after {:.0} s", timeout.as_secs_f64());
        std::process::exit(124);
    });

    // The client must be made on the runtime: its channel spawns a task there.
    let config = client_config(&args);
    let mode = json_str(&args.mode);
    let (spoof_name, name, size) = (args.spoof.clone(), args.collaborator.clone(), args.size);
    let outcome = openfl_transport::runtime::block_on(async move {
        let client = AggregatorClient::new(config).map_err(|e| format!("client: {e}"))?;
        match spoof_name {
            Some(spoofed) => Ok(spoof(client, spoofed).await),
            None => round_trip(client, name, size).await,
        }
    });
    match outcome {
        Ok(Ok(body)) => {
            // Splice "mode" into the object, as openfl_client.py does.
            emit(&format!("{{\"mode\": {mode}, {}", &body[1..]));
            std::process::exit(0);
        }
        Ok(Err(message)) => fail(&message),
        Err(e) => fail(&e.to_string()),
    }
}
