//! Build script: compiles proto/ to Rust (tonic + prost, no system protoc),
//! generates the C header with cbindgen, and sets the shared library SONAME.
//!
//! The header is written to `$OUT_DIR/openfl_transport.h`; a unit test compares
//! it with the committed `include/openfl_transport.h`. Set
//! `OFL_UPDATE_HEADER=1` to refresh the committed copy.

use std::{env, fs, path::PathBuf};

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

fn generate_header(out_dir: &std::path::Path) {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("reading cbindgen.toml");
    let generated = out_dir.join("openfl_transport.h");
    match cbindgen::generate_with_config(&crate_dir, config) {
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
/// library; with it they record `libopenfl_transport.so.<major>`.
fn set_soname() {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libopenfl_transport.so.{major}");
    }
}
