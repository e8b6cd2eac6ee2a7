//! Unit tests of the FedAvg C API (called from Rust as C would).

use super::fedavg::*;
use super::metric::*;
use super::model::*;
use super::options::*;
use crate::aggregator::TaskResults;
use crate::aggregator::AggregatorLogic;
use crate::fedavg::{FedAvg, Tensor};
use crate::error::ofl_code;
use crate::ffi::aggregator::server::{ofl_aggregator_server_free, ofl_aggregator_server_port};
use crate::ffi::aggregator::server_options::{
    ofl_aggregator_server_options_free, ofl_aggregator_server_options_new,
    ofl_aggregator_server_options_set_listen, ofl_aggregator_server_options_set_tls,
};
use crate::ffi::error::ofl_error;
use crate::ffi::error::{ofl_error_code, ofl_error_free, ofl_error_message};
use std::ffi::c_char;
use std::ffi::CStr;
use std::ptr::{null, null_mut};

/// The error's code (OK for NULL), freeing it.
fn code(err: *mut ofl_error) -> ofl_code {
    let code = ofl_error_code(err);
    ofl_error_free(err);
    code
}

fn ok(err: *mut ofl_error) {
    if !err.is_null() {
        // SAFETY: a live error's message is a NUL-terminated string it owns.
        let message = unsafe { CStr::from_ptr(ofl_error_message(err)) }
            .to_string_lossy()
            .into_owned();
        ofl_error_free(err);
        panic!("unexpected error: {message}");
    }
}

fn s(ptr: *const c_char) -> String {
    assert!(!ptr.is_null());
    // SAFETY: a non-NULL string from an accessor is NUL-terminated and live.
    unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned()
}

/// Options for collaborators a and b, 2 rounds, w = [1, 2], b = 0.5.
fn options() -> *mut ofl_fedavg_options {
    let mut options = null_mut();
    ok(ofl_fedavg_options_new(&mut options));
    ok(ofl_fedavg_options_set_federation(
        options,
        c"agg".as_ptr(),
        c"fed".as_ptr(),
        null(),
    ));
    ok(ofl_fedavg_options_add_collaborator(options, c"a".as_ptr()));
    ok(ofl_fedavg_options_add_collaborator(options, c"b".as_ptr()));
    ok(ofl_fedavg_options_add_collaborator(options, c"a".as_ptr())); // once
    ok(ofl_fedavg_options_set_rounds_to_train(options, 2));
    ok(ofl_fedavg_options_add_model_tensor(
        options,
        c"w".as_ptr(),
        [2usize].as_ptr(),
        1,
        [1.0f32, 2.0].as_ptr(),
        2,
    ));
    ok(ofl_fedavg_options_add_model_tensor(
        options,
        c"b".as_ptr(),
        null(),
        0,
        [0.5f32].as_ptr(),
        1,
    ));
    ok(ofl_fedavg_options_set_tensor_wait_ms(options, 10));
    ok(ofl_fedavg_options_set_sleep_time(options, 1));
    options
}

fn fedavg() -> *mut ofl_fedavg {
    let options = options();
    let mut fedavg = null_mut();
    ok(ofl_fedavg_new(options, &mut fedavg));
    ofl_fedavg_options_free(options);
    fedavg
}

fn inner<'a>(fedavg: *const ofl_fedavg) -> &'a FedAvg {
    // SAFETY: a live handle from `fedavg()`.
    unsafe { &(*fedavg).inner }
}

/// One collaborator's round with OpenFL's default tasks.
fn run_round(fa: &FedAvg, col: &str, round: i32, acc: f32, w: [f32; 2]) {
    let send = |task: &str, tensors| {
        let results = TaskResults {
            round_number: round,
            task_name: task.into(),
            data_size: 1,
            tensors,
        };
        fa.send_local_task_results(col, results).unwrap();
    };
    let metric = |name: &str, value: f32, tag: &str| {
        Tensor::scalar(value).to_named_tensor(name, round, true, &["metric", tag])
    };
    send(
        "aggregated_model_validation",
        vec![metric("accuracy", acc, "validate_agg")],
    );
    let trained =
        Tensor::new(vec![2], w.to_vec())
            .unwrap()
            .to_named_tensor("w", round, false, &["trained"]);
    send("train", vec![trained]);
    send(
        "locally_tuned_model_validation",
        vec![metric("accuracy", acc, "validate_local")],
    );
}

