//! C string and array arguments through the real exported functions, as a
//! caller following the header can pass them: NUL-terminated strings of any
//! bytes (non-UTF-8 included), NULL where the header allows it (and where it
//! does not: the library must refuse it cleanly), arrays with their lengths,
//! tensor and metadata views. The input is a list of operations:
//!
//! - FedAvg options: add collaborators, tasks and model tensors (shape and
//!   value arrays), set the federation and the best-model metric; then
//!   `ofl_fedavg_new` and the model read back through `ofl_model_*`.
//! - Director options: sample/target shapes as string arrays.
//! - A running director (one per process, insecure, 127.0.0.1): best and
//!   last models as arrays of `ofl_tensor_view` with metadata views.
//! - Aggregator client options: host, a server name through
//!   `ofl_connect_options`, and TLS documents as byte arrays with lengths
//!   (no NUL terminator, any bytes) through `ofl_tls_config`, then
//!   `ofl_aggregator_client_new`, which parses and checks them (it connects
//!   only on the first call).
//!
//! Oracles: each call succeeds exactly when its arguments are valid (else
//! INVALID_ARGUMENT, or NOT_FOUND for an unknown experiment) with a
//! NUL-terminated UTF-8 message; no panic crosses the boundary; the model
//! read back is exactly the tensors added; bad TLS documents give TLS or
//! INVALID_ARGUMENT errors.
#![no_main]

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openfl_transport::error::ofl_code;
use openfl_transport::ffi::aggregator::client::*;
use openfl_transport::ffi::aggregator::client_options::*;
use openfl_transport::ffi::connect_options::*;
use openfl_transport::ffi::director::experiment::ofl_experiment;
use openfl_transport::ffi::director::{hooks::*, reports::*, server::*, server_options::*};
use openfl_transport::ffi::tls_config::*;
use openfl_transport::ffi::error::{ofl_error, ofl_error_code, ofl_error_free, ofl_error_message};
use openfl_transport::ffi::fedavg::{fedavg::*, model::*, options::*};
use openfl_transport::ffi::logging::ofl_set_log_callback;
use openfl_transport::ffi::tensor::{ofl_metadata_view, ofl_tensor_view};
use openfl_transport_fuzz::{same_bits, Input};

/// A C string argument: NULL, or the bytes up to the first NUL, terminated.
struct CArg(Option<Vec<u8>>);

impl CArg {
    fn read(input: &mut Input, nullable: bool) -> Self {
        let flags = input.byte();
        if nullable && flags & 0x80 != 0 {
            return Self(None);
        }
        let raw = input.short_bytes();
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let mut bytes = raw[..end].to_vec();
        bytes.push(0);
        Self(Some(bytes))
    }

    fn ptr(&self) -> *const c_char {
        self.0.as_ref().map_or(null(), |b| b.as_ptr().cast())
    }

    /// The string the library must see: None for NULL or non-UTF-8.
    fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.0.as_ref()?[..self.0.as_ref()?.len() - 1]).ok()
    }

    fn is_null(&self) -> bool {
        self.0.is_none()
    }
}

/// An array argument: the elements, and whether to pass NULL instead (with
/// the length of the elements, so NULL with a non-zero length happens).
struct CArray<T> {
    items: Vec<T>,
    null: bool,
}

impl<T> CArray<T> {
    fn read(input: &mut Input, max: u8, mut item: impl FnMut(&mut Input) -> T) -> Self {
        let flags = input.byte();
        let items = (0..flags % (max + 1)).map(|_| item(input)).collect();
        Self { items, null: flags & 0x80 != 0 }
    }

    fn ptr(&self) -> *const T {
        if self.null {
            null()
        } else {
            self.items.as_ptr()
        }
    }

    /// NULL with a non-zero length is refused; NULL with 0 is allowed.
    fn valid(&self) -> bool {
        !self.null || self.items.is_empty()
    }
}

