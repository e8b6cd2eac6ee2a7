//! The Prometheus text exposition format (version 0.0.4) of a snapshot:
//! one family per counter, each with its HELP and TYPE lines, samples
//! labelled `role`, and `rpc`/`code`/`kind` where they apply. Calls are
//! listed for the (rpc, code) pairs seen; bytes for every RPC.

use std::fmt::Write;

use super::snapshot::{code_name, AuthFailure, Rejection, TransportMetrics};

/// Appends one family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP openfl_transport_{name} {help}");
    let _ = writeln!(out, "# TYPE openfl_transport_{name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped as the format requires.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Appends one sample: `labels` are (name, value) pairs after `role`.
fn sample(out: &mut String, name: &str, role: &str, labels: &[(&str, &str)], value: u64) {
    let _ = write!(out, "openfl_transport_{name}{{role=\"{}\"", escape(role));
    for (label, v) in labels {
        let _ = write!(out, ",{label}=\"{}\"", escape(v));
    }
    let _ = writeln!(out, "}} {value}");
}

pub(super) fn render(m: &TransportMetrics) -> String {
    let role = m.role.label();
    let mut out = String::with_capacity(2048);
    family(&mut out, "calls_total", "counter", "Calls by RPC and gRPC status code.");
    for rpc in &m.rpcs {
        for (code, count) in rpc.calls.iter().enumerate().filter(|(_, n)| **n > 0) {
            sample(&mut out, "calls_total", role, &[("rpc", rpc.rpc), ("code", code_name(code))], *count);
        }
    }
    family(&mut out, "received_bytes_total", "counter", "gRPC message bytes received (5-byte prefix included).");
    for rpc in &m.rpcs {
        sample(&mut out, "received_bytes_total", role, &[("rpc", rpc.rpc)], rpc.bytes_in);
    }
    family(&mut out, "sent_bytes_total", "counter", "gRPC message bytes sent (5-byte prefix included).");
    for rpc in &m.rpcs {
        sample(&mut out, "sent_bytes_total", role, &[("rpc", rpc.rpc)], rpc.bytes_out);
    }
    family(&mut out, "auth_failures_total", "counter", "Authentication failures by kind.");
    for kind in AuthFailure::ALL {
        sample(&mut out, "auth_failures_total", role, &[("kind", kind.label())], m.auth_failures(kind));
    }
    family(&mut out, "rejected_calls_total", "counter", "Calls refused before the logic saw them, by kind.");
    for kind in Rejection::ALL {
        sample(&mut out, "rejected_calls_total", role, &[("kind", kind.label())], m.rejected(kind));
    }
    let scalars = [
        ("active_connections", "gauge", "Connections open now.", m.active_connections),
        ("connections_total", "counter", "Connections opened.", m.connections),
        ("in_flight_calls", "gauge", "Calls in flight now.", m.in_flight),
        ("retries_total", "counter", "Client attempts after the first one of a call.", m.retries),
    ];
    for (name, kind, help, value) in scalars {
        family(&mut out, name, kind, help);
        sample(&mut out, name, role, &[], value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::recorder::Recorder;
    use crate::metrics::Role;

    #[test]
    fn every_sample_follows_its_family_and_labels_are_quoted() {
        let recorder = Recorder::new(Role::AggregatorServer, crate::metrics::AGGREGATOR_RPCS);
        recorder.start_call("/openfl.aggregator.Aggregator/GetTasks").finish(0);
        let text = recorder.snapshot().prometheus();
        assert!(text.contains("openfl_transport_calls_total{role=\"aggregator_server\",rpc=\"GetTasks\",code=\"OK\"} 1\n"));
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(Some(&name.to_string()), declared.last(), "{line}");
            }
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