#[test]
fn bad_options_are_refused_with_invalid_argument() {
    use ofl_code::InvalidArgument;
    assert_eq!(code(ofl_fedavg_options_new(null_mut())), InvalidArgument);
    let o = options();
    assert_eq!(
        code(ofl_fedavg_options_add_collaborator(o, c"".as_ptr())),
        InvalidArgument
    );
    assert_eq!(
        code(ofl_fedavg_options_add_collaborator(o, null())),
        InvalidArgument
    );
    assert_eq!(
        code(ofl_fedavg_options_add_collaborator(
            null_mut(),
            c"c".as_ptr()
        )),
        InvalidArgument
    );
    assert_eq!(
        code(ofl_fedavg_options_set_rounds_to_train(o, 0)),
        InvalidArgument
    );
    assert_eq!(
        code(ofl_fedavg_options_set_sleep_time(o, 0)),
        InvalidArgument
    );
    assert_eq!(
        code(ofl_fedavg_options_set_federation(
            o,
            null(),
            c"f".as_ptr(),
            null()
        )),
        InvalidArgument
    );
    assert_eq!(
        code(ofl_fedavg_options_set_best_model_metric(o, c"".as_ptr())),
        InvalidArgument
    );
    let values = [0.0f32; 3];
    let add = |name: &CStr, shape: &[usize], values: *const f32, len: usize| {
        code(ofl_fedavg_options_add_model_tensor(
            o,
            name.as_ptr(),
            shape.as_ptr(),
            shape.len(),
            values,
            len,
        ))
    };
    assert_eq!(add(c"v", &[2, 2], values.as_ptr(), 3), InvalidArgument); // 4 values needed
    assert_eq!(add(c"v", &[1 << 31], values.as_ptr(), 3), InvalidArgument); // not an int32
    assert_eq!(add(c"v", &[3], null(), 3), InvalidArgument);
    assert_eq!(add(c"w", &[3], values.as_ptr(), 3), InvalidArgument); // added twice
    assert_eq!(add(c"", &[3], values.as_ptr(), 3), InvalidArgument);
    assert_eq!(add(c"v", &[3], values.as_ptr(), 3), ofl_code::Ok);
    assert_eq!(
        code(ofl_fedavg_options_add_model_tensor(
            o,
            c"s".as_ptr(),
            [1usize].as_ptr(),
            0,
            values.as_ptr(),
            1
        )),
        ofl_code::Ok
    );
    let task = |name: &CStr| {
        code(ofl_fedavg_options_add_task(
            o,
            name.as_ptr(),
            c"train_task".as_ptr(),
            c"train".as_ptr(),
            false,
        ))
    };
    assert_eq!(task(c"train"), ofl_code::Ok);
    assert_eq!(task(c"train"), InvalidArgument); // added twice
    assert_eq!(task(c""), InvalidArgument);
    let mut fedavg = null_mut();
    assert_eq!(code(ofl_fedavg_new(o, null_mut())), InvalidArgument);
    assert_eq!(code(ofl_fedavg_new(null(), &mut fedavg)), InvalidArgument);
    ok(ofl_fedavg_new(o, &mut fedavg));
    ofl_fedavg_options_free(o);
    ofl_fedavg_free(fedavg);
    ofl_fedavg_options_free(null_mut());
    ofl_fedavg_free(null_mut());

    // Missing collaborators or model: refused by ofl_fedavg_new.
    let mut empty = null_mut();
    ok(ofl_fedavg_options_new(&mut empty));
    assert_eq!(code(ofl_fedavg_new(empty, &mut fedavg)), InvalidArgument);
    ok(ofl_fedavg_options_add_collaborator(empty, c"a".as_ptr()));
    assert_eq!(code(ofl_fedavg_new(empty, &mut fedavg)), InvalidArgument);
    ofl_fedavg_options_free(empty);
}

