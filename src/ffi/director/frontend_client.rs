//! `ofl_frontend_client` (OpenFL's `DirectorClient`): what a data
//! scientist's program calls. Every call blocks the calling thread while the
//! work runs on the library's runtime threads; `ofl_frontend_client_close`
//! from another thread cancels it (OFL_CODE_CANCELLED). The objects larger
//! answers come in are in `envoys.rs`, `experiment_list.rs` and
//! `experiment_description.rs`.

use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::Arc;

use super::client_options::ofl_director_client_options;
use super::types::{
    check_value_out, model_from_views, ofl_director_metric, ofl_experiment_status, ofl_string_list,
    ofl_tensor_list, write_value,
};
use crate::director::{FrontendClient, FrontendClientOptions, DirectorMetric};
use crate::error::{ofl_code, Error, Result};
use crate::ffi::boundary::{
    arg_ref, arg_str, c_string, check_out, ffi_fn, free_boxed, with_ref, write_out,
};
use crate::ffi::tensor::{ofl_tensor_view, string_list};
use crate::ffi::call_options::{call_options, ofl_call_options};
use crate::proto::ModelProto;
use crate::runtime;

/// A frontend's connection to the director (OpenFL's `DirectorClient`).
/// Thread-safe: calls may be made from several threads at once. A frontend
/// sees only the experiments it submitted (same certificate CN or client_id).
#[allow(non_camel_case_types)]
pub struct ofl_frontend_client {
    pub(crate) inner: Arc<FrontendClient>,
}

ffi_fn! {
    /// A new frontend client, written to `*out`. Certificates are read and
    /// checked now; the connection is made on the first call. `options` may
    /// be freed after. Errors: INVALID_ARGUMENT (also when TLS is on with
    /// nothing attached, naming `ofl_director_client_options_set_tls`), TLS.
    fn ofl_frontend_client_new(
        options: *const ofl_director_client_options,
        out: *mut *mut ofl_frontend_client,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let options = arg_ref(options, "options")?;
        let settings = options.settings()?;
        crate::ffi::logging::init_default();
        let _ = runtime::handle();
        let mut config = FrontendClientOptions::new(settings.connect.host.clone(), settings.connect.port);
        config.connect = settings.connect;
        config.client_id = options.client_id.clone();
        config.retry = settings.retry;
        config.max_message_size = settings.max_message_size;
        write_out(out, ofl_frontend_client { inner: Arc::new(FrontendClient::new(config)?) });
        Ok(())
    }
}

ffi_fn! {
    /// Cancels calls in progress on other threads (a metric stream too: they
    /// return OFL_CODE_CANCELLED) and refuses new ones. Safe from any thread.
    fn ofl_frontend_client_close(client: *const ofl_frontend_client) -> *mut ofl_error {
        arg_ref(client, "client")?.inner.close();
        Ok(())
    }
}

ffi_fn! {
    /// Closes (as `ofl_frontend_client_close`) and frees the client. NULL is
    /// a no-op.
    fn ofl_frontend_client_free(client: *mut ofl_frontend_client) {
        with_ref(client, (), |c| c.inner.close());
        free_boxed(client)
    }
}

pub(crate) fn frontend_arc(client: *const ofl_frontend_client) -> Result<Arc<FrontendClient>> {
    Ok(Arc::clone(&arg_ref(client, "client")?.inner))
}

ffi_fn! {
    /// SetNewExperiment: submits the experiment `name` for
    /// `collaborators_len` envoys, uploading the archive file `archive_path`
    /// (OpenFL's workspace archive; streamed from the file in 2 MiB chunks,
    /// never whole in memory) and an initial model of `initial_model_len`
    /// tensors (copied; NULL and 0 for none). On success the experiment is
    /// pending. Errors: INVALID_ARGUMENT (bad name, no collaborators, empty
    /// archive), ALREADY_EXISTS, RESOURCE_EXHAUSTED (archive too large), IO
    /// (the file). `call`: per-call settings (NULL for the client's
    /// defaults); its progress counts the archive bytes handed to the
    /// transport; a cancelled, aborted or timed-out upload is reset and the
    /// director registers nothing.
    fn ofl_frontend_client_set_new_experiment(
        client: *const ofl_frontend_client,
        name: *const c_char,
        collaborators: *const *const c_char,
        collaborators_len: usize,
        archive_path: *const c_char,
        initial_model: *const ofl_tensor_view,
        initial_model_len: usize,
        call: *const ofl_call_options,
    ) -> *mut ofl_error {
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let collaborators = string_list(collaborators, collaborators_len, "collaborators")?;
        let archive = Path::new(arg_str(archive_path, "archive_path")?).to_path_buf();
        let model = if initial_model_len == 0 {
            None
        } else {
            Some(model_from_views(initial_model, initial_model_len, "initial_model")?)
        };
        let options = call_options(call)?;
        let accepted = runtime::block_on(async move {
            client.set_new_experiment_with(&name, &collaborators, &archive, model.as_ref(), &options).await
        })??;
        if !accepted {
            return Err(Error::new(ofl_code::FailedPrecondition, "the director did not accept the experiment"));
        }
        Ok(())
    }
}

