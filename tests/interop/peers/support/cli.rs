//! The command line of the interop peers: `--flag value` pairs, a few bare
//! switches, `-h`/`--help`; usage errors exit 2, failures 1 and the watchdog
//! 124, each with a message on stderr prefixed by the program's name.
//!
//! [`PeerArgs`] holds the options every peer takes (`--host`, `--port`,
//! `--mode`, `--certs`, `--timeout`) and turns `--mode`/`--certs` into TLS
//! configurations. `--certs DIR` is a directory made by
//! `tests/certs/make_certs.sh`: `ca.crt`, `server.crt`/`server.key` and one
//! `NAME.crt`/`NAME.key` pair per client identity.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use openfl_transport::tls::{PemSource, TlsConfig};

use super::payload::MIB;

/// The modes of the peers that speak all three.
pub const ALL_MODES: &[&str] = &["mtls", "tls", "insecure"];

/// A program's name and usage text, for its messages.
pub struct Cli {
    pub program: &'static str,
    pub usage: &'static str,
}

impl Cli {
    /// Prints `message` and the usage on stderr; exits 2.
    pub fn usage_error(&self, message: &str) -> ! {
        eprintln!("{}: {message}\n{}", self.program, self.usage);
        std::process::exit(2);
    }

    /// Prints `message` on stderr; exits 1.
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        eprintln!("{}: {message}", self.program);
        std::process::exit(1);
    }

    /// `value` of `flag` as a number; a usage error if it is not one.
    pub fn number<T: FromStr>(&self, flag: &str, value: &str) -> T {
        value.parse().unwrap_or_else(|_| self.usage_error(&format!("{flag}: not a number: {value:?}")))
    }

    /// `value` of `flag` as seconds.
    pub fn seconds(&self, flag: &str, value: &str) -> Duration {
        Duration::from_secs_f64(self.number(flag, value))
    }

    /// `value` of `flag` (`--size-mib`) as a byte count: MiB within 0..=1024,
    /// fractions allowed.
    pub fn size_mib(&self, flag: &str, value: &str) -> usize {
        let mib: f64 = self.number(flag, value);
        if !(0.0..=1024.0).contains(&mib) {
            self.usage_error(&format!("{flag} must be within 0..=1024"));
        }
        (mib * MIB) as usize
    }

    /// The usage error of an option the program does not know.
    pub fn unknown_option(&self, flag: &str) -> ! {
        self.usage_error(&format!("unknown option {flag}"))
    }

    /// Reads the command line. `-h`/`--help` prints the usage and exits 0.
    /// A flag in `switches` goes to `other` with an empty value; every other
    /// flag takes the next argument as its value (a usage error when there is
    /// none) and goes to `peer` if it is one of its options, else to `other`,
    /// which answers flags it does not know with [`Cli::unknown_option`].
    pub fn parse(&self, peer: &mut PeerArgs, switches: &[&str], mut other: impl FnMut(&str, String)) {
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if switches.contains(&flag.as_str()) {
                other(&flag, String::new());
                continue;
            }
            if flag == "-h" || flag == "--help" {
                println!("{}", self.usage);
                std::process::exit(0);
            }
            let value = it.next().unwrap_or_else(|| self.usage_error(&format!("{flag} needs a value")));
            if !peer.take(self, &flag, &value) {
                other(&flag, value);
            }
        }
    }

    /// Exits 124 with a message once `timeout` has passed, whatever the
    /// program is blocked on.
    pub fn start_watchdog(&self, timeout: Duration) {
        let program = self.program;
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            eprintln!("{program}: timed out after {:.0} s", timeout.as_secs_f64());
            std::process::exit(124);
        });
    }
}

/// A comma-separated list; empty items dropped.
pub fn list(value: &str) -> Vec<String> {
    value.split(',').filter(|s| !s.is_empty()).map(String::from).collect()
}

/// The options every interop peer takes.
pub struct PeerArgs {
    /// `--host`: where a server listens or a client connects.
    pub host: String,
    /// `--port`: 0 lets a server pick one.
    pub port: u16,
    /// `--mode`: "mtls", "tls" (one-way) or "insecure"; see [`PeerArgs::check_mode`].
    pub mode: String,
    /// `--certs`: the certificates directory.
    pub certs: Option<PathBuf>,
    /// `--timeout`: the watchdog's bound on the whole run.
    pub timeout: Duration,
}

impl PeerArgs {
    /// No mode or certificates yet, port 0, and these defaults.
    pub fn new(host: &str, timeout: Duration) -> Self {
        Self { host: host.into(), port: 0, mode: String::new(), certs: None, timeout }
    }

    /// Takes `flag` with `value` if it is one of these options; true if it was.
    fn take(&mut self, cli: &Cli, flag: &str, value: &str) -> bool {
        match flag {
            "--host" => self.host = value.into(),
            "--port" => self.port = cli.number(flag, value),
            "--mode" => self.mode = value.into(),
            "--certs" => self.certs = Some(PathBuf::from(value)),
            "--timeout" => self.timeout = cli.seconds(flag, value),
            _ => return false,
        }
        true
    }

    /// A usage error unless `--mode` is one of `modes` and, unless insecure,
    /// `--certs` was given.
    pub fn check_mode(&self, cli: &Cli, modes: &[&str]) {
        let mode = self.mode.as_str();
        if mode.is_empty() {
            cli.usage_error("--mode is required");
        }
        if !modes.contains(&mode) {
            let (last, rest) = modes.split_last().expect("at least one mode");
            cli.usage_error(&format!("--mode: {mode:?} is not {} or {last}", rest.join(", ")));
        }
        if mode != "insecure" && self.certs.is_none() {
            let secure: Vec<&str> = modes.iter().copied().filter(|m| *m != "insecure").collect();
            cli.usage_error(&format!("--certs is required with --mode {}", secure.join("/")));
        }
    }

    fn cert_file(&self, name: &str) -> Option<PemSource> {
        self.certs.as_ref().map(|dir| PemSource::File(dir.join(name)))
    }

    /// A server's TLS: presents `server.crt`/`server.key`, trusts `ca.crt`;
    /// client certificates required under "mtls", optional under "tls"; none
    /// under "insecure" (or without `--certs`).
    pub fn server_tls(&self) -> Option<TlsConfig> {
        if self.mode == "insecure" || self.certs.is_none() {
            return None;
        }
        Some(TlsConfig {
            root_certificate: self.cert_file("ca.crt"),
            certificate: self.cert_file("server.crt"),
            private_key: self.cert_file("server.key"),
            disable_client_auth: self.mode == "tls",
            crls: Vec::new(),
        })
    }

    /// A client's TLS: trusts `ca.crt`; under "mtls" presents
    /// `IDENTITY.crt`/`IDENTITY.key`, under "tls" no certificate; none under
    /// "insecure" (or without `--certs`).
    pub fn client_tls(&self, identity: &str) -> Option<TlsConfig> {
        if self.mode == "insecure" || self.certs.is_none() {
            return None;
        }
        let mut tls = TlsConfig {
            root_certificate: self.cert_file("ca.crt"),
            disable_client_auth: self.mode == "tls",
            ..TlsConfig::default()
        };
        if self.mode == "mtls" {
            tls.certificate = self.cert_file(&format!("{identity}.crt"));
            tls.private_key = self.cert_file(&format!("{identity}.key"));
        }
        Some(tls)
    }
}

/// Runs `f` on a thread once stdin reaches end of file (the test closed the
/// pipe): how a long-running peer is told to stop.
pub fn on_stdin_eof(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        f();
    });
}