#[test]
fn first_added_task_replaces_the_defaults() {
    let o = options();
    ok(ofl_fedavg_options_add_task(
        o,
        c"train".as_ptr(),
        c"train_task".as_ptr(),
        c"train".as_ptr(),
        false,
    ));
    // SAFETY: a live options object from `options()`.
    let tasks = unsafe { &(*o).config.tasks };
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].name.as_str(), tasks[0].function_name.as_str()),
        ("train", "train_task")
    );
    ofl_fedavg_options_free(o);
}

#[test]
fn rounds_metrics_and_models_read_through_c() {
    let fedavg = fedavg();
    assert_eq!(
        (
            ofl_fedavg_current_round(fedavg),
            ofl_fedavg_rounds_to_train(fedavg)
        ),
        (0, 2)
    );
    assert!(!ofl_fedavg_is_finished(fedavg));
    assert_eq!(ofl_fedavg_metrics_len(fedavg), 0);
    let mut model = null_mut();
    assert_eq!(
        code(ofl_fedavg_best_model(fedavg, &mut model)),
        ofl_code::FailedPrecondition
    );
    assert!(model.is_null());
    assert!(!ofl_fedavg_best_model_score(fedavg, null_mut(), null_mut()));

    // The initial model, in name order: b (scalar), w.
    ok(ofl_fedavg_last_model(fedavg, &mut model));
    assert_eq!(ofl_model_len(model), 2);
    assert_eq!(s(ofl_model_tensor_name(model, 0)), "b");
    let mut len = 99;
    assert!(!ofl_model_tensor_shape(model, 0, &mut len).is_null());
    assert_eq!(len, 0);
    let values = ofl_model_tensor_values(model, 0, &mut len);
    // SAFETY: `len` values at a non-NULL pointer owned by the live model.
    assert_eq!(unsafe { std::slice::from_raw_parts(values, len) }, [0.5]);
    let mut index = 9;
    assert!(ofl_model_find(model, c"w".as_ptr(), &mut index));
    assert_eq!(index, 1);
    assert!(!ofl_model_find(model, c"nope".as_ptr(), &mut index));
    assert!(ofl_model_tensor_name(model, 2).is_null());
    assert!(ofl_model_tensor_values(model, 2, &mut len).is_null());
    assert_eq!(len, 0);
    ofl_model_free(model);

    // Round 0: a scores 0.5, b 0.7; the model trains to the average.
    let fa = inner(fedavg);
    run_round(fa, "a", 0, 0.5, [3.0, 3.0]);
    assert_eq!(ofl_fedavg_metrics_len(fedavg), 2);
    let mut first = ofl_fedavg_metric {
        round: -1,
        origin: null(),
        aggregated: true,
        task: null(),
        name: null(),
        value: 0.0,
    };
    ok(ofl_fedavg_get_metric(fedavg, 0, &mut first));
    run_round(fa, "b", 0, 0.7, [5.0, 7.0]);
    assert_eq!(ofl_fedavg_current_round(fedavg), 1);
    let n = ofl_fedavg_metrics_len(fedavg);
    assert_eq!(n, 6); // 2 per collaborator, then 2 averages
    let mut m = ofl_fedavg_metric {
        round: -1,
        origin: null(),
        aggregated: false,
        task: null(),
        name: null(),
        value: 0.0,
    };
    ok(ofl_fedavg_get_metric(fedavg, 4, &mut m));
    assert_eq!(
        (m.round, m.aggregated, s(m.origin), s(m.task), s(m.name)),
        (
            0,
            true,
            "aggregator".into(),
            "aggregated_model_validation".into(),
            "accuracy".into()
        )
    );
    assert!((m.value - 0.6).abs() < 1e-6, "{}", m.value);
    assert_eq!(
        code(ofl_fedavg_get_metric(fedavg, n, &mut m)),
        ofl_code::OutOfRange
    );
    assert_eq!(
        code(ofl_fedavg_get_metric(fedavg, 0, null_mut())),
        ofl_code::InvalidArgument
    );
    assert_eq!(
        code(ofl_fedavg_get_metric(null(), 0, &mut m)),
        ofl_code::InvalidArgument
    );
    // Strings handed out earlier are still valid.
    assert_eq!(
        (
            first.round,
            first.aggregated,
            s(first.origin),
            s(first.name)
        ),
        (0, false, "a".into(), "accuracy".into())
    );

    let (mut round, mut score) = (-1, 0.0);
    assert!(ofl_fedavg_best_model_score(fedavg, &mut round, &mut score));
    assert_eq!(round, 0);
    assert!((score - 0.6).abs() < 1e-6);
    ok(ofl_fedavg_best_model(fedavg, &mut model)); // round 0's model: the initial one
    assert!(ofl_model_find(model, c"w".as_ptr(), &mut index));
    // SAFETY: as above.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(ofl_model_tensor_values(model, index, &mut len), 2) },
        [1.0, 2.0]
    );
    ofl_model_free(model);
    ok(ofl_fedavg_last_model(fedavg, &mut model));
    assert!(ofl_model_find(model, c"w".as_ptr(), &mut index));
    // SAFETY: as above.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(ofl_model_tensor_values(model, index, &mut len), 2) },
        [4.0, 5.0]
    );
    ofl_model_free(model);

    run_round(fa, "a", 1, 0.9, [1.0, 1.0]);
    run_round(fa, "b", 1, 0.9, [1.0, 1.0]);
    assert!(ofl_fedavg_is_finished(fedavg));
    assert_eq!(ofl_fedavg_current_round(fedavg), 2);
    ofl_fedavg_free(fedavg);
}