/// Checks an error result: None on success, else the code, after checking
/// the message is a NUL-terminated UTF-8 string.
fn outcome(error: *mut ofl_error) -> Option<ofl_code> {
    if error.is_null() {
        return None;
    }
    let code = ofl_error_code(error);
    // SAFETY: the message of a live error is a NUL-terminated string.
    let message = unsafe { CStr::from_ptr(ofl_error_message(error)) };
    assert!(message.to_str().is_ok_and(|m| !m.is_empty()), "{message:?}");
    ofl_error_free(error);
    Some(code)
}

fn expect(error: *mut ofl_error, ok: bool, else_code: ofl_code) {
    let got = outcome(error);
    assert_eq!(got, if ok { None } else { Some(else_code) });
}

struct Shadow {
    collaborators: usize,
    model: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    // Level 0: no log records (the warnings of insecure clients would flood).
    QUIET.call_once(|| assert!(outcome(ofl_set_log_callback(0, None, null_mut())).is_none()));
    let mut input = Input::new(data);
    let mut options = null_mut();
    assert!(outcome(ofl_fedavg_options_new(&mut options)).is_none());
    let mut shadow = Shadow { collaborators: 0, model: BTreeMap::new() };
    let mut steps = 0;
    while !input.is_empty() && steps < 64 {
        steps += 1;
        match input.byte() % 8 {
            0 => add_collaborator(&mut input, options, &mut shadow),
            1 => add_task(&mut input, options),
            2 => add_model_tensor(&mut input, options, &mut shadow),
            3 => set_federation(&mut input, options),
            4 => set_best_model_metric(&mut input, options),
            5 => director_shapes(&mut input),
            6 => director_models(&mut input),
            _ => client(&mut input),
        }
    }
    build_and_read_back(options, &shadow);
    ofl_fedavg_options_free(options);
});

fn add_collaborator(input: &mut Input, options: *mut ofl_fedavg_options, shadow: &mut Shadow) {
    let name = CArg::read(input, true);
    let ok = name.text().is_some_and(|t| !t.is_empty());
    expect(ofl_fedavg_options_add_collaborator(options, name.ptr()), ok, ofl_code::InvalidArgument);
    shadow.collaborators += usize::from(ok);
}

fn add_task(input: &mut Input, options: *mut ofl_fedavg_options) {
    let [name, function, kind] = [0; 3].map(|_| CArg::read(input, true));
    let apply_local = input.byte() & 1 != 0;
    let error = ofl_fedavg_options_add_task(options, name.ptr(), function.ptr(), kind.ptr(), apply_local);
    let valid = name.text().is_some_and(|t| !t.is_empty()) && function.text().is_some() && kind.text().is_some();
    // A valid task may still be refused as a duplicate name.
    match outcome(error) {
        None => assert!(valid),
        Some(code) => assert_eq!(code, ofl_code::InvalidArgument),
    }
}

fn add_model_tensor(input: &mut Input, options: *mut ofl_fedavg_options, shadow: &mut Shadow) {
    let name = CArg::read(input, true);
    let shape = CArray::read(input, 4, |i| (i.byte() % 5) as usize);
    let values = CArray::read(input, 64, |i| f32::from_bits(i.u32()));
    let error = ofl_fedavg_options_add_model_tensor(
        options,
        name.ptr(),
        shape.ptr(),
        shape.items.len(),
        values.ptr(),
        values.items.len(),
    );
    let text = name.text().filter(|t| !t.is_empty());
    let ok = text.is_some_and(|t| !shadow.model.contains_key(t))
        && shape.valid()
        && values.valid()
        && shape.items.iter().product::<usize>() == values.items.len();
    expect(error, ok, ofl_code::InvalidArgument);
    if ok {
        shadow.model.insert(text.unwrap().to_string(), (shape.items, values.items));
    }
}

fn set_federation(input: &mut Input, options: *mut ofl_fedavg_options) {
    let [aggregator, federation, single_cn] = [0; 3].map(|_| CArg::read(input, true));
    let ok = aggregator.text().is_some()
        && federation.text().is_some()
        && (single_cn.is_null() || single_cn.text().is_some());
    let error = ofl_fedavg_options_set_federation(options, aggregator.ptr(), federation.ptr(), single_cn.ptr());
    expect(error, ok, ofl_code::InvalidArgument);
}

