//! The GetTasks load: the load-generator role (N separate mTLS connections,
//! each one tonic channel with one GetTasks in flight) and the run of one
//! server against it, with the server's CPU over the measured window.
//!
//! The generator is plain tonic (not our client), the same for every server,
//! so that the ratios compare servers only.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use openfl_transport::proto::aggregator::aggregator_client::AggregatorClient;
use openfl_transport::proto::aggregator::{GetTasksRequest, MessageHeader};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::codegen::{http, Service};
use tonic::transport::{Channel, Endpoint};

use crate::pki::{self, Pki};
use crate::roles::{self, Args, Role};
use crate::stats::ProcStats;

/// Whether the `gettasks-c-nonblock` role (C callbacks declared non-blocking
/// with `ofl_aggregator_callbacks_set_may_block`) is measured.
pub const C_NONBLOCKING: bool = true;

/// The GetTasks servers, by table label and role name; the first is the
/// reference the others are compared with.
pub fn servers() -> Vec<(&'static str, &'static str)> {
    let mut servers = vec![
        ("bare tonic", "gettasks-bare"),
        ("ours, Rust logic", "gettasks-rust"),
        ("ours, C callbacks", "gettasks-c"),
    ];
    if C_NONBLOCKING {
        servers.push(("ours, C callbacks, non-blocking", "gettasks-c-nonblock"));
    }
    servers
}

/// Connects over TCP (TCP_NODELAY) and mTLS to one fixed address.
#[derive(Clone)]
struct TlsConnector {
    port: u16,
    tls: tokio_rustls::TlsConnector,
}

impl Service<http::Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect(("127.0.0.1", this.port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from("localhost").expect("valid name");
            Ok(TokioIo::new(this.tls.connect(name, tcp).await?))
        })
    }
}

async fn connect_all(connector: TlsConnector, n: usize) -> Result<Vec<Channel>, String> {
    let endpoint =
        Endpoint::from_static("http://localhost").connect_timeout(Duration::from_secs(30));
    let mut channels = Vec::with_capacity(n);
    // In batches, so that handshakes do not overflow the listen backlog.
    for start in (0..n).step_by(100) {
        let batch: Vec<_> = (start..n.min(start + 100))
            .map(|_| {
                let (endpoint, connector) = (endpoint.clone(), connector.clone());
                tokio::spawn(async move { endpoint.connect_with_connector(connector).await })
            })
            .collect();
        for task in batch {
            let channel = task
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("connecting: {e:?}"))?;
            channels.push(channel);
        }
    }
    Ok(channels)
}

/// GetTasks in a loop on one channel as collaborator `index`, counting answers.
async fn worker(channel: Channel, index: usize, done: Arc<AtomicU64>) {
    let mut client = AggregatorClient::new(channel);
    let request = GetTasksRequest {
        header: Some(MessageHeader {
            sender: pki::collaborator(index),
            receiver: pki::AGGREGATOR_UUID.into(),
            federation_uuid: pki::FEDERATION_UUID.into(),
            single_col_cert_common_name: pki::CLIENT_CN.into(),
        }),
    };
    loop {
        match client.get_tasks(request.clone()).await {
            Ok(reply) if reply.get_ref().tasks.len() == 1 => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(reply) => roles::fail("load", format!("GetTasks answered {:?}", reply.get_ref())),
            Err(status) => roles::fail(
                "load",
                format!("GetTasks of {}: {status}", pki::collaborator(index)),
            ),
        }
    }
}

/// Role `load --pki DIR --port P --conns N --warmup S --window S`: prints
/// `START` when the measured window begins and `DONE <answers> <seconds>
/// <own CPU seconds>` when it ends, then exits.
pub fn role(args: &Args) -> ! {
    let parsed = (|| -> Result<_, String> {
        let pki = Pki::at(args.str("pki")?);
        Ok((
            pki::rustls_client(&pki)?,
            args.num::<u16>("port")?,
            args.num::<usize>("conns")?,
            args.secs("warmup")?,
            args.secs("window")?,
        ))
    })();
    let (config, port, n, warmup, window) = parsed.unwrap_or_else(|e| roles::fail("load", e));
    let connector = TlsConnector {
        port,
        tls: tokio_rustls::TlsConnector::from(config),
    };
    roles::runtime().block_on(async move {
        let channels = connect_all(connector, n)
            .await
            .unwrap_or_else(|e| roles::fail("load", e));
        let done = Arc::new(AtomicU64::new(0));
        for (i, channel) in channels.into_iter().enumerate() {
            tokio::spawn(worker(channel, i + 1, Arc::clone(&done)));
        }
        tokio::time::sleep(warmup).await;
        let (count, started, cpu) = (
            done.load(Ordering::Relaxed),
            Instant::now(),
            ProcStats::current(),
        );
        println!("START");
        tokio::time::sleep(window).await;
        let (answers, secs) = (
            done.load(Ordering::Relaxed) - count,
            started.elapsed().as_secs_f64(),
        );
        let cpu = ProcStats::current().since(&cpu).cpu();
        println!("DONE {answers} {secs:.6} {cpu:.6}");
        std::process::exit(0)
    })
}

/// One server's figures at one N.
#[derive(Clone, Copy, Debug)]
pub struct LoadResult {
    /// Answers per second.
    pub rate: f64,
    /// Server CPU seconds per answer.
    pub cpu_per_request: f64,
    /// The load generator's CPU seconds per answer (it shares the cores).
    pub client_cpu_per_request: f64,
}

/// Each figure's median over repeated runs (taken separately).
pub fn median_of(runs: &[LoadResult]) -> LoadResult {
    let median = |f: fn(&LoadResult) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    LoadResult {
        rate: median(|r| r.rate),
        cpu_per_request: median(|r| r.cpu_per_request),
        client_cpu_per_request: median(|r| r.client_cpu_per_request),
    }
}

/// The timings of a GetTasks run.
pub struct Window {
    pub warmup: Duration,
    pub window: Duration,
}

/// Runs server role `server` against the generator with `n` connections.
pub fn run(server: &str, pki: &Pki, n: usize, timing: &Window) -> Result<LoadResult, String> {
    let dir = pki.dir.display().to_string();
    let mut server = Role::spawn(
        server,
        &[s("--pki"), dir.clone(), s("--collaborators"), n.to_string()],
    )?;
    let port = server.ready(Duration::from_secs(60))?;
    let mut load = Role::spawn(
        "load",
        &[
            s("--pki"),
            dir,
            s("--port"),
            port.to_string(),
            s("--conns"),
            n.to_string(),
            s("--warmup"),
            timing.warmup.as_secs_f64().to_string(),
            s("--window"),
            timing.window.as_secs_f64().to_string(),
        ],
    )?;
    load.expect("START", Duration::from_secs(120) + timing.warmup)?;
    let before = server.stats()?;
    let done = load.expect("DONE", timing.window + Duration::from_secs(30))?;
    let after = server.stats()?;
    load.finish(Duration::from_secs(10))?;
    server.finish(Duration::from_secs(10))?;
    let field = |i: usize| -> Result<f64, String> {
        done.get(i)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("bad DONE line {done:?}"))
    };
    let (answers, secs, client_cpu) = (field(0)?, field(1)?, field(2)?);
    if answers == 0.0 {
        return Err(format!("no GetTasks answered in the window (N={n})"));
    }
    Ok(LoadResult {
        rate: answers / secs,
        cpu_per_request: after.since(&before).cpu() / answers,
        client_cpu_per_request: client_cpu / answers,
    })
}

fn s(text: &str) -> String {
    text.to_string()
}