#[test]
fn null_handles_give_documented_defaults() {
    assert_eq!(ofl_fedavg_current_round(null()), 0);
    assert_eq!(ofl_fedavg_metrics_len(null()), 0);
    assert!(!ofl_fedavg_is_finished(null()));
    let mut model = null_mut();
    assert_eq!(
        code(ofl_fedavg_last_model(null(), &mut model)),
        ofl_code::InvalidArgument
    );
    assert_eq!(ofl_model_len(null()), 0);
    assert!(ofl_model_tensor_name(null(), 0).is_null());
    assert!(!ofl_model_find(null(), c"w".as_ptr(), null_mut()));
    assert!(ofl_model_tensor_shape(null(), 0, null_mut()).is_null());
    ofl_model_free(null_mut());
}

#[test]
fn server_starts_with_the_fedavg() {
    let fedavg = fedavg();
    let mut so = null_mut();
    ok(ofl_aggregator_server_options_new(&mut so));
    ok(ofl_aggregator_server_options_set_listen(
        so,
        c"127.0.0.1".as_ptr(),
        0,
    ));
    ok(ofl_aggregator_server_options_set_tls(so, null()));
    let mut server = null_mut();
    assert_eq!(
        code(ofl_aggregator_server_start_fedavg(
            null(),
            fedavg,
            &mut server
        )),
        ofl_code::InvalidArgument
    );
    assert_eq!(
        code(ofl_aggregator_server_start_fedavg(so, null(), &mut server)),
        ofl_code::InvalidArgument
    );
    assert_eq!(
        code(ofl_aggregator_server_start_fedavg(so, fedavg, null_mut())),
        ofl_code::InvalidArgument
    );
    ok(ofl_aggregator_server_start_fedavg(so, fedavg, &mut server));
    ofl_aggregator_server_options_free(so);
    ofl_fedavg_free(fedavg); // the server keeps its own reference
    assert_ne!(ofl_aggregator_server_port(server), 0);
    ofl_aggregator_server_free(server);
}