ffi_fn! {
    /// GetExperimentStatus: writes the status of `name` to `*out`. Errors:
    /// NOT_FOUND for an experiment this frontend did not submit.
    fn ofl_frontend_client_get_experiment_status(
        client: *const ofl_frontend_client,
        name: *const c_char,
        call: *const ofl_call_options,
        out: *mut ofl_experiment_status,
    ) -> *mut ofl_error {
        check_value_out(out, "out")?;
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let options = call_options(call)?;
        let status = runtime::block_on(async move { client.get_experiment_status_with(&name, &options).await })??;
        write_value(out, ofl_experiment_status::from(status));
        Ok(())
    }
}

ffi_fn! {
    /// GetDatasetInfo: the director's sample and target shapes, written to
    /// `*sample_shape` and `*target_shape` (free each with
    /// `ofl_string_list_free`).
    fn ofl_frontend_client_get_dataset_info(
        client: *const ofl_frontend_client,
        call: *const ofl_call_options,
        sample_shape: *mut *mut ofl_string_list,
        target_shape: *mut *mut ofl_string_list,
    ) -> *mut ofl_error {
        check_out(sample_shape, "sample_shape")?;
        check_out(target_shape, "target_shape")?;
        let client = frontend_arc(client)?;
        let options = call_options(call)?;
        let (sample, target) = runtime::block_on(async move { client.get_dataset_info_with(&options).await })??;
        write_out(sample_shape, ofl_string_list::new(&sample));
        write_out(target_shape, ofl_string_list::new(&target));
        Ok(())
    }
}

fn trained_model(
    client: *const ofl_frontend_client,
    name: *const c_char,
    best: bool,
    call: *const ofl_call_options,
    out: *mut *mut ofl_tensor_list,
) -> Result<()> {
    check_out(out, "out")?;
    let client = frontend_arc(client)?;
    let name = arg_str(name, "name")?.to_owned();
    let options = call_options(call)?;
    let model: Option<ModelProto> = runtime::block_on(async move {
        if best {
            client.get_best_model_with(&name, &options).await
        } else {
            client.get_last_model_with(&name, &options).await
        }
    })??;
    let which = if best { "best" } else { "last" };
    let model = model.ok_or_else(|| {
        Error::new(
            ofl_code::FailedPrecondition,
            format!("the director has no {which} model of this experiment yet"),
        )
    })?;
    write_out(out, ofl_tensor_list::new(model));
    Ok(())
}

ffi_fn! {
    /// GetTrainedModel(BEST_MODEL): the best model of `name` as the host set
    /// it, written to `*out` (free it with `ofl_tensor_list_free`; decode it
    /// with `ofl_tensor_list_to_model`). Errors: FAILED_PRECONDITION while
    /// there is none, NOT_FOUND for an experiment this frontend did not
    /// submit. `call`: per-call settings (NULL for the client's defaults);
    /// its progress counts the reply's bytes, with the total from the gRPC
    /// length prefix.
    fn ofl_frontend_client_get_best_model(
        client: *const ofl_frontend_client,
        name: *const c_char,
        call: *const ofl_call_options,
        out: *mut *mut ofl_tensor_list,
    ) -> *mut ofl_error {
        trained_model(client, name, true, call, out)
    }
}

ffi_fn! {
    /// GetTrainedModel(LAST_MODEL), as `ofl_frontend_client_get_best_model`.
    fn ofl_frontend_client_get_last_model(
        client: *const ofl_frontend_client,
        name: *const c_char,
        call: *const ofl_call_options,
        out: *mut *mut ofl_tensor_list,
    ) -> *mut ofl_error {
        trained_model(client, name, false, call, out)
    }
}

