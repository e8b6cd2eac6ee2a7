//! The one process-wide Tokio runtime, created on first use.
//!
//! The runtime is built by the first call that needs it: in C, the first
//! server start (`ofl_*_server_start*`) or client creation
//! (`ofl_aggregator_client_new`, `ofl_envoy_client_new`,
//! `ofl_frontend_client_new`); its worker threads start then, its blocking
//! threads (which run C callbacks) on demand. These are the only threads the
//! library starts: the workers are named `ofl-worker`, the blocking threads
//! `ofl-blocking` (see [`thread_name`]).
//!
//! Every one of them blocks every asynchronous signal at start (see
//! [`block_signals`]), so a host's signal handlers run only on the host's own
//! threads. In particular SIGPIPE is blocked: every socket operation runs on
//! these threads, never on a caller's thread, so a peer that hangs up cannot
//! kill a C or Go host (a cdylib does not get Rust's start-up code that
//! ignores SIGPIPE, and rustls writes with `writev`). The host's own signal
//! dispositions and its threads' masks are left untouched.

use std::future::Future;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::Duration;

use once_cell::sync::Lazy;
use tokio::runtime::{Handle, Runtime};

use crate::error::{ofl_code, Error, Result};

static RUNTIME: Lazy<Runtime> = Lazy::new(build_runtime);

fn build_runtime() -> Runtime {
    install_crypto_provider();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name_fn(thread_name(workers))
        .on_thread_start(block_signals)
        .on_thread_park(note_worker_parked)
        .enable_all()
        .build()
        .expect("creating the openfl-transport Tokio runtime");
    wait_for_workers(workers);
    runtime
}

/// The name of the runtime's worker threads (C callbacks declared
/// non-blocking run on them).
const WORKER_THREAD_NAME: &str = "ofl-worker";

/// The name of the runtime's blocking threads (C callbacks that may block
/// run on them).
const BLOCKING_THREAD_NAME: &str = "ofl-blocking";

/// Names the runtime's threads. Tokio runs its `workers` worker loops as
/// the first tasks of its blocking pool, queued while the runtime is built,
/// each starting a thread (they never end): the first `workers` threads it
/// names are those. Which of them takes which queued task is free, so
/// [`build_runtime`] waits until every worker has parked once (it then runs
/// on one of those threads) before anything else can be queued: every later
/// thread is a blocking thread. `tests/library_threads.rs` and
/// `tests/callback_threads.rs` check this holds.
fn thread_name(workers: usize) -> impl Fn() -> String + Send + Sync + 'static {
    let started = AtomicUsize::new(0);
    move || {
        if started.fetch_add(1, Ordering::Relaxed) < workers {
            WORKER_THREAD_NAME.into()
        } else {
            BLOCKING_THREAD_NAME.into()
        }
    }
}

/// How many worker threads have parked at least once.
static PARKED_WORKERS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

thread_local! {
    static HAS_PARKED: Cell<bool> = const { Cell::new(false) };
}

/// Called by each worker before it parks (blocking threads never park):
/// counts the worker's first park.
fn note_worker_parked() {
    if !HAS_PARKED.with(|p| p.replace(true)) {
        let (count, changed) = &PARKED_WORKERS;
        *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        changed.notify_all();
    }
}

/// Waits (at most 10 s: a worker idle at start parks at once) until
/// `workers` workers have parked, i.e. each runs on its own thread.
fn wait_for_workers(workers: usize) {
    let (count, changed) = &PARKED_WORKERS;
    let guard = count.lock().unwrap_or_else(|e| e.into_inner());
    let _ = changed.wait_timeout_while(guard, Duration::from_secs(10), |parked| *parked < workers);
}

/// Installs ring as rustls' process default provider, once. Losing the race
/// to another installer is fine: some provider is then installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The signals a library thread leaves unblocked: the synchronous ones a
/// fault raises in the faulting thread itself. Blocking them would not keep
/// them off the thread: Linux then kills the process at once, without the
/// host's (or a sanitizer's, or Rust's stack-overflow) handler.
const FAULT_SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL];

/// Blocks every signal but [`FAULT_SIGNALS`] on the calling thread (inherited
/// by threads it spawns): process-directed signals (SIGINT, SIGTERM, SIGCHLD,
/// SIGUSR1, ...) are then delivered to a host thread, and SIGPIPE never
/// kills the process from here. One of the crate's few unsafe exceptions:
/// std has no signal-mask call.
#[allow(unsafe_code)]
fn block_signals() {
    // SAFETY: `set` is a local, zero-initialised sigset_t that sigfillset
    // initialises fully before sigdelset and pthread_sigmask read it; the
    // old-mask pointer may be NULL. These calls only change this thread's
    // signal mask (glibc silently keeps its own internal signals unblocked;
    // SIGKILL and SIGSTOP cannot be blocked).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for signal in FAULT_SIGNALS {
            libc::sigdelset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A handle to the process-wide runtime (creating it on first use).
pub fn handle() -> Handle {
    RUNTIME.handle().clone()
}

/// Runs `future` on the runtime and waits for it on the calling thread.
///
/// The future runs on runtime threads, so no I/O happens on the caller's
/// thread. Safe to call from any non-runtime thread, including threads that
/// run C callbacks (`spawn_blocking` threads).
pub fn block_on<F>(future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    RUNTIME.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv().map_err(|_| Error::new(ofl_code::Panic, "the library's task panicked"))
}
