//! The output of the interop peers: one JSON object per line on stdout.

use std::io::Write;

use serde_json::{json, Value};

/// Prints `value` as one line on stdout and flushes it.
pub fn emit(value: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the test gave up) must not turn into a panic.
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// `{"listening": PORT}`: the line the tests wait for before connecting.
pub fn emit_listening(port: u16) {
    emit(&json!({ "listening": port }));
}

/// `x` rounded to `decimals` places (what the hand-written output printed);
/// `null` when not finite.
pub fn rounded(x: f64, decimals: i32) -> Value {
    let scale = 10f64.powi(decimals);
    json!((x * scale).round() / scale)
}
