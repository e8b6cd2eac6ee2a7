//! Transfers: our collaborator client against our aggregator server, and
//! the raw stream, each transfer in a fresh server process and a fresh
//! client process so that each side's CPU and peak RSS are that transfer's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openfl_transport::aggregator::{
    AggregatorClient, AggregatorClientOptions, TaskResults, TensorRequest,
};

use crate::ours::{max_message_size, payload, tensor};
use crate::pki::{self, Pki};
use crate::raw::print_result;
use crate::roles::{self, Args, Role};
use crate::stats::ProcStats;

/// Role `ours-client --pki DIR --port P --dir up|down --size BYTES`: one
/// GetAggregatedTensor or SendLocalTaskResults of an in-memory payload
/// (built before timing), timed from creating the client (connect and
/// handshake included) to the answer.
pub fn client_role(args: &Args) -> ! {
    let role = "ours-client";
    let parsed = (|| -> Result<_, String> {
        Ok((
            Pki::at(args.str("pki")?),
            args.num::<u16>("port")?,
            args.str("dir")? == "up",
            args.num::<usize>("size")?,
        ))
    })();
    let (pki, port, upload, size) = parsed.unwrap_or_else(|e| roles::fail(role, e));
    let mut options = AggregatorClientOptions::new("127.0.0.1", port);
    options.connect.tls = Some(pki::tls_config(&pki, false));
    options.connect.server_name = Some("localhost".into());
    options.federation = pki::federation(1);
    options.max_message_size = max_message_size(size);
    let results = upload.then(|| TaskResults {
        round_number: 0,
        task_name: "train".into(),
        data_size: 1,
        tensors: vec![tensor(payload(size))],
    });
    let request = TensorRequest {
        tensor_name: "model_weights".into(),
        tags: vec!["model".into()],
        ..Default::default()
    };
    let runtime = roles::runtime();
    let before = ProcStats::current();
    let started = Instant::now();
    let moved = runtime.block_on(async {
        let client = Arc::new(AggregatorClient::new(options)?);
        match &results {
            Some(results) => client
                .send_local_task_results(pki::CLIENT_CN, results)
                .await
                .map(|()| None),
            None => client
                .get_aggregated_tensor(pki::CLIENT_CN, &request)
                .await
                .map(Some),
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let figures = ProcStats::current().since(&before);
    match moved {
        Ok(Some(t)) if t.data_bytes.len() != size => roles::fail(
            role,
            format!("downloaded {} bytes, expected {size}", t.data_bytes.len()),
        ),
        Ok(_) => print_result(secs, &figures),
        Err(e) => roles::fail(role, format!("transfer: {e}")),
    }
}

/// Whose transfer: ours (gRPC) or the raw stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ours,
    Raw,
}

/// Direction, from the collaborator's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

impl Direction {
    pub fn arg(self) -> &'static str {
        match self {
            Direction::Upload => "up",
            Direction::Download => "down",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// The figures of one transfer.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub secs: f64,
    /// The client's CPU over the transfer and its peak RSS.
    pub client: ProcStats,
    /// The server's CPU over the transfer and its peak RSS.
    pub server: ProcStats,
}

/// One size and direction: every repetition of ours and of raw.
pub struct Cell {
    pub size: usize,
    pub direction: Direction,
    pub ours: Vec<Transfer>,
    pub raw: Vec<Transfer>,
}

/// Runs one transfer in two fresh processes.
fn run_one(kind: Kind, pki: &Pki, direction: Direction, size: usize) -> Result<Transfer, String> {
    let (server_role, client_role) = match kind {
        Kind::Ours => ("ours-server", "ours-client"),
        Kind::Raw => ("raw-server", "raw-client"),
    };
    let common = vec![
        "--pki".to_string(),
        pki.dir.display().to_string(),
        "--dir".into(),
        direction.arg().into(),
        "--size".into(),
        size.to_string(),
    ];
    // Generous bounds: 10 MiB/s at worst, on a busy machine.
    let bound = Duration::from_secs(60) + Duration::from_secs((size >> 20) as u64 / 10);
    let mut server = Role::spawn(server_role, &common)?;
    let port = server.ready(bound)?;
    let before = server.stats()?;
    let mut client_args = common;
    client_args.extend(["--port".to_string(), port.to_string()]);
    let mut client = Role::spawn(client_role, &client_args)?;
    let result = client.expect("RESULT", bound)?;
    let after = server.stats()?;
    client.finish(Duration::from_secs(30))?;
    server.finish(Duration::from_secs(30))?;
    let words: Vec<&str> = result.iter().map(String::as_str).collect();
    let secs: f64 = words
        .first()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("bad RESULT {words:?}"))?;
    let client = ProcStats::parse(&words[1..])?;
    Ok(Transfer {
        secs,
        client,
        server: after.since(&before),
    })
}

/// Every size and direction, `reps` times each, raw and ours alternating.
pub fn run_all(pki: &Pki, sizes_mib: &[usize], reps: usize) -> Result<Vec<Cell>, String> {
    let mut cells = Vec::new();
    for &mib in sizes_mib {
        for direction in [Direction::Upload, Direction::Download] {
            let mut cell = Cell {
                size: mib << 20,
                direction,
                ours: Vec::new(),
                raw: Vec::new(),
            };
            for rep in 0..reps {
                for kind in [Kind::Raw, Kind::Ours] {
                    let t = run_one(kind, pki, direction, cell.size)?;
                    eprintln!(
                        "bench: {} {mib} MiB {kind:?} #{}: {:.0} MiB/s, CPU client {:.2} s server {:.2} s",
                        direction.name(),
                        rep + 1,
                        mib as f64 / t.secs,
                        t.client.cpu(),
                        t.server.cpu()
                    );
                    match kind {
                        Kind::Ours => cell.ours.push(t),
                        Kind::Raw => cell.raw.push(t),
                    }
                }
            }
            cells.push(cell);
        }
    }
    Ok(cells)
}