fn set_best_model_metric(input: &mut Input, options: *mut ofl_fedavg_options) {
    let metric = CArg::read(input, true);
    let ok = metric.is_null() || metric.text().is_some_and(|t| !t.is_empty());
    expect(ofl_fedavg_options_set_best_model_metric(options, metric.ptr()), ok, ofl_code::InvalidArgument);
}

fn build_and_read_back(options: *mut ofl_fedavg_options, shadow: &Shadow) {
    let mut fedavg = null_mut();
    match outcome(ofl_fedavg_new(options, &mut fedavg)) {
        Some(code) => {
            assert_eq!(code, ofl_code::InvalidArgument);
            return;
        }
        None => assert!(shadow.collaborators > 0 && !shadow.model.is_empty()),
    }
    let mut model = null_mut();
    assert!(outcome(ofl_fedavg_last_model(fedavg, &mut model)).is_none());
    assert_eq!(ofl_model_len(model), shadow.model.len());
    for (index, (name, (shape, values))) in shadow.model.iter().enumerate() {
        let c_name = std::ffi::CString::new(name.as_str()).unwrap();
        let mut found = usize::MAX;
        assert!(ofl_model_find(model, c_name.as_ptr(), &mut found));
        assert_eq!(found, index, "tensors are in name order");
        // SAFETY: a tensor name is a NUL-terminated string owned by the model.
        assert_eq!(unsafe { CStr::from_ptr(ofl_model_tensor_name(model, index)) }, c_name.as_c_str());
        let (mut shape_len, mut values_len) = (0, 0);
        let shape_ptr = ofl_model_tensor_shape(model, index, &mut shape_len);
        let values_ptr = ofl_model_tensor_values(model, index, &mut values_len);
        assert!(!shape_ptr.is_null());
        // SAFETY: the model owns `shape_len` dimensions at `shape_ptr`.
        assert_eq!(unsafe { std::slice::from_raw_parts(shape_ptr, shape_len) }, shape.as_slice());
        let got = if values_len == 0 {
            &[][..]
        } else {
            // SAFETY: the model owns `values_len` values at `values_ptr`.
            unsafe { std::slice::from_raw_parts(values_ptr, values_len) }
        };
        assert!(same_bits(got, values), "{name}: values changed");
    }
    assert!(ofl_model_tensor_name(model, shadow.model.len()).is_null());
    ofl_model_free(model);
    ofl_fedavg_free(fedavg);
}

fn director_shapes(input: &mut Input) {
    let mut options = null_mut();
    assert!(outcome(ofl_director_server_options_new(&mut options)).is_none());
    let dims = CArray::read(input, 6, |i| CArg::read(i, true));
    let pointers = CArray { items: dims.items.iter().map(CArg::ptr).collect::<Vec<_>>(), null: dims.null };
    let ok = dims.valid() && dims.items.iter().all(|d| d.text().is_some());
    let error = if input.byte() & 1 == 0 {
        ofl_director_server_options_set_sample_shape(options, pointers.ptr(), pointers.items.len())
    } else {
        ofl_director_server_options_set_target_shape(options, pointers.ptr(), pointers.items.len())
    };
    expect(error, ok, ofl_code::InvalidArgument);
    ofl_director_server_options_free(options);
}

