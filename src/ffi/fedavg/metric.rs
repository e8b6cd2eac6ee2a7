//! `ofl_fedavg_metric`: the metrics an `ofl_fedavg` recorded, read by
//! index.

use std::ffi::{c_char, CString};
use std::sync::{MutexGuard, PoisonError};

use super::fedavg::ofl_fedavg;
use crate::fedavg::FedAvgMetric;
use crate::error::{ofl_code, Error};
use crate::ffi::boundary::{arg_ref, c_string, ffi_fn, with_ref};

/// A metric handed to C, with its strings (kept by the `ofl_fedavg`).
pub(crate) struct CachedMetric {
    record: FedAvgMetric,
    origin: CString,
    task: CString,
    name: CString,
}

impl CachedMetric {
    fn new(record: FedAvgMetric) -> Self {
        let (origin, task, name) = (
            c_string(&record.origin),
            c_string(&record.task),
            c_string(&record.name),
        );
        Self {
            record,
            origin,
            task,
            name,
        }
    }

    fn view(&self) -> ofl_fedavg_metric {
        ofl_fedavg_metric {
            round: self.record.round,
            origin: self.origin.as_ptr(),
            aggregated: self.record.aggregated,
            task: self.task.as_ptr(),
            name: self.name.as_ptr(),
            value: self.record.value,
        }
    }
}

/// One metric (OpenFL's metric record): reported by a collaborator, or the
/// `data_size`-weighted average of a round computed by the aggregator.
/// Strings are owned by the `ofl_fedavg` and valid until `ofl_fedavg_free`.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_fedavg_metric {
    /// The round the metric belongs to (0 = the initial model's round).
    pub round: i32,
    /// The collaborator that reported it, or "aggregator" for an average.
    pub origin: *const c_char,
    /// True for the aggregator's weighted average over all collaborators.
    pub aggregated: bool,
    /// The task that produced it (e.g. "aggregated_model_validation").
    pub task: *const c_char,
    /// The metric's tensor name (e.g. "accuracy").
    pub name: *const c_char,
    /// Its value.
    pub value: f64,
}

impl ofl_fedavg {
    /// The metric cache, extended with every metric recorded since the last
    /// call (metrics are only ever appended).
    fn refreshed_metrics(&self) -> MutexGuard<'_, Vec<CachedMetric>> {
        let mut cache = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        let all = self.inner.metrics();
        let known = cache.len();
        cache.extend(all.into_iter().skip(known).map(CachedMetric::new));
        cache
    }
}

ffi_fn! {
    /// The number of metrics recorded so far: each collaborator's as they
    /// arrived, then each round's averages (origin "aggregator") when the
    /// round ends. Grows while a server runs; indices stay stable. 0 for
    /// NULL.
    fn ofl_fedavg_metrics_len(fedavg: *const ofl_fedavg) -> usize {
        with_ref(fedavg, 0, |fa| fa.refreshed_metrics().len())
    } ?= 0
}

ffi_fn! {
    /// Metric `index` (below `ofl_fedavg_metrics_len`), written to `*out`;
    /// its strings are owned by `fedavg` and valid until `ofl_fedavg_free`.
    /// Errors: OUT_OF_RANGE for an index not recorded yet.
    fn ofl_fedavg_get_metric(fedavg: *const ofl_fedavg, index: usize, out: *mut ofl_fedavg_metric) -> *mut ofl_error {
        if out.is_null() {
            return Err(Error::invalid_argument("out is NULL"));
        }
        let fedavg = arg_ref(fedavg, "fedavg")?;
        let cache = fedavg.refreshed_metrics();
        let m = cache.get(index).ok_or_else(|| {
            Error::new(ofl_code::OutOfRange, format!("metric index {index} is out of range ({} metrics)", cache.len()))
        })?;
        // SAFETY: `out` was checked non-NULL and points to writable storage
        // for one `ofl_fedavg_metric` (documented); `write` does not read the
        // possibly uninitialised old value.
        unsafe { out.write(m.view()) };
        Ok(())
    }
}
