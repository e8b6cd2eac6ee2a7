//! Throughput benchmark: our collaborator client against our aggregator
//! server over mTLS on 127.0.0.1, printing a table.
//!
//!     cargo run --release --example bench_transfer [-- SIZE_MIB [ROUNDS]]
//!
//! Rows: GetAggregatedTensor download and SendLocalTaskResults upload of a
//! SIZE_MIB tensor (median of ROUNDS), and GetTasks requests per second with
//! 64 calls in flight on one connection. "peak RSS / payload" is the growth
//! of this process's peak resident memory during the transfer (client and
//! server together) divided by the payload size. The last row is the
//! ceiling: the same payload over one raw rustls mTLS stream on loopback
//! (no gRPC, no HTTP/2), measured in the same run. The OpenFL 1.6 comparison
//! runs in the interop suite (`make test-interop` prints its table).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openfl_transport::aggregator::*;
use openfl_transport::proto::NamedTensor;
use openfl_transport::tls::{PemSource, TlsConfig};
use openfl_transport::Result;

#[path = "../tests/interop/peers/support/mod.rs"]
mod support;

use support::payload::{named_tensor, pattern, train_task};

struct BenchLogic {
    federation: Federation,
    tensor: NamedTensor,
}

impl AggregatorLogic for BenchLogic {
    fn federation(&self) -> &Federation {
        &self.federation
    }
    fn get_tasks(&self, _: &str) -> Result<TasksReply> {
        Ok(TasksReply { round_number: 0, tasks: vec![train_task()], sleep_time: 0, quit: false })
    }
    fn get_aggregated_tensor(&self, _: &str, _: &TensorRequest) -> Result<NamedTensor> {
        Ok(self.tensor.clone())
    }
    fn send_local_task_results(&self, _: &str, results: TaskResults) -> Result<()> {
        assert_eq!(results.tensors.len(), 1);
        Ok(())
    }
    fn all_quit_jobs_sent(&self) -> bool {
        false
    }
}

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "bench-ca");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |cn: &str, sans: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: leaf("localhost", vec!["localhost".into(), "127.0.0.1".into()]),
        client: leaf("col1", vec![]),
    }
}

fn tls(ca: &str, identity: &(String, String)) -> TlsConfig {
    TlsConfig {
        root_certificate: Some(PemSource::Pem(ca.as_bytes().to_vec())),
        certificate: Some(PemSource::Pem(identity.0.as_bytes().to_vec())),
        private_key: Some(PemSource::Pem(identity.1.as_bytes().to_vec())),
        disable_client_auth: false,
        crls: Vec::new(),
    }
}

/// The benchmark's tensor: pattern(0, size), described as a flat uint8 array.
fn tensor(size: usize) -> NamedTensor {
    named_tensor("model_weights", Bytes::from(pattern(0, size)), 0, vec!["model".into()])
}

/// A memory figure of this process from `/proc/self/status` (`field` is
/// e.g. "VmRSS:"), in bytes; 0 where unavailable.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Peak resident set size of this process, in bytes.
fn peak_rss() -> u64 {
    proc_status_bytes("VmHWM:")
}

/// Resets the peak to the current RSS (Linux `clear_refs` value 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Resident set size of this process, in bytes.
fn current_rss() -> u64 {
    proc_status_bytes("VmRSS:")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn measure<F, Fut>(rounds: usize, payload: usize, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut rates = Vec::new();
    let mut rss_ratio: f64 = 0.0;
    for _ in 0..rounds {
        reset_peak_rss();
        let base = current_rss();
        let started = Instant::now();
        f().await;
        let secs = started.elapsed().as_secs_f64();
        rates.push(payload as f64 / secs / (1 << 20) as f64);
        rss_ratio = rss_ratio.max(peak_rss().saturating_sub(base) as f64 / payload as f64);
    }
    (median(rates), rss_ratio)
}

/// A rustls config pair (mTLS, as the transport uses) from the bench PKI.
fn raw_tls_configs(pki: &Pki) -> (rustls::ServerConfig, rustls::ClientConfig) {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let cert = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let key = |pem: &str| PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(&pki.ca)).unwrap();
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::clone(&roots)).build().unwrap();
    let server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert(&pki.server.0)], key(&pki.server.1))
        .unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert(&pki.client.0)], key(&pki.client.1))
        .unwrap();
    (server, client)
}

/// MiB/s of `rounds` payloads of `size` bytes written over one rustls mTLS
/// stream on 127.0.0.1 and read on the other end into a reused buffer.
async fn raw_rustls_rate(pki: &Pki, size: usize, rounds: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server_config, client_config) = raw_tls_configs(pki);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        while total < size * rounds {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended early");
            total += n;
        }
        tls.write_all(b"k").await.unwrap();
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let payload = pattern(0, size);
    // Timed until the reader has received everything and acknowledged it.
    let started = Instant::now();
    for _ in 0..rounds {
        for chunk in payload.chunks(1 << 20) {
            tls.write_all(chunk).await.unwrap();
        }
    }
    tls.flush().await.unwrap();
    let mut ack = [0u8; 1];
    tls.read_exact(&mut ack).await.unwrap();
    let rate = (size * rounds) as f64 / started.elapsed().as_secs_f64() / (1 << 20) as f64;
    reader.await.unwrap();
    rate
}

