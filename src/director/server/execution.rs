//! The experiment execution loop (OpenFL's
//! `start_experiment_execution_loop`): one experiment at a time is reviewed,
//! started, handed to its envoys, and waited for.

use std::sync::Arc;

use tokio::sync::watch;

use super::service::wait_stopping;
use super::DirectorHooks;
use crate::director::state::DirectorState;

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// One experiment at a time: review, start, hand to envoys, wait for its end.
pub(super) async fn execution_loop(
    state: Arc<DirectorState>,
    hooks: Arc<dyn DirectorHooks>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut changes = state.subscribe();
    loop {
        if *stopping.borrow() {
            return;
        }
        let Some(info) = state.take_next() else {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = wait_stopping(&mut stopping) => return,
            }
            continue;
        };
        let name = info.name.clone();
        let review_hooks = Arc::clone(&hooks);
        let review_info = info.clone();
        let approved = run_blocking(move || review_hooks.review_experiment(&review_info)).await;
        if approved != Some(true) {
            if approved.is_none() {
                log::error!("the review hook of experiment {name:?} panicked: rejecting it");
            }
            state.reject(&name);
            continue;
        }
        if !state.begin(&name) {
            continue;
        }
        let start_hooks = Arc::clone(&hooks);
        let start_info = info.clone();
        match run_blocking(move || start_hooks.start_experiment(&start_info)).await {
            Some(Ok(())) => state.dispatch(&name),
            Some(Err(e)) => {
                let _ = state.mark_failed(&name, &format!("the host could not start it: {e}"));
            }
            None => {
                let _ = state.mark_failed(&name, "the host's start hook panicked");
            }
        }
        while !state.active_done(&name) {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = wait_stopping(&mut stopping) => return,
            }
        }
    }
}
