//! The threads the library starts: none before the first client creation
//! (the header says so), named "ofl-worker" (the async workers) and
//! "ofl-blocking" (the blocking threads that run C callbacks), and every one
//! of them blocks every signal but the synchronous
//! fault signals, so that a host's handlers run only on the host's threads.
//! The calling thread's own mask is left as it was.
//!
//! One test in its own binary: no other test may start the runtime first.

use std::ffi::CString;
use std::fs;
use std::ptr;

use openfl_transport::ffi::aggregator::client::{ofl_aggregator_client, ofl_aggregator_client_free, ofl_aggregator_client_new};
use openfl_transport::ffi::aggregator::client_options::{
    ofl_aggregator_client_options, ofl_aggregator_client_options_free, ofl_aggregator_client_options_new,
    ofl_aggregator_client_options_set_tls,
};

/// The names of the runtime's worker and blocking threads.
const WORKER: &str = "ofl-worker";
const BLOCKING: &str = "ofl-blocking";

/// Signals a thread cannot block (SIGKILL, SIGSTOP), glibc's internal ones
/// (32, 33: glibc's pthread_sigmask never blocks them), and the fault
/// signals the library leaves unblocked on purpose.
const NEVER_BLOCKED: [u32; 8] = [9, 19, 32, 33, 11, 7, 8, 4];

/// The blocked-signal mask in a `/proc/.../status` text.
fn sig_blk(status: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with("SigBlk:")).expect("a SigBlk line");
    u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).expect("SigBlk in hex")
}

/// The signals (1..=64) that `mask` leaves unblocked, minus those that are
/// never blocked.
fn unblocked(mask: u64) -> Vec<u32> {
    (1..=64u32).filter(|s| mask & (1u64 << (s - 1)) == 0 && !NEVER_BLOCKED.contains(s)).collect()
}

/// (thread id, name, SigBlk) of every thread of this process named by the
/// library.
fn library_threads() -> Vec<(String, String, u64)> {
    let mut threads = Vec::new();
    for entry in fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = entry.unwrap().path();
        let (Ok(comm), Ok(status)) = (fs::read_to_string(dir.join("comm")), fs::read_to_string(dir.join("status")))
        else {
            continue; // the thread ended meanwhile
        };
        let name = comm.trim_end();
        if name == WORKER || name == BLOCKING {
            threads.push((dir.file_name().unwrap().to_string_lossy().into_owned(), name.to_owned(), sig_blk(&status)));
        }
    }
    threads
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}

fn own_mask() -> u64 {
    sig_blk(&fs::read_to_string("/proc/thread-self/status").expect("/proc/thread-self/status"))
}

fn new_client() -> *mut ofl_aggregator_client {
    let host = CString::new("127.0.0.1").unwrap();
    let mut options: *mut ofl_aggregator_client_options = ptr::null_mut();
    assert!(ofl_aggregator_client_options_new(host.as_ptr(), 1, &mut options).is_null());
    assert!(ofl_aggregator_client_options_set_tls(options, ptr::null()).is_null());
    assert!(library_threads().is_empty(), "client options started library threads");
    let mut client: *mut ofl_aggregator_client = ptr::null_mut();
    assert!(ofl_aggregator_client_new(options, &mut client).is_null());
    ofl_aggregator_client_options_free(options);
    client
}

#[test]
fn library_threads_start_with_the_first_client_and_block_all_signals() {
    let host_mask = own_mask();
    assert!(library_threads().is_empty(), "library threads before any client or server");

    let client = new_client();
    // A worker task and a blocking-pool call (where C callbacks run) each
    // report their own thread's mask.
    let (worker, worker_name) = openfl_transport::block_on(async { (own_mask(), thread_name()) }).unwrap();
    let (blocking, blocking_name) = openfl_transport::block_on(async {
        tokio::task::spawn_blocking(|| (own_mask(), thread_name())).await.unwrap()
    })
    .unwrap();
    assert_eq!(worker_name, WORKER, "a task's thread is not named as a worker");
    assert_eq!(blocking_name, BLOCKING, "a spawn_blocking thread is not named as a blocking thread");
    assert_eq!(unblocked(worker), Vec::<u32>::new(), "worker thread mask {worker:x}");
    assert_eq!(unblocked(blocking), Vec::<u32>::new(), "blocking thread mask {blocking:x}");

    let threads = library_threads();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let named_worker = threads.iter().filter(|t| t.1 == WORKER).count();
    assert_eq!(named_worker, workers, "worker threads named {WORKER}: {threads:?}");
    assert!(threads.iter().any(|t| t.1 == BLOCKING), "no thread named {BLOCKING}: {threads:?}");
    for (tid, _, mask) in &threads {
        assert_eq!(unblocked(*mask), Vec::<u32>::new(), "thread {tid} leaves signals unblocked (SigBlk {mask:x})");
        for fault in [11u32, 7, 8, 4] {
            assert_eq!(mask & (1u64 << (fault - 1)), 0, "thread {tid} blocks fault signal {fault}");
        }
    }

    assert_eq!(own_mask(), host_mask, "the calling thread's mask changed");
    ofl_aggregator_client_free(client);
}
