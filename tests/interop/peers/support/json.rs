//! The output of the interop peers: one JSON object per line on stdout,
//! written by hand (no serde in this crate's dependencies).

use std::io::Write;

/// `s` as a JSON string.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON array of `items`, each written by `f`.
pub fn json_list<T>(items: impl IntoIterator<Item = T>, f: impl Fn(T) -> String) -> String {
    format!("[{}]", items.into_iter().map(f).collect::<Vec<_>>().join(", "))
}

/// Prints one line on stdout and flushes it.
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the test gave up) must not turn into a panic.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `{"listening": PORT}`: the line the tests wait for before connecting.
pub fn emit_listening(port: u16) {
    emit(&format!("{{\"listening\": {port}}}"));
}
