//! Bounds that keep a hostile or unlucky peer from stalling a server, each
//! shown by the attack itself on 127.0.0.1: a stream flood on one
//! connection, connections that never finish their handshake or preface,
//! idle connections, an oversize unary body, uploads over the in-flight
//! memory budget or the tensor cap, and an accept loop out of file
//! descriptors (in a child process, so no other test loses descriptors).

mod common;
mod raw_h2;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use openfl_transport::aggregator::{AggregatorServer, AggregatorServerOptions, TasksReply};
use openfl_transport::proto::aggregator::{GetTasksRequest, MessageHeader, TaskResults};
use openfl_transport::proto::{DataStream, NamedTensor};
use prost::Message;
use raw_h2::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const GET_TASKS: &str = "/openfl.aggregator.Aggregator/GetTasks";
const UPLOAD: &str = "/openfl.aggregator.Aggregator/SendLocalTaskResults";
const RESOURCE_EXHAUSTED: i32 = 8;

/// Short bounds so the attacks show within a test's time.
fn bounded(mut config: AggregatorServerOptions) -> AggregatorServerOptions {
    config.limits.max_concurrent_streams = 20;
    config.limits.handshake_timeout = Duration::from_millis(500);
    config.limits.idle_timeout = Duration::from_millis(700);
    config.limits.max_unary_request_size = 64 << 10;
    config.upload_memory_budget = 8 << 20;
    config.max_tensors_per_upload = 1000;
    config
}

async fn start_bounded(tls: Option<openfl_transport::tls::TlsConfig>) -> (AggregatorServer, Arc<TestLogic>) {
    let logic = TestLogic::new();
    logic.set_tasks_reply(TasksReply { round_number: 4, sleep_time: 1, ..TasksReply::default() });
    let server = start_server_with(bounded(server_config(0, tls)), Arc::clone(&logic)).await;
    (server, logic)
}

fn header() -> Option<MessageHeader> {
    Some(MessageHeader {
        sender: "col1".into(),
        receiver: AGGREGATOR_UUID.into(),
        federation_uuid: FEDERATION_UUID.into(),
        single_col_cert_common_name: String::new(),
    })
}

/// A GetTasks answered by a fresh client, and how long it took.
async fn timed_get_tasks(port: u16) -> Duration {
    let client = client(port, None);
    let started = Instant::now();
    let reply = within(10, client.get_tasks("col1")).await.expect("GetTasks of another collaborator");
    assert_eq!(reply.round_number, 4);
    started.elapsed()
}

