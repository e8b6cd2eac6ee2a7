//! The one process-wide Tokio runtime, created on first use.
//!
//! Every socket operation runs on this runtime's threads, never on a caller's
//! thread: the runtime's threads block SIGPIPE at start, so a peer that hangs
//! up cannot kill a C or Go host (a cdylib does not get Rust's start-up code
//! that ignores SIGPIPE, and rustls writes with `writev`). The host's own
//! signal dispositions are left untouched.

use std::future::Future;
use std::sync::mpsc;

use once_cell::sync::Lazy;
use tokio::runtime::{Handle, Runtime};

use crate::error::{ofl_code, Error, Result};

static RUNTIME: Lazy<Runtime> = Lazy::new(build_runtime);

fn build_runtime() -> Runtime {
    install_crypto_provider();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("openfl-transport")
        .on_thread_start(block_sigpipe)
        .enable_all()
        .build()
        .expect("creating the openfl-transport Tokio runtime")
}

/// Installs ring as rustls' process default provider, once. Losing the race
/// to another installer is fine: some provider is then installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Blocks SIGPIPE on the calling thread (inherited by threads it spawns).
/// One of the crate's few unsafe exceptions: std has no signal-mask call.
#[allow(unsafe_code)]
fn block_sigpipe() {
    // SAFETY: `set` is a local, zero-initialised sigset_t that sigemptyset and
    // sigaddset initialise fully before pthread_sigmask reads it; the old-mask
    // pointer may be NULL. These calls only change this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
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
