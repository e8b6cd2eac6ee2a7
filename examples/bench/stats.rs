//! Process figures: CPU time (getrusage) and peak resident memory (VmHWM),
//! the open-file limit, and the machine's load average.

use std::time::Duration;

/// CPU seconds (user, system) and peak RSS in bytes of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStats {
    pub user: f64,
    pub system: f64,
    pub peak_rss: u64,
}

impl ProcStats {
    /// This process now.
    pub fn current() -> Self {
        let (user, system) = cpu_seconds();
        Self {
            user,
            system,
            peak_rss: peak_rss(),
        }
    }

    /// CPU seconds spent between `earlier` and `self`; peak RSS of `self`.
    pub fn since(&self, earlier: &ProcStats) -> ProcStats {
        ProcStats {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
            peak_rss: self.peak_rss,
        }
    }

    pub fn cpu(&self) -> f64 {
        self.user + self.system
    }

    /// The `STATS` line a server role answers: `STATS <utime> <stime> <peak_rss>`.
    pub fn line(&self) -> String {
        format!(
            "STATS {:.6} {:.6} {}",
            self.user, self.system, self.peak_rss
        )
    }

    /// Parses the three fields after a `STATS`/`RESULT` keyword.
    pub fn parse(fields: &[&str]) -> Result<Self, String> {
        let bad = || format!("bad process figures {fields:?}");
        if fields.len() != 3 {
            return Err(bad());
        }
        Ok(Self {
            user: fields[0].parse().map_err(|_| bad())?,
            system: fields[1].parse().map_err(|_| bad())?,
            peak_rss: fields[2].parse().map_err(|_| bad())?,
        })
    }
}

fn seconds(tv: libc::timeval) -> f64 {
    Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000).as_secs_f64()
}

/// User and system CPU seconds of this process (all threads).
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: `usage` is a zeroed local rusage that getrusage fills; the
    // pointer is valid for the call.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

/// Peak resident set size of this process (VmHWM), in bytes; 0 if unknown.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Raises the soft open-file limit to the hard one (1000 connections need
/// more than the usual 1024 descriptors once both ends are counted).
pub fn raise_nofile_limit() {
    // SAFETY: `limit` is a local rlimit filled by getrlimit before
    // setrlimit reads it; both pointers are valid for the calls.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The soft open-file limit.
pub fn nofile_limit() -> u64 {
    // SAFETY: as in `raise_nofile_limit`.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur as u64
    }
}

/// Kills this process when its parent (the orchestrator) dies, so that no
/// role outlives a killed bench.
pub fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes only
    // this process's settings; getppid has no preconditions.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() == 1 {
            // The parent died before the prctl took effect.
            libc::_exit(3);
        }
    }
}

/// The load average line of /proc/loadavg (1, 5, 15 min).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