/// One director per process, started on first use.
fn director() -> *const ofl_director_server {
    struct Server(*mut ofl_director_server);
    // SAFETY: director handles may be used from any thread (documented).
    unsafe impl Send for Server {}
    // SAFETY: as above.
    unsafe impl Sync for Server {}
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("openfl-fuzz-director-{}", std::process::id()));
            let dir = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
            let mut options = null_mut();
            assert!(outcome(ofl_director_server_options_new(&mut options)).is_none());
            assert!(outcome(ofl_director_server_options_set_listen(options, c"127.0.0.1".as_ptr(), 0)).is_none());
            assert!(outcome(ofl_director_server_options_set_tls(options, null())).is_none());
            assert!(outcome(ofl_director_server_options_set_archive_dir(options, dir.as_ptr())).is_none());
            extern "C" fn start(_: *mut std::ffi::c_void, _: *const ofl_experiment) -> *mut ofl_error {
                null_mut()
            }
            let mut hooks = null_mut();
            assert!(outcome(ofl_director_hooks_new(&mut hooks)).is_none());
            assert!(outcome(ofl_director_hooks_set_start_experiment(hooks, Some(start))).is_none());
            let mut server = null_mut();
            assert!(outcome(ofl_director_server_start(options, hooks, &mut server)).is_none());
            ofl_director_hooks_free(hooks);
            ofl_director_server_options_free(options);
            Server(server)
        })
        .0
}

/// Owned storage behind one `ofl_metadata_view`.
struct Metadata {
    ints: CArray<i32>,
    bools: CArray<bool>,
    keys: CArray<i32>,
    values: Vec<f32>,
}

impl Metadata {
    fn read(input: &mut Input) -> Self {
        let ints = CArray::read(input, 5, |i| i.u32() as i32);
        let bools = CArray::read(input, 3, |i| i.byte() & 1 != 0);
        let keys = CArray::read(input, 3, |i| i.byte() as i32);
        let values = keys.items.iter().map(|_| f32::from_bits(input.u32())).collect();
        Self { ints, bools, keys, values }
    }

    fn view(&self) -> ofl_metadata_view {
        ofl_metadata_view {
            int_list: self.ints.ptr(),
            int_list_len: self.ints.items.len(),
            bool_list: self.bools.ptr(),
            bool_list_len: self.bools.items.len(),
            int_to_float_keys: self.keys.ptr(),
            int_to_float_values: if self.keys.null { null() } else { self.values.as_ptr() },
            int_to_float_len: self.keys.items.len(),
        }
    }

    fn valid(&self) -> bool {
        self.ints.valid() && self.bools.valid() && self.keys.valid()
    }
}

/// Owned storage behind one `ofl_tensor_view`.
struct TensorArg {
    name: CArg,
    tags: Vec<CArg>,
    tag_pointers: CArray<*const c_char>,
    metadata: Vec<Metadata>,
    metadata_views: CArray<ofl_metadata_view>,
    data: CArray<u8>,
    round: i32,
    flags: u8,
}

impl TensorArg {
    fn read(input: &mut Input) -> Self {
        let name = CArg::read(input, true);
        let tags_array = CArray::read(input, 4, |i| CArg::read(i, false));
        let tag_pointers = CArray { items: tags_array.items.iter().map(CArg::ptr).collect(), null: tags_array.null };
        let metadata_array = CArray::read(input, 2, Metadata::read);
        let metadata_views =
            CArray { items: metadata_array.items.iter().map(Metadata::view).collect(), null: metadata_array.null };
        let data = CArray::read(input, 32, |i| i.byte());
        Self {
            name,
            tags: tags_array.items,
            tag_pointers,
            metadata: metadata_array.items,
            metadata_views,
            data,
            round: input.u32() as i32,
            flags: input.byte(),
        }
    }

    fn view(&self) -> ofl_tensor_view {
        ofl_tensor_view {
            name: self.name.ptr(),
            round_number: self.round,
            lossless: self.flags & 1 != 0,
            report: self.flags & 2 != 0,
            tags: self.tag_pointers.ptr(),
            tags_len: self.tag_pointers.items.len(),
            metadata: self.metadata_views.ptr(),
            metadata_len: self.metadata_views.items.len(),
            data: self.data.ptr(),
            data_len: self.data.items.len(),
        }
    }

    fn valid(&self) -> bool {
        self.name.text().is_some()
            && self.tag_pointers.valid()
            && self.tags.iter().all(|t| t.text().is_some())
            && self.metadata_views.valid()
            && self.metadata.iter().all(Metadata::valid)
            && self.data.valid()
    }
}

