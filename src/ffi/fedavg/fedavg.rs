//! `ofl_fedavg`: the built-in federated-averaging aggregator (the logic,
//! shared with the server started by `ofl_aggregator_server_start_fedavg`),
//! its round and its models. Its metrics are in `metric.rs`.
//!
//! The round semantics are those of [`crate::fedavg`]; the
//! header repeats what a C collaborator must send.

use std::sync::{Arc, Mutex};

use super::metric::CachedMetric;
use super::model::ofl_model;
use super::options::ofl_fedavg_options;
use crate::aggregator::AggregatorLogic;
use crate::fedavg::FedAvg;
use crate::error::{ofl_code, Error};
use crate::ffi::aggregator::server::{ofl_aggregator_server, start_with_logic};
use crate::ffi::aggregator::server_options::ofl_aggregator_server_options;
use crate::ffi::boundary::{arg_ref, check_out, ffi_fn, free_boxed, with_ref, write_out};

/// The FedAvg aggregation logic (see `ofl_fedavg_new`). Thread-safe: read
/// its round, metrics and models from any thread, also while a server runs
/// it. A server started with it keeps its own reference: the handle may be
/// freed before the server.
#[allow(non_camel_case_types)]
pub struct ofl_fedavg {
    pub(crate) inner: Arc<FedAvg>,
    /// Metrics handed to C so far, with their strings; only grows, so the
    /// strings stay where they are until `ofl_fedavg_free`.
    pub(crate) metrics: Mutex<Vec<CachedMetric>>,
}

ffi_fn! {
    /// A FedAvg aggregator at round 0 (or, with a state directory that holds a
    /// saved federation, at the saved round), written to `*out` (`options` may be freed
    /// after). Errors: INVALID_ARGUMENT naming what is missing or wrong (no
    /// collaborators, no model tensor, ...); with a state directory, IO when it
    /// cannot be read or written, FAILED_PRECONDITION when another aggregator
    /// uses it or it holds another federation, DATA_LOSS when a state file is
    /// damaged (the message names the file).
    ///
    /// Every round, each collaborator runs every task; the round ends when all
    /// have reported all tasks, and each uploaded tensor is averaged over the
    /// collaborators weighted by their `data_size`. What a collaborator sends
    /// (as OpenFL 1.6's `Collaborator` with `delta_updates: false` and no
    /// compression): model tensors are fetched with the round's number,
    /// `report` false, tags {"model"}; they come as little-endian float32 bytes
    /// with the shape in `int_list` of their one metadata entry. Uploads use
    /// the same encoding with the tag "compressed" added (optional for non-OpenFL
    /// peers): trained weights with `report` false and tag "trained" (they
    /// become the next round's model), metrics as one-value tensors with
    /// `report` true and tag "metric" (plus "validate_agg" or "validate_local"
    /// for validation tasks); `data_size` is the number of samples the task
    /// used (its weight in the average). A collaborator that has reported every
    /// task of the round gets `sleep_time` instead of tasks until the round ends.
    fn ofl_fedavg_new(options: *const ofl_fedavg_options, out: *mut *mut ofl_fedavg) -> *mut ofl_error {
        check_out(out, "out")?;
        let options = arg_ref(options, "options")?;
        let inner = Arc::new(FedAvg::new(options.config.clone())?);
        write_out(out, ofl_fedavg { inner, metrics: Mutex::new(Vec::new()) });
        Ok(())
    }
}

ffi_fn! {
    /// Frees the handle. A server started with it keeps running (it holds
    /// its own reference). NULL is a no-op.
    fn ofl_fedavg_free(fedavg: *mut ofl_fedavg) {
        free_boxed(fedavg)
    }
}

ffi_fn! {
    /// Starts an aggregator server (as `ofl_aggregator_server_start`) whose
    /// logic is `fedavg`, shared: read its progress through `fedavg` while and
    /// after the server runs. `ofl_aggregator_server_serve` returns once every
    /// collaborator has been told to quit after the last round.
    ///
    /// The server checks requests against the FedAvg's identity and
    /// collaborators (`ofl_fedavg_options_set_federation`,
    /// `ofl_fedavg_options_add_collaborator`); identity and collaborators set on
    /// `server_options` are not used. Everything else (listen address, TLS,
    /// limits) comes from `server_options`.
    fn ofl_aggregator_server_start_fedavg(
        server_options: *const ofl_aggregator_server_options,
        fedavg: *const ofl_fedavg,
        out: *mut *mut ofl_aggregator_server,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let options = arg_ref(server_options, "server_options")?;
        let logic: Arc<dyn AggregatorLogic> = Arc::clone(&arg_ref(fedavg, "fedavg")?.inner) as _;
        start_with_logic(options, logic, out)
    }
}

ffi_fn! {
    /// The current round: 0 at the start, the number of rounds to train
    /// once training is over. 0 for NULL.
    fn ofl_fedavg_current_round(fedavg: *const ofl_fedavg) -> i32 {
        with_ref(fedavg, 0, |fa| fa.inner.current_round())
    } ?= 0
}

ffi_fn! {
    /// The number of rounds to train. 0 for NULL.
    fn ofl_fedavg_rounds_to_train(fedavg: *const ofl_fedavg) -> i32 {
        with_ref(fedavg, 0, |fa| fa.inner.rounds_to_train())
    } ?= 0
}

ffi_fn! {
    /// Whether every round has been trained (collaborators now get quit).
    /// False for NULL.
    fn ofl_fedavg_is_finished(fedavg: *const ofl_fedavg) -> bool {
        with_ref(fedavg, false, |fa| fa.inner.is_finished())
    } ?= false
}

ffi_fn! {
    /// The newest model, copied into a new `ofl_model` written to `*out`: the
    /// initial model before the first round ends, the final aggregate after the
    /// last.
    fn ofl_fedavg_last_model(fedavg: *const ofl_fedavg, out: *mut *mut ofl_model) -> *mut ofl_error {
        check_out(out, "out")?;
        let model = arg_ref(fedavg, "fedavg")?.inner.last_model();
        write_out(out, ofl_model::new(model)?);
        Ok(())
    }
}

ffi_fn! {
    /// The model that scored best in the aggregated-model validation (see
    /// `ofl_fedavg_options_set_best_model_metric`), copied into a new
    /// `ofl_model` written to `*out`. Errors: FAILED_PRECONDITION until a round
    /// with that metric has ended.
    fn ofl_fedavg_best_model(fedavg: *const ofl_fedavg, out: *mut *mut ofl_model) -> *mut ofl_error {
        check_out(out, "out")?;
        let model = arg_ref(fedavg, "fedavg")?.inner.best_model().ok_or_else(|| {
            Error::new(ofl_code::FailedPrecondition, "no best model yet: no round with the best-model metric has ended")
        })?;
        write_out(out, ofl_model::new(model)?);
        Ok(())
    }
}

ffi_fn! {
    /// The round whose model is the best model and its score, written to
    /// `*round` and `*score` (each may be NULL); returns false (writing
    /// nothing) when there is no best model yet or `fedavg` is NULL.
    fn ofl_fedavg_best_model_score(fedavg: *const ofl_fedavg, round: *mut i32, score: *mut f64) -> bool {
        let best = with_ref(fedavg, None, |fa| fa.inner.best_model_score());
        let Some((best_round, best_score)) = best else { return false };
        if !round.is_null() {
            // SAFETY: a non-NULL `round` points to writable storage (documented).
            unsafe { *round = best_round };
        }
        if !score.is_null() {
            // SAFETY: a non-NULL `score` points to writable storage (documented).
            unsafe { *score = best_score };
        }
        true
    } ?= false
}