/// Waits until the server closes `tcp` (EOF or reset), reading and dropping
/// what it sends; panics after `secs`.
async fn closed_within(tcp: &mut TcpStream, secs: u64) -> Duration {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    within(secs, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_on_one_connection_are_refused() {
    let (server, _logic) = start_bounded(None).await;
    let port = server.local_addr().port();
    let mut raw = RawFrames::connect(port).await;
    // 50 GetTasks streams whose bodies never end, ignoring the server's
    // SETTINGS_MAX_CONCURRENT_STREAMS of 20.
    for i in 0..50u32 {
        raw.open_stream(2 * i + 1, GET_TASKS).await;
    }
    let mut refused = std::collections::BTreeSet::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(frame) = raw.read_frame().await {
            if frame.kind == FRAME_RST_STREAM && frame.payload[..] == REFUSED_STREAM.to_be_bytes() {
                refused.insert(frame.stream);
                if refused.len() == 30 {
                    break;
                }
            }
        }
    })
    .await;
    assert_eq!(refused.len(), 30, "streams 21 to 50 must be refused, got {refused:?}");
    assert!(refused.iter().all(|id| *id > 39), "the first 20 streams are served: {refused:?}");
    // Another collaborator is served at once meanwhile.
    let took = timed_get_tasks(port).await;
    assert!(took < Duration::from_secs(1), "GetTasks took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_completes_tls_is_closed() {
    let (server, _logic) = start_bounded(Some(server_tls())).await;
    let port = server.local_addr().port();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let took = closed_within(&mut silent, 5).await;
    assert!(took >= Duration::from_millis(400), "closed before the timeout: {took:?}");
    // A half-sent ClientHello is closed the same way.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    closed_within(&mut stalled, 5).await;
    // Honest mTLS collaborators still get in.
    let client = AggregatorClientTls::col1(port);
    within(10, client.get_tasks("col1")).await.expect("GetTasks over mTLS");
}

/// The library's client with col1's certificate.
struct AggregatorClientTls;

impl AggregatorClientTls {
    fn col1(port: u16) -> openfl_transport::aggregator::AggregatorClient {
        client(port, Some(client_tls(&pki().col1)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_the_http2_preface_is_closed() {
    let (server, _logic) = start_bounded(None).await;
    let port = server.local_addr().port();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let took = closed_within(&mut silent, 5).await;
    assert!(took >= Duration::from_millis(400), "closed before the timeout: {took:?}");
    let mut partial = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, b"PRI * HTTP/2.0\r\n").await.unwrap();
    closed_within(&mut partial, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    let (server, _logic) = start_bounded(None).await;
    let port = server.local_addr().port();
    // Twenty connections that said hello and then nothing.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut raw = RawFrames::connect(port).await;
        raw.read_frame().await.expect("the server's SETTINGS");
        idle.push(raw);
    }
    // One with a call in flight all along (its request body stays open).
    let mut busy_send = connect(port).await;
    let mut busy = start_call(&mut busy_send, GET_TASKS, &[]).await;
    let started = Instant::now();
    for raw in &mut idle {
        within(5, async {
            while let Some(frame) = raw.read_frame().await {
                let _ = frame; // GOAWAY, then the close
            }
        })
        .await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "closed before the idle timeout: {took:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The busy connection is still there: its call completes.
    busy.send_message(&GetTasksRequest { header: header() }, true);
    assert_eq!(busy.grpc_status(5).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_get_tasks_body_is_refused_before_it_is_buffered() {
    let (server, logic) = start_bounded(None).await;
    let port = server.local_addr().port();
    let mut send = connect(port).await;
    // A GetTasks message announcing 256 MiB; only 1 MiB is ever sent.
    let mut call = start_call(&mut send, GET_TASKS, &[]).await;
    let mut prefix = BytesMut::new();
    prefix.put_u8(0);
    prefix.put_u32(256 << 20);
    call.send_bytes(prefix.freeze(), false);
    // The server may refuse on the prefix alone, before this is sent.
    call.offer_bytes(Bytes::from(vec![0u8; 1 << 20]), false);
    assert_eq!(call.grpc_status(5).await, Some(RESOURCE_EXHAUSTED));
    // Just over the limit, sent whole and ended.
    let mut call = start_call(&mut send, GET_TASKS, &[]).await;
    let big = GetTasksRequest {
        header: Some(MessageHeader { sender: "x".repeat(64 << 10), ..header().unwrap() }),
    };
    call.send_message(&big, true);
    assert_eq!(call.grpc_status(5).await, Some(RESOURCE_EXHAUSTED));
    assert_eq!(logic.get_tasks_calls(), 0);
    // A normal GetTasks on the same connection is answered.
    let mut call = start_call(&mut send, GET_TASKS, &[]).await;
    call.send_message(&GetTasksRequest { header: header() }, true);
    assert_eq!(call.grpc_status(5).await, Some(0));
}

/// `encoded` as SendLocalTaskResults chunks of 1 MiB.
fn upload_chunks(encoded: &[u8]) -> Vec<Bytes> {
    encoded
        .chunks(1 << 20)
        .map(|chunk| grpc_frame(&DataStream { size: chunk.len() as u32, npbytes: Bytes::copy_from_slice(chunk) }))
        .collect()
}

fn encoded_results(tensors: Vec<NamedTensor>) -> Vec<u8> {
    TaskResults { header: header(), round_number: 3, task_name: "train".into(), data_size: 10, tensors }
        .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_in_flight_budget_is_refused() {
    let (server, logic) = start_bounded(None).await;
    let port = server.local_addr().port();
    let mut send = connect(port).await;
    // A first upload holds 6 MiB of the 8 MiB budget and does not end.
    let mut first = start_call(&mut send, UPLOAD, &[]).await;
    for chunk in upload_chunks(&vec![7u8; 6 << 20]) {
        first.send_bytes(chunk, false);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second upload of 4 MiB does not fit.
    let payload = encoded_results(vec![tensor("w", 4 << 20, 3)]);
    let mut second = start_call(&mut send, UPLOAD, &[]).await;
    let chunks = upload_chunks(&payload);
    let last = chunks.len() - 1;
    // The server may refuse (and end the stream) before the last chunk.
    for (i, chunk) in chunks.into_iter().enumerate() {
        if !second.offer_bytes(chunk, i == last) {
            break;
        }
    }
    assert_eq!(second.grpc_status(5).await, Some(RESOURCE_EXHAUSTED));
    // Once the first upload is gone, the same upload fits.
    first.reset(h2::Reason::CANCEL);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = client(port, None);
    let results = task_results(4 << 20, 3);
    within(10, client.send_local_task_results("col1", &results)).await.expect("upload within the budget");
    assert_eq!(logic.results().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_more_tensors_than_the_cap_is_refused() {
    let (server, logic) = start_bounded(None).await;
    let port = server.local_addr().port();
    let tiny = |i: usize| NamedTensor { name: format!("t{i}"), data_bytes: Bytes::from_static(&[1]), ..Default::default() };
    let mut send = connect(port).await;
    for (count, expected) in [(1001usize, RESOURCE_EXHAUSTED), (1000, 0)] {
        let payload = encoded_results((0..count).map(tiny).collect());
        let mut call = start_call(&mut send, UPLOAD, &[]).await;
        let chunks = upload_chunks(&payload);
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            call.send_bytes(chunk, i == last);
        }
        assert_eq!(call.grpc_status(10).await, Some(expected), "{count} tensors");
    }
    assert_eq!(logic.results().len(), 1);
    assert_eq!(logic.results()[0].1.tensors.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_tiny_tensors_are_refused_by_default() {
    let logic = TestLogic::new();
    let server = start_server_with(server_config(0, None), Arc::clone(&logic)).await;
    let port = server.local_addr().port();
    // Field 5 (tensors) holding an empty NamedTensor: two bytes each.
    let mut payload = encoded_results(vec![]);
    for _ in 0..1_000_000 {
        payload.extend_from_slice(&[0x2a, 0x00]);
    }
    let mut send = connect(port).await;
    let mut call = start_call(&mut send, UPLOAD, &[]).await;
    let chunks = upload_chunks(&payload);
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        call.send_bytes(chunk, i == last);
    }
    assert_eq!(call.grpc_status(10).await, Some(RESOURCE_EXHAUSTED));
    assert!(logic.results().is_empty());
}

// ---------------------------------------------------------------------------
// Out of file descriptors: the server runs in a child process (this test
// binary again, running `fd_exhaustion_child`), which fills its descriptor
// table on command.
// ---------------------------------------------------------------------------

const CHILD_ENV: &str = "OFL_SERVER_BOUNDS_CHILD";

/// The child: a server, then descriptors taken and given back on command
/// (one line each on stdin; answers on stdout).
#[test]
#[ignore = "run by out_of_file_descriptors_the_accept_loop_backs_off_and_recovers"]
fn fd_exhaustion_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let logic = TestLogic::new();
    logic.set_tasks_reply(TasksReply { round_number: 4, ..TasksReply::default() });
    let server = runtime.block_on(AggregatorServer::start(server_config(0, None), logic)).unwrap();
    // Written to the descriptor itself: the test harness captures println!.
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    say(format!("PORT {}", server.local_addr().port()));
    let mut held: Vec<std::fs::File> = Vec::new();
    for line in std::io::stdin().lines() {
        match line.unwrap().trim() {
            "exhaust" => {
                while let Ok(file) = std::fs::File::open("/dev/null") {
                    held.push(file);
                }
                say(format!("EXHAUSTED {}", held.len()));
            }
            "release" => {
                held.clear();
                say("RELEASED".into());
            }
            _ => break,
        }
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

struct Child {
    process: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Child {
    /// Starts the child server; its output lines arrive through a channel.
    fn start() -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args(["fd_exhaustion_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the child server");
        let stdout = process.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { process, lines }
    }

    /// What follows `prefix` on the child's next line holding it (within 60 s).
    async fn expect_line(&mut self, prefix: &str) -> String {
        within(60, async {
            while let Some(line) = self.lines.recv().await {
                // The harness may print its "test ... " on the same line first.
                if let Some(at) = line.find(prefix) {
                    return line[at + prefix.len()..].trim().to_string();
                }
            }
            panic!("the child ended before printing {prefix}");
        })
        .await
    }

    fn command(&mut self, command: &str) {
        let stdin = self.process.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    let mut child = Child::start();
    let port: u16 = child.expect_line("PORT").await.parse().unwrap();
    let pid = child.process.id();

    // An existing connection, used before and during the exhaustion.
    let existing = client(port, None);
    within(10, existing.get_tasks("col1")).await.expect("GetTasks before");

    child.command("exhaust");
    let held = child.expect_line("EXHAUSTED").await;
    // Connections the server cannot accept now (the kernel queues them).
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(TcpStream::connect(("127.0.0.1", port)).await.expect("queued by the kernel"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ticks_per_second = 100.0; // USER_HZ
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = (cpu_ticks(pid) - before) as f64 / ticks_per_second / 2.0;
    eprintln!("server CPU over 2 s with {held} descriptors held and 3 connections queued: {:.1} %", cpu * 100.0);
    assert!(cpu < 0.2, "the server used {:.0} % of a core with {held} descriptors held", cpu * 100.0);

    let started = Instant::now();
    within(5, existing.get_tasks("col1")).await.expect("GetTasks on the existing connection while out of fds");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "GetTasks took {took:?}");

    child.command("release");
    child.expect_line("RELEASED").await;
    drop(waiting);
    let fresh = client(port, None);
    within(10, fresh.get_tasks("col2")).await.expect("GetTasks on a new connection after the release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_director_refuses_an_oversize_unary_body_and_stream_floods_too() {
    use openfl_transport::director::{ApproveAll, DirectorServerOptions, DirectorServer};
    let archives = tempfile::tempdir().unwrap();
    let mut config =
        DirectorServerOptions { host: "127.0.0.1".into(), archive_dir: archives.path().to_path_buf(), ..DirectorServerOptions::default() };
    config.limits.max_concurrent_streams = 5;
    let server = within(10, DirectorServer::start(config, Arc::new(ApproveAll))).await.expect("director start");
    let port = server.local_addr().port();
    // UpdateShardInfo announcing 256 MiB: refused from its prefix.
    let mut send = connect(port).await;
    let mut call = start_call(&mut send, "/openfl.director.Director/UpdateShardInfo", &[]).await;
    let mut prefix = BytesMut::new();
    prefix.put_u8(0);
    prefix.put_u32(256 << 20);
    call.send_bytes(prefix.freeze(), false);
    assert_eq!(call.grpc_status(5).await, Some(RESOURCE_EXHAUSTED));
    // More GetEnvoys streams than allowed on one connection: refused.
    let mut raw = RawFrames::connect(port).await;
    for i in 0..8u32 {
        raw.open_stream(2 * i + 1, "/openfl.director.Director/GetEnvoys").await;
    }
    let mut refused = 0;
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(frame) = raw.read_frame().await {
            if frame.kind == FRAME_RST_STREAM && frame.payload[..] == REFUSED_STREAM.to_be_bytes() {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    })
    .await;
    assert_eq!(refused, 3);
}