fn director_models(input: &mut Input) {
    let experiment = CArg::read(input, true);
    let tensors = CArray::read(input, 3, TensorArg::read);
    let views = CArray { items: tensors.items.iter().map(TensorArg::view).collect::<Vec<_>>(), null: tensors.null };
    let valid = experiment.text().is_some() && views.valid() && tensors.items.iter().all(TensorArg::valid);
    let server = director();
    let error = if input.byte() & 1 == 0 {
        ofl_director_server_set_best_model(server, experiment.ptr(), views.ptr(), views.items.len())
    } else {
        ofl_director_server_set_last_model(server, experiment.ptr(), views.ptr(), views.items.len())
    };
    // No experiment is ever registered: valid arguments get NOT_FOUND.
    let expected = if valid { ofl_code::NotFound } else { ofl_code::InvalidArgument };
    assert_eq!(outcome(error), Some(expected));
}

/// A byte-array argument with its length: any bytes, no terminator.
fn pem_arg(input: &mut Input) -> CArray<u8> {
    let flags = input.byte();
    let bytes = input.long_bytes().to_vec();
    CArray { items: bytes, null: flags & 0x80 != 0 }
}

fn client(input: &mut Input) {
    let host = CArg::read(input, true);
    let port = input.u16();
    let flags = input.byte();
    let server_name = CArg::read(input, true);
    let [root, certificate, key] = [0; 3].map(|_| pem_arg(input));
    let mut options = null_mut();
    let host_ok = host.text().is_some_and(|h| !h.is_empty());
    expect(ofl_aggregator_client_options_new(host.ptr(), port, &mut options), host_ok, ofl_code::InvalidArgument);
    if !host_ok {
        return;
    }
    if flags & 1 != 0 {
        let mut connect = null_mut();
        assert!(outcome(ofl_connect_options_new(&mut connect)).is_none());
        let ok = server_name.text().is_some_and(|n| !n.is_empty());
        expect(ofl_connect_options_set_server_name(connect, server_name.ptr()), ok, ofl_code::InvalidArgument);
        assert!(outcome(ofl_aggregator_client_options_set_connect(options, connect)).is_none());
        ofl_connect_options_free(connect);
    }
    // A PEM argument is accepted when it is non-NULL and not empty.
    let given = |a: &CArray<u8>| !a.null && !a.items.is_empty();
    if flags & 4 != 0 {
        assert!(outcome(ofl_aggregator_client_options_set_tls(options, null())).is_none());
    } else if flags & 8 == 0 {
        let mut tls = null_mut();
        assert!(outcome(ofl_tls_config_new(&mut tls)).is_none());
        let mode = if flags & 2 != 0 { ofl_client_auth::None } else { ofl_client_auth::Mutual };
        assert!(outcome(ofl_tls_config_set_client_auth(tls, mode as i32)).is_none());
        let error = ofl_tls_config_set_root_certificate_pem(tls, root.ptr(), root.items.len());
        expect(error, given(&root), ofl_code::InvalidArgument);
        if flags & 16 != 0 {
            let error = ofl_tls_config_set_identity_pem(
                tls,
                certificate.ptr(),
                certificate.items.len(),
                key.ptr(),
                key.items.len(),
            );
            expect(error, given(&certificate) && given(&key), ofl_code::InvalidArgument);
        }
        assert!(outcome(ofl_aggregator_client_options_set_tls(options, tls)).is_none());
        ofl_tls_config_free(tls);
    }
    let mut client = null_mut();
    match outcome(ofl_aggregator_client_new(options, &mut client)) {
        None => ofl_aggregator_client_free(client),
        Some(code) => assert!(
            matches!(code, ofl_code::InvalidArgument | ofl_code::Tls | ofl_code::Io),
            "ofl_aggregator_client_new: {code:?}"
        ),
    }
    ofl_aggregator_client_options_free(options);
}
