//! `make bench`: our transport against its references, in separate
//! processes, in one run, printed as one table of ratios (issue 11's
//! targets marked ok/MISS) with the raw figures beside them.
//!
//!     cargo run --release --example bench -- [--quick] [--only gettasks|transfer]
//!                                             [--reps R] [--sizes 64,256,1024] [--conns 1,64,1000]
//!
//! - GetTasks: N separate mTLS connections (one call in flight each) from a
//!   plain tonic load generator against a bare tonic server (same proto, no
//!   checks), ours with Rust logic, and ours with C callbacks through the C
//!   API; req/s and server CPU per request over a measured window.
//! - Transfers: uploads and downloads of in-memory payloads, ours (our
//!   collaborator client and aggregator server) against a raw rustls mTLS
//!   stream, interleaved repetitions, a fresh server and client process per
//!   transfer: median MiB/s, CPU seconds per GiB (both processes), peak RSS
//!   of each side.
//!
//! The binary re-executes itself for each role (`bench role <name> ...`,
//! see roles.rs).

mod bare;
mod load;
mod ours;
mod pki;
mod raw;
mod roles;
mod stats;
mod table;
mod transfer;

use std::time::Duration;

use roles::Args;

/// What the orchestrator runs.
struct Plan {
    gettasks: bool,
    transfers: bool,
    conns: Vec<usize>,
    sizes_mib: Vec<usize>,
    reps: usize,
    timing: load::Window,
    quick: bool,
}

const USAGE: &str = "usage: bench [--quick] [--only gettasks|transfer] [--reps R] [--sizes 64,256,1024] [--conns 1,64,1000]";

fn plan(args: &[String]) -> Result<Plan, String> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut plan = Plan {
        gettasks: true,
        transfers: true,
        conns: if quick { vec![1, 8] } else { vec![1, 64, 1000] },
        sizes_mib: if quick {
            vec![4, 16]
        } else {
            vec![64, 256, 1024]
        },
        reps: if quick { 1 } else { 3 },
        timing: if quick {
            load::Window {
                warmup: Duration::from_millis(200),
                window: Duration::from_millis(500),
            }
        } else {
            load::Window {
                warmup: Duration::from_millis(500),
                window: Duration::from_secs(3),
            }
        },
        quick,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => {}
            "--only" => match value()?.as_str() {
                "gettasks" => plan.transfers = false,
                "transfer" => plan.gettasks = false,
                other => return Err(format!("--only {other:?}: expected gettasks or transfer")),
            },
            "--reps" => {
                plan.reps = value()?
                    .parse()
                    .ok()
                    .filter(|&r| r > 0)
                    .ok_or("--reps needs a positive number")?;
            }
            "--conns" => {
                let list = value()?;
                plan.conns = list
                    .split(',')
                    .map(|s| s.trim().parse().ok().filter(|&n: &usize| n > 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        format!("--conns {list:?}: expected connection counts like 1,64,1000")
                    })?;
            }
            "--sizes" => {
                let list = value()?;
                plan.sizes_mib = list
                    .split(',')
                    .map(|s| s.trim().parse().ok().filter(|&m: &usize| m > 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| format!("--sizes {list:?}: expected MiB sizes like 64,256"))?;
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(plan)
}

fn run_gettasks(plan: &Plan, pki: &pki::Pki) -> Result<table::GetTasks, String> {
    let needed = plan.conns.iter().max().copied().unwrap_or(0) as u64 + 100;
    if stats::nofile_limit() < needed {
        return Err(format!(
            "N={} connections need about {needed} open files per process; the hard limit is {} (raise it with ulimit -Hn)",
            needed - 100,
            stats::nofile_limit()
        ));
    }
    // Repetitions interleave the servers (bare, ours, ... then again), so a
    // drift of the machine hits every server alike; each figure is a median.
    let servers = load::servers();
    let mut rows = Vec::new();
    for &n in &plan.conns {
        let mut runs: Vec<Vec<load::LoadResult>> = servers.iter().map(|_| Vec::new()).collect();
        for rep in 1..=plan.reps {
            for ((label, role), results) in servers.iter().zip(&mut runs) {
                let result = load::run(role, pki, n, &plan.timing)?;
                eprintln!(
                    "bench: GetTasks N={n} {label} #{rep}: {:.0} req/s, {:.4} ms CPU/req",
                    result.rate,
                    result.cpu_per_request * 1e3
                );
                results.push(result);
            }
        }
        let row = servers.iter().zip(runs).map(|((label, _), results)| (*label, load::median_of(&results))).collect();
        rows.push((n, row));
    }
    Ok(rows)
}

fn orchestrate(args: &[String]) -> Result<(), String> {
    let plan = plan(args)?;
    stats::raise_nofile_limit();
    let load_at_start = stats::load_average();
    let dir = tempfile::Builder::new()
        .prefix("ofl-bench-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let pki = pki::generate(dir.path())?;
    let gettasks = if plan.gettasks {
        run_gettasks(&plan, &pki)?
    } else {
        Vec::new()
    };
    let cells = if plan.transfers {
        transfer::run_all(&pki, &plan.sizes_mib, plan.reps)?
    } else {
        Vec::new()
    };
    println!(
        "openfl-transport bench{}: mTLS on 127.0.0.1, {} cores, separate processes; load average at start {load_at_start}, at end {}",
        if plan.quick { " --quick (smoke run: figures mean nothing)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        stats::load_average()
    );
    if plan.gettasks {
        println!(
            "GetTasks: N separate connections, one call in flight each, {:.1} s window after {:.1} s warm-up; \
             median of {} interleaved repetitions",
            plan.timing.window.as_secs_f64(),
            plan.timing.warmup.as_secs_f64(),
            plan.reps
        );
    }
    if plan.transfers {
        println!("transfers: median of {} interleaved repetitions; peak RSS = max over them; CPU = both processes", plan.reps);
    }
    println!();
    table::print(&gettasks, &cells);
    Ok(())
}

fn role(name: &str, rest: &[String]) -> ! {
    stats::die_with_parent();
    stats::raise_nofile_limit();
    let args = Args::parse(rest).unwrap_or_else(|e| roles::fail(name, e));
    match name {
        "gettasks-bare" => bare::role(&args),
        "gettasks-rust" => ours::rust_role(&args),
        "gettasks-c" => ours::c_role(&args, false),
        "gettasks-c-nonblock" => ours::c_role(&args, true),
        "load" => load::role(&args),
        "ours-server" => ours::transfer_role(&args),
        "ours-client" => transfer::client_role(&args),
        "raw-server" => raw::server_role(&args),
        "raw-client" => raw::client_role(&args),
        // For running roles by hand: `bench role pki --dir DIR`.
        "pki" => match pki::generate(std::path::Path::new(
            args.str("dir").unwrap_or_else(|e| roles::fail(name, e)),
        )) {
            Ok(_) => std::process::exit(0),
            Err(e) => roles::fail(name, e),
        },
        other => roles::fail(other, "no such role"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("role") {
        let name = args.get(1).cloned().unwrap_or_default();
        role(&name, args.get(2..).unwrap_or_default());
    }
    // Every child role is killed when `orchestrate` returns (Role's Drop).
    if let Err(e) = orchestrate(&args) {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
