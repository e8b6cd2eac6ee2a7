//! Build script: compiles proto/ to Rust (tonic + prost, no system protoc),
//! generates the C header with cbindgen, and sets the shared library SONAME.
//!
//! The header is written to `$OUT_DIR/openfl_transport.h`; a unit test compares
//! it with the committed `include/openfl_transport.h`. Set
//! `OFL_UPDATE_HEADER=1` to refresh the committed copy.

use std::path::{Path, PathBuf};
use std::{env, fs};

const PROTOS: &[&str] = &["base.proto", "aggregator.proto", "director.proto"];

fn main() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=OFL_UPDATE_HEADER");
    compile_protos();
    generate_header(&out_dir);
    set_soname();
}

fn compile_protos() {
    let fds = protox::compile(PROTOS, ["proto"]).unwrap_or_else(|e| panic!("proto/: {e:?}"));
    tonic_prost_build::configure()
        // Tensors are bytes: decode `bytes` fields as `bytes::Bytes` slices.
        .bytes(".")
        .generate_default_stubs(true)
        .include_file("proto_gen.rs")
        .compile_fds(fds)
        .expect("generating Rust from proto/");
}

/// cbindgen reads `src/error.rs` (the codes) and a copy of `src/ffi` with
/// every `ffi_fn!` expanded, in module order: the header's order.
fn generate_header(out_dir: &Path) {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("reading cbindgen.toml");
    let generated = out_dir.join("openfl_transport.h");
    let expanded = out_dir.join("header_src");
    // A fresh copy: a file moved in src/ffi (fedavg.rs -> fedavg/mod.rs)
    // must not leave a stale copy that cbindgen would read instead.
    let _ = fs::remove_dir_all(&expanded);
    if let Err(e) = expand_exports(&crate_dir.join("src/ffi"), &expanded.join("ffi")) {
        println!("cargo:warning=cannot prepare src/ffi for cbindgen: {e}");
        return;
    }
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/error.rs"))
        .with_src(expanded.join("ffi/mod.rs"))
        .generate();
    match bindings {
        Ok(bindings) => {
            bindings.write_to_file(&generated);
        }
        // A syntax error in src/ is reported by rustc itself with a better message.
        Err(e) => {
            println!("cargo:warning=cbindgen could not generate the header: {e}");
            return;
        }
    }
    if env::var_os("OFL_UPDATE_HEADER").is_some() {
        fs::copy(&generated, crate_dir.join("include/openfl_transport.h"))
            .expect("writing include/openfl_transport.h");
    }
}

/// Without a SONAME, CMake consumers record the absolute build path of the
/// library; with it they record `libopenfl_transport.so.<ABI version>`: the
/// major version, or for 0.x (where a minor release may break the ABI)
/// major.minor, e.g. `libopenfl_transport.so.0.2`. The Makefile, the CMake
/// package and tests/cpp/install_consumer.sh compute the same name.
fn set_soname() {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
        let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap();
        let abi = if major == "0" { format!("{major}.{minor}") } else { major };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libopenfl_transport.so.{abi}");
    }
}

/// Copies the tree `from` to `to`, rewriting every `ffi_fn! { fn ... }`
/// into the `#[no_mangle] pub extern "C" fn` it expands to (with an empty
/// body): cbindgen does not expand macros on stable Rust.
fn expand_exports(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let target = to.join(path.file_name().expect("a directory entry has a name"));
        if path.is_dir() {
            expand_exports(&path, &target)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let source = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut file = syn::parse_file(&source).map_err(|e| format!("{}: {e}", path.display()))?;
            for item in &mut file.items {
                expand_item(item).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            fs::write(&target, quote::quote!(#file).to_string()).map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    Ok(())
}

/// The parts of an `ffi_fn!` invocation cbindgen needs: docs and signature.
struct ExportedFn {
    attrs: Vec<syn::Attribute>,
    sig: syn::Signature,
}

impl syn::parse::Parse for ExportedFn {
    fn parse(input: syn::parse::ParseStream) -> syn::Result<Self> {
        let attrs = input.call(syn::Attribute::parse_outer)?;
        let sig: syn::Signature = input.parse()?;
        let _body: syn::Block = input.parse()?;
        let _on_panic: proc_macro2::TokenStream = input.parse()?;
        Ok(Self { attrs, sig })
    }
}

fn expand_item(item: &mut syn::Item) -> syn::Result<()> {
    let syn::Item::Macro(invocation) = item else { return Ok(()) };
    if !invocation.mac.path.is_ident("ffi_fn") {
        return Ok(());
    }
    let ExportedFn { attrs, mut sig } = invocation.mac.parse_body()?;
    sig.abi = Some(syn::parse_quote!(extern "C"));
    *item = syn::parse_quote! {
        #(#attrs)*
        #[no_mangle]
        pub #sig {}
    };
    Ok(())
}
