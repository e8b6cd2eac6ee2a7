//! The built-in federated-averaging aggregator in C: `ofl_fedavg_options`
//! (setters), `ofl_fedavg` (the logic, shared with the server started by
//! `ofl_aggregator_server_start_fedavg`), its metrics (`ofl_fedavg_metric`)
//! and its models (`ofl_model`). Module order is the header's order.

pub mod options;
#[allow(clippy::module_inception)] // ofl_fedavg itself, beside its options, metrics, model
pub mod fedavg;
pub mod metric;
pub mod model;

#[cfg(test)]
mod tests;