async fn get_tasks_rate(client: Arc<AggregatorClient>, in_flight: usize, duration: Duration) -> f64 {
    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let client = Arc::clone(&client);
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                client.get_tasks("col1").await.expect("GetTasks");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    total as f64 / duration.as_secs_f64()
}

/// GetTasks against the built-in FedAvg, whose calls run on the async
/// workers (the row above goes through the bounded blocking pool, as C
/// callbacks do).
async fn fedavg_get_tasks_rate(pki: &Pki, federation: &Federation) -> f64 {
    let mut model = openfl_transport::fedavg::Model::new();
    model.insert("w".into(), openfl_transport::fedavg::Tensor::scalar(0.0));
    let fedavg = openfl_transport::fedavg::FedAvg::new(openfl_transport::fedavg::FedAvgOptions {
        aggregator_uuid: federation.aggregator_uuid.clone(),
        federation_uuid: federation.federation_uuid.clone(),
        collaborators: vec!["col1".into()],
        initial_model: model,
        ..Default::default()
    })
    .expect("FedAvg");
    let config = AggregatorServerOptions {
        host: "127.0.0.1".into(),
        tls: Some(tls(&pki.ca, &pki.server)),
        auth_failure_max_delay: Duration::ZERO,
        ..AggregatorServerOptions::default()
    };
    let server = AggregatorServer::start(config, Arc::new(fedavg)).await.expect("FedAvg server start");
    let mut client_config = AggregatorClientOptions::new("localhost", server.local_addr().port());
    client_config.connect.tls = Some(tls(&pki.ca, &pki.client));
    client_config.federation = federation.clone();
    let client = Arc::new(AggregatorClient::new(client_config).expect("client"));
    client.get_tasks("col1").await.expect("warm-up");
    let rate = get_tasks_rate(client, 64, Duration::from_secs(3)).await;
    server.shutdown().await.expect("shutdown");
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size_mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let size = size_mib << 20;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = pki();
    let federation = Federation {
        aggregator_uuid: "agg".into(),
        federation_uuid: "fed".into(),
        single_col_cert_common_name: String::new(),
        authorized_collaborators: vec!["col1".into()],
    };
    let logic = Arc::new(BenchLogic { federation: federation.clone(), tensor: tensor(size) });
    let config = AggregatorServerOptions {
        host: "127.0.0.1".into(),
        tls: Some(tls(&pki.ca, &pki.server)),
        auth_failure_max_delay: Duration::ZERO,
        ..AggregatorServerOptions::default()
    };
    let server = AggregatorServer::start(config, logic).await.expect("server start");
    let mut client_config = AggregatorClientOptions::new("localhost", server.local_addr().port());
    client_config.connect.tls = Some(tls(&pki.ca, &pki.client));
    client_config.federation = federation.clone();
    let federation_of_client = federation;
    let client = Arc::new(AggregatorClient::new(client_config).expect("client"));
    client.get_tasks("col1").await.expect("warm-up");

    let request = TensorRequest { tensor_name: "model_weights".into(), tags: vec!["model".into()], ..Default::default() };
    let (down, down_rss) = measure(rounds, size, || async {
        let t = client.get_aggregated_tensor("col1", &request).await.expect("download");
        assert_eq!(t.data_bytes.len(), size);
    })
    .await;
    let upload = TaskResults { round_number: 0, task_name: "train".into(), data_size: 1, tensors: vec![tensor(size)] };
    let (up, up_rss) = measure(rounds, size, || async {
        client.send_local_task_results("col1", &upload).await.expect("upload");
    })
    .await;
    drop(upload);
    let rate = get_tasks_rate(Arc::clone(&client), 64, Duration::from_secs(3)).await;
    let fedavg_rate = fedavg_get_tasks_rate(&pki, &federation_of_client).await;
    let raw = raw_rustls_rate(&pki, size, rounds).await;

    println!("openfl-transport bench: mTLS, 127.0.0.1, {size_mib} MiB payload, median of {rounds}");
    println!("| transfer                          | MiB/s   | peak RSS / payload |");
    println!("|-----------------------------------|---------|--------------------|");
    println!("| download (GetAggregatedTensor)    | {down:7.1} | {down_rss:18.2} |");
    println!("| upload (SendLocalTaskResults)     | {up:7.1} | {up_rss:18.2} |");
    println!("| GetTasks, 64 in flight            | {rate:7.0} req/s (blocking logic) |");
    println!("| GetTasks, 64 in flight, FedAvg    | {fedavg_rate:7.0} req/s (async path)     |");
    println!("| reference: raw rustls mTLS stream | {raw:7.1} | (same run, no gRPC)  |");
    println!("download {:.0}% and upload {:.0}% of the raw rustls stream", 100.0 * down / raw, 100.0 * up / raw);
    server.shutdown().await.expect("shutdown");
}
