//! The processes of the bench: the orchestrator re-executes its own binary
//! as `bench role <name> --key value...` for each server and client.
//!
//! Server roles print `READY <port>` once listening, then answer `STATS`
//! on stdin with `STATS <utime_s> <stime_s> <peak_rss_bytes>`; end of stdin
//! makes them exit. Client roles print their result lines and exit.
//! A role that fails prints why on stderr and exits non-zero; the
//! orchestrator then fails with that stderr. Roles die with the
//! orchestrator (PR_SET_PDEATHSIG), and [`Role`] kills its process when
//! dropped, so no child outlives the bench.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::stats::ProcStats;

/// The arguments of a role: `--key value` pairs.
pub struct Args(HashMap<String, String>);

impl Args {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --key, got {key:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), value.clone());
        }
        Ok(Self(map))
    }

    pub fn str(&self, key: &str) -> Result<&str, String> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("missing --{key}"))
    }

    pub fn num<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        let text = self.str(key)?;
        text.parse()
            .map_err(|_| format!("--{key} {text:?} is not a number"))
    }

    pub fn secs(&self, key: &str) -> Result<Duration, String> {
        Ok(Duration::from_secs_f64(self.num(key)?))
    }
}

/// A running role, killed when dropped.
pub struct Role {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Role {
    /// Starts `bench role <name> <args>`.
    pub fn spawn(name: &str, args: &[String]) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding the bench binary: {e}"))?;
        let mut child = Command::new(exe)
            .arg("role")
            .arg(name)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting role {name}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let stdin = child.stdin.take();
        Ok(Self {
            name: format!("{name} {}", args.join(" ")),
            child,
            stdin,
            lines,
            stderr: Some(stderr),
        })
    }

    /// Waits up to `timeout` for the next line, which must start with
    /// `keyword`; returns the words after it.
    pub fn expect(&mut self, keyword: &str, timeout: Duration) -> Result<Vec<String>, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                let mut words = line.split_whitespace();
                if words.next() == Some(keyword) {
                    Ok(words.map(str::to_string).collect())
                } else {
                    Err(self.failure(&format!("expected {keyword}, got {line:?}")))
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                Err(self.failure(&format!("no {keyword} within {timeout:?}")))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.failure(&format!("exited before {keyword}")))
            }
        }
    }

    /// Waits for `READY <port>`.
    pub fn ready(&mut self, timeout: Duration) -> Result<u16, String> {
        let words = self.expect("READY", timeout)?;
        match words.first().and_then(|p| p.parse().ok()) {
            Some(port) => Ok(port),
            None => Err(self.failure(&format!("bad READY line {words:?}"))),
        }
    }

    /// Asks a server role for its CPU time and peak RSS.
    pub fn stats(&mut self) -> Result<ProcStats, String> {
        let sent = self
            .stdin
            .as_mut()
            .map(|s| s.write_all(b"STATS\n").and_then(|()| s.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.failure("cannot ask for STATS (stdin closed)"));
        }
        let words = self.expect("STATS", Duration::from_secs(10))?;
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        ProcStats::parse(&words).map_err(|e| self.failure(&e))
    }

    /// Closes stdin and waits up to `timeout` for a clean exit.
    pub fn finish(mut self, timeout: Duration) -> Result<(), String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(self.failure(&format!("exited with {status}"))),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => return Err(self.failure(&format!("did not exit within {timeout:?}"))),
                Err(e) => return Err(self.failure(&format!("waiting for it: {e}"))),
            }
        }
    }

    /// Kills the role and describes the failure with its stderr.
    fn failure(&mut self, what: &str) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        format!(
            "role `{}` failed: {what} ({status})\n--- its stderr ---\n{}--- end ---",
            self.name, stderr
        )
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a server role once it listens on `port`: prints READY, then
/// answers STATS until stdin ends, then exits the process.
pub fn serve_stats(port: u16) -> ! {
    println!("READY {port}");
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("STATS") => {
                println!("{}", ProcStats::current().line());
                let _ = std::io::stdout().flush();
            }
            Ok(other) => {
                eprintln!("unknown command {other:?}");
                std::process::exit(2);
            }
            Err(_) => break,
        }
    }
    std::process::exit(0)
}

/// Ends a role that failed: its reason on stderr, exit status 1.
pub fn fail(role: &str, why: impl std::fmt::Display) -> ! {
    eprintln!("bench role {role}: {why}");
    std::process::exit(1)
}

/// A multi-threaded Tokio runtime with one worker per core, as our library's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("Tokio runtime")
}
