//! `ofl_aggregator_client`: a collaborator's connection to the aggregator
//! and its calls (OpenFL's `AggregatorGRPCClient`).
//!
//! Every call blocks the calling thread while the work runs on the library's
//! runtime threads; `ofl_aggregator_client_close` (or `_free`) from another
//! thread cancels it.

use std::ffi::c_char;
use std::sync::Arc;

use super::client_options::ofl_aggregator_client_options;
use super::tasks::ofl_tasks;
use crate::aggregator::{AggregatorClient, TaskResults, TensorRequest};
use crate::error::Result;
use crate::ffi::borrow::Loan;
use crate::ffi::call_options::{call_options, ofl_call_options};
use crate::ffi::boundary::{arg_ref, arg_slice, arg_str, check_out, ffi_fn, free_boxed, with_ref, write_out};
use crate::ffi::tensor::{named_tensor_from_view, ofl_tensor, ofl_tensor_view, string_list};
use crate::proto::NamedTensor;
use crate::runtime;

/// A collaborator's connection to an aggregator. Thread-safe: calls may be
/// made from several threads at once over the one shared connection.
#[allow(non_camel_case_types)]
pub struct ofl_aggregator_client {
    pub(crate) inner: Arc<AggregatorClient>,
}

fn client_arc(client: *const ofl_aggregator_client) -> Result<Arc<AggregatorClient>> {
    Ok(Arc::clone(&arg_ref(client, "client")?.inner))
}

ffi_fn! {
    /// A new client, written to `*out`. Certificates are read and checked
    /// now; the connection is made on the first call. `options` may be
    /// freed after.
    fn ofl_aggregator_client_new(
        options: *const ofl_aggregator_client_options,
        out: *mut *mut ofl_aggregator_client,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let config = arg_ref(options, "options")?.resolved()?;
        crate::ffi::logging::init_default();
        let _ = runtime::handle();
        let inner = Arc::new(AggregatorClient::new(config)?);
        write_out(out, ofl_aggregator_client { inner });
        Ok(())
    }
}

ffi_fn! {
    /// Frees the client, cancelling calls in progress on other threads (they
    /// return `OFL_CODE_CANCELLED`). NULL is a no-op.
    fn ofl_aggregator_client_free(client: *mut ofl_aggregator_client) {
        with_ref(client, (), |c| c.inner.close());
        free_boxed(client)
    }
}

ffi_fn! {
    /// Closes the client without freeing it: calls in progress on other
    /// threads return `OFL_CODE_CANCELLED` at once, later calls fail the
    /// same way. Safe to call while other threads use the handle (unlike
    /// `ofl_aggregator_client_free`, which must not race with a call that is
    /// just starting). Idempotent.
    fn ofl_aggregator_client_close(client: *const ofl_aggregator_client) -> *mut ofl_error {
        client_arc(client)?.close();
        Ok(())
    }
}

ffi_fn! {
    /// Closes the connection (OpenFL's `disconnect`); the next call
    /// reconnects.
    fn ofl_aggregator_client_disconnect(client: *const ofl_aggregator_client) -> *mut ofl_error {
        client_arc(client)?.disconnect();
        Ok(())
    }
}

ffi_fn! {
    /// Replaces the connection with a new one (OpenFL's `reconnect`).
    fn ofl_aggregator_client_reconnect(client: *const ofl_aggregator_client) -> *mut ofl_error {
        client_arc(client)?.reconnect()
    }
}

ffi_fn! {
    /// GetTasks for `collaborator_name`: writes the answer to `*out` (free
    /// it with `ofl_tasks_free`). `call`: per-call settings, NULL for the
    /// client's defaults.
    fn ofl_aggregator_client_get_tasks(
        client: *const ofl_aggregator_client,
        collaborator_name: *const c_char,
        call: *const ofl_call_options,
        out: *mut *mut ofl_tasks,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let client = client_arc(client)?;
        let name = arg_str(collaborator_name, "collaborator_name")?.to_owned();
        let options = call_options(call)?;
        let reply = runtime::block_on(async move { client.get_tasks_with(&name, &options).await })??;
        write_out(out, ofl_tasks::new(reply));
        Ok(())
    }
}

ffi_fn! {
    /// GetAggregatedTensor: the tensor `tensor_name` of `round_number` with
    /// the given `report` flag and `tags_len` tags, written to `*out` (free
    /// it with `ofl_tensor_free`; its data points into the received buffer,
    /// no copy, and starts on a 64-byte boundary). `call`: per-call
    /// settings (NULL for the client's defaults); its progress counts the
    /// reply's bytes, with the total from the gRPC length prefix.
    fn ofl_aggregator_client_get_aggregated_tensor(
        client: *const ofl_aggregator_client,
        collaborator_name: *const c_char,
        tensor_name: *const c_char,
        round_number: i32,
        report: bool,
        tags: *const *const c_char,
        tags_len: usize,
        require_lossless: bool,
        call: *const ofl_call_options,
        out: *mut *mut ofl_tensor,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let client = client_arc(client)?;
        let name = arg_str(collaborator_name, "collaborator_name")?.to_owned();
        let request = TensorRequest {
            tensor_name: arg_str(tensor_name, "tensor_name")?.to_owned(),
            round_number,
            report,
            tags: string_list(tags, tags_len, "tags")?,
            require_lossless,
        };
        let options = call_options(call)?;
        let tensor =
            runtime::block_on(async move { client.get_aggregated_tensor_with(&name, &request, &options).await })??;
        write_out(out, ofl_tensor::new(tensor));
        Ok(())
    }
}

ffi_fn! {
    /// SendLocalTaskResults: sends `tensors_len` tensors as the results of
    /// `task_name` in `round_number`, computed on `data_size` samples. The
    /// tensors are borrowed for the call only: their data is streamed
    /// straight from the caller's memory (no copy) in chunks of at most
    /// 2 MiB, resent whole after a reconnect, and no longer referenced when
    /// this returns. `call`: per-call settings (NULL for the client's
    /// defaults); its progress counts the serialized bytes handed to the
    /// transport; a cancelled, aborted or timed-out upload is reset, never
    /// counted by the aggregator.
    fn ofl_aggregator_client_send_local_task_results(
        client: *const ofl_aggregator_client,
        collaborator_name: *const c_char,
        round_number: i32,
        task_name: *const c_char,
        data_size: i32,
        tensors: *const ofl_tensor_view,
        tensors_len: usize,
        call: *const ofl_call_options,
    ) -> *mut ofl_error {
        let client = client_arc(client)?;
        let name = arg_str(collaborator_name, "collaborator_name")?.to_owned();
        let views = arg_slice(tensors, tensors_len, "tensors")?;
        let task_name = arg_str(task_name, "task_name")?.to_owned();
        let options = call_options(call)?;
        let loan = Loan::new();
        let tensors = lend_tensors(&loan, views)?;
        let results = TaskResults { round_number, task_name, data_size, tensors };
        let outcome =
            runtime::block_on(async move { client.send_local_task_results_with(&name, &results, &options).await });
        // The caller's tensor memory must not be referenced once we return.
        loan.wait_until_returned();
        outcome?
    }
}

/// The caller's tensors as `NamedTensor`s whose data is lent, not copied.
fn lend_tensors(loan: &Arc<Loan>, views: &[ofl_tensor_view]) -> Result<Vec<NamedTensor>> {
    views
        .iter()
        .map(|view| {
            let data = arg_slice(view.data, view.data_len, "tensor.data")?;
            named_tensor_from_view(view, loan.lend(data))
        })
        .collect()
}