/// Receives one metric of a stream; `metric` and its strings are valid
/// during the call only. `user_data` is the pointer given to
/// `ofl_frontend_client_stream_metrics`. Return true for more, false to end
/// the stream (a predicate: it reports no error).
#[allow(non_camel_case_types)]
pub type ofl_director_metric_fn =
    Option<extern "C" fn(user_data: *mut c_void, metric: *const ofl_director_metric) -> bool>;

/// What the stream task tells the calling thread.
enum StreamEvent {
    Metric(DirectorMetric),
    Done(Result<()>),
}

/// Hands one metric to the host's callback; false ends the stream.
fn deliver(
    callback: extern "C" fn(*mut c_void, *const ofl_director_metric) -> bool,
    user_data: *mut c_void,
    m: &DirectorMetric,
) -> bool {
    let (origin, task_name, metric_name) = (
        c_string(&m.origin),
        c_string(&m.task_name),
        c_string(&m.metric_name),
    );
    let metric = ofl_director_metric {
        origin: origin.as_ptr(),
        task_name: task_name.as_ptr(),
        metric_name: metric_name.as_ptr(),
        value: m.value,
        round: m.round,
    };
    callback(user_data, &metric)
}

ffi_fn! {
    /// GetMetricStream: calls `callback(user_data, metric)` for each metric
    /// of `name` until the experiment is over and every metric was
    /// delivered, then returns. The callback runs on the calling thread, one
    /// metric at a time, and only during this call: `user_data` is borrowed
    /// for the call (the library keeps no copy and never frees it, so it may
    /// point to the caller's stack). When the callback returns false the
    /// stream is cancelled and this returns success (metrics the director
    /// had already sent are dropped: a streamed metric leaves the director's
    /// queue). A broken connection reopens the stream within the retry
    /// budget. `ofl_frontend_client_close` from another thread ends it with
    /// OFL_CODE_CANCELLED. One stream per experiment: a newer stream on the
    /// same experiment (from any client of its owner) ends this one, which
    /// then returns success. Errors: INVALID_ARGUMENT for a NULL callback,
    /// NOT_FOUND for an experiment this frontend did not submit.
    fn ofl_frontend_client_stream_metrics(
        client: *const ofl_frontend_client,
        name: *const c_char,
        callback: ofl_director_metric_fn,
        user_data: *mut c_void,
        call: *const ofl_call_options,
    ) -> *mut ofl_error {
        let callback = callback.ok_or_else(|| Error::invalid_argument("callback is NULL"))?;
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let options = call_options(call)?;
        let (tx, rx) = std::sync::mpsc::channel::<StreamEvent>();
        let task = runtime::handle().spawn(async move {
            let metrics = tx.clone();
            let deliver = move |m| metrics.send(StreamEvent::Metric(m)).is_ok();
            let result = client.stream_metrics_with(&name, deliver, &options).await;
            let _ = tx.send(StreamEvent::Done(result));
        });
        loop {
            match rx.recv() {
                Ok(StreamEvent::Metric(m)) => {
                    if !deliver(callback, user_data, &m) {
                        task.abort();
                        return Ok(());
                    }
                }
                Ok(StreamEvent::Done(result)) => return result,
                Err(_) => return Err(Error::new(ofl_code::Panic, "the library's metric stream task panicked")),
            }
        }
    }
}

ffi_fn! {
    /// RemoveExperimentData: forgets a finished, failed, rejected or pending
    /// experiment and deletes its archive. Errors: FAILED_PRECONDITION while
    /// it is being reviewed or run. An experiment this frontend did not
    /// submit (or an unknown one) is left alone and the call succeeds: the
    /// director acknowledges it, as OpenFL 1.6's does.
    fn ofl_frontend_client_remove_experiment(
        client: *const ofl_frontend_client,
        name: *const c_char,
        call: *const ofl_call_options,
    ) -> *mut ofl_error {
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let options = call_options(call)?;
        let acknowledged =
            runtime::block_on(async move { client.remove_experiment_data_with(&name, &options).await })??;
        if !acknowledged {
            return Err(Error::new(ofl_code::FailedPrecondition, "the director did not remove the experiment"));
        }
        Ok(())
    }
}
