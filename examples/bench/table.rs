//! The one table the bench prints: ratios against the references measured
//! in the same run, raw figures beside them, and each target of issue 11
//! with its threshold and ok/MISS.

use crate::load::LoadResult;
use crate::transfer::{Cell, Direction, Transfer};

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

/// GetTasks figures: per N, per server (the first is the reference).
pub type GetTasks = Vec<(usize, Vec<(&'static str, LoadResult)>)>;

/// Counts the targets checked and missed.
#[derive(Default)]
pub struct Verdicts {
    checked: usize,
    missed: usize,
}

impl Verdicts {
    /// "≥ 0.90 ok" or "≥ 0.90 MISS".
    fn at_least(&mut self, value: f64, threshold: f64) -> String {
        self.verdict(value >= threshold, format!("≥ {threshold:.2}"))
    }

    fn at_most(&mut self, value: f64, threshold: f64) -> String {
        self.verdict(value <= threshold, format!("≤ {threshold:.2}"))
    }

    fn verdict(&mut self, ok: bool, rule: String) -> String {
        self.checked += 1;
        if !ok {
            self.missed += 1;
        }
        format!("{rule} {}", if ok { "ok" } else { "MISS" })
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn print_gettasks(rows: &GetTasks, v: &mut Verdicts) {
    println!("| GetTasks server | N | req/s | ours/bare | target | server CPU ms/req | ours/bare | target | load-gen CPU ms/req |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, servers) in rows {
        let Some((_, bare)) = servers.first() else {
            continue;
        };
        for (i, (label, r)) in servers.iter().enumerate() {
            let (rate, cpu) = (r.rate / bare.rate, r.cpu_per_request / bare.cpu_per_request);
            // The targets are for many connections (N=64 and 1000); N=1 is shown only.
            let targeted = i > 0 && *n > 1;
            let rate_target = if targeted {
                v.at_least(rate, 0.90)
            } else {
                String::new()
            };
            let cpu_target = if targeted {
                v.at_most(cpu, 1.2)
            } else {
                String::new()
            };
            println!(
                "| {label} | {n} | {:.0} | {rate:.2} | {rate_target} | {:.4} | {cpu:.2} | {cpu_target} | {:.4} |",
                r.rate,
                r.cpu_per_request * 1e3,
                r.client_cpu_per_request * 1e3
            );
        }
    }
}

/// CPU seconds of both processes per GiB moved, median over repetitions.
fn cpu_per_gib(transfers: &[Transfer], size: usize) -> f64 {
    median(
        transfers
            .iter()
            .map(|t| (t.client.cpu() + t.server.cpu()) / (size as f64 / GIB)),
    )
}

fn rate(transfers: &[Transfer], size: usize) -> f64 {
    median(transfers.iter().map(|t| size as f64 / MIB / t.secs))
}

fn peak_mib(transfers: &[Transfer], side: impl Fn(&Transfer) -> u64) -> f64 {
    transfers
        .iter()
        .map(|t| side(t) as f64 / MIB)
        .fold(0.0, f64::max)
}

fn print_transfers(cells: &[Cell], v: &mut Verdicts) {
    println!("| transfer | MiB/s ours | MiB/s raw | ours/raw | target | CPU s/GiB ours | CPU s/GiB raw | ours/raw | target | peak RSS MiB client ours (raw) | peak RSS MiB server ours (raw) | RSS limit MiB | target |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in cells {
        let (ours, raw) = (rate(&c.ours, c.size), rate(&c.raw, c.size));
        let floor = if c.direction == Direction::Upload {
            0.70
        } else {
            0.50
        };
        let rate_target = v.at_least(ours / raw, floor);
        let (cpu_ours, cpu_raw) = (cpu_per_gib(&c.ours, c.size), cpu_per_gib(&c.raw, c.size));
        let cpu_target = v.at_most(cpu_ours / cpu_raw, 1.5);
        let (client, server) = (
            peak_mib(&c.ours, |t| t.client.peak_rss),
            peak_mib(&c.ours, |t| t.server.peak_rss),
        );
        let limit = 1.1 * c.size as f64 / MIB + 32.0;
        let rss_target = v.verdict(client <= limit && server <= limit, "both ≤ limit".into());
        println!(
            "| {} {} MiB | {ours:.0} | {raw:.0} | {:.2} | {rate_target} | {cpu_ours:.2} | {cpu_raw:.2} | {:.2} | {cpu_target} | {client:.0} ({:.0}) | {server:.0} ({:.0}) | {limit:.0} | {rss_target} |",
            c.direction.name(),
            c.size >> 20,
            ours / raw,
            cpu_ours / cpu_raw,
            peak_mib(&c.raw, |t| t.client.peak_rss),
            peak_mib(&c.raw, |t| t.server.peak_rss),
        );
    }
}

/// Median seconds of the transfers of `cell`.
fn median_secs(transfers: &[Transfer]) -> f64 {
    median(transfers.iter().map(|t| t.secs))
}

/// Rows of transfer time against size, per direction.
fn transfer_linearity(cells: &[Cell], v: &mut Verdicts) -> Vec<String> {
    let mut rows = Vec::new();
    for direction in [Direction::Upload, Direction::Download] {
        let of_dir: Vec<&Cell> = cells.iter().filter(|c| c.direction == direction).collect();
        let (Some(small), Some(big)) = (
            of_dir.iter().min_by_key(|c| c.size),
            of_dir.iter().max_by_key(|c| c.size),
        ) else {
            continue;
        };
        if small.size == big.size {
            continue;
        }
        // 17 for 1024 vs 64 MiB: the size ratio plus 1/16 of it.
        let limit = big.size as f64 / small.size as f64 * 17.0 / 16.0;
        for (who, ours) in [("ours", true), ("raw", false)] {
            let secs = |c: &Cell| median_secs(if ours { &c.ours } else { &c.raw });
            let ratio = secs(big) / secs(small);
            let target = if ours {
                v.at_most(ratio, limit)
            } else {
                format!("(reference, ≤ {limit:.2})")
            };
            rows.push(format!(
                "| {} time {} MiB / {} MiB, {who} | {ratio:.2} | {target} |",
                direction.name(),
                big.size >> 20,
                small.size >> 20
            ));
        }
    }
    rows
}

/// Rows of server CPU per request at the largest N against the smallest N > 1.
fn gettasks_linearity(gettasks: &GetTasks, v: &mut Verdicts) -> Vec<String> {
    let (Some((n_small, small)), Some((n_big, big))) = (
        gettasks
            .iter()
            .filter(|(n, _)| *n > 1)
            .min_by_key(|(n, _)| *n),
        gettasks.iter().max_by_key(|(n, _)| *n),
    ) else {
        return Vec::new();
    };
    if n_small == n_big {
        return Vec::new();
    }
    let mut rows = Vec::new();
    for ((label, s), (_, b)) in small.iter().zip(big) {
        let ratio = b.cpu_per_request / s.cpu_per_request;
        let target = if label.starts_with("ours") {
            v.at_most(ratio, 1.0)
        } else {
            "(reference)".into()
        };
        rows.push(format!(
            "| server CPU/req N={n_big} / N={n_small}, {label} | {ratio:.2} | {target} |"
        ));
    }
    rows
}

fn print_linearity(gettasks: &GetTasks, cells: &[Cell], v: &mut Verdicts) {
    let mut rows = transfer_linearity(cells, v);
    rows.extend(gettasks_linearity(gettasks, v));
    if rows.is_empty() {
        return;
    }
    println!("| linearity | value | target |");
    println!("|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!();
}

fn cpu(stats: &crate::stats::ProcStats) -> String {
    format!("{:.3}+{:.3}", stats.user, stats.system)
}

/// Every transfer on its own: both sides' CPU (user+system seconds) and
/// peak RSS.
fn print_each_transfer(cells: &[Cell]) {
    println!("| each transfer | rep | MiB/s | client CPU s user+sys | server CPU s user+sys | client peak RSS MiB | server peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|");
    for c in cells {
        for (who, transfers) in [("raw", &c.raw), ("ours", &c.ours)] {
            for (i, t) in transfers.iter().enumerate() {
                println!(
                    "| {} {} MiB {who} | {} | {:.0} | {} | {} | {:.0} | {:.0} |",
                    c.direction.name(),
                    c.size >> 20,
                    i + 1,
                    c.size as f64 / MIB / t.secs,
                    cpu(&t.client),
                    cpu(&t.server),
                    t.client.peak_rss as f64 / MIB,
                    t.server.peak_rss as f64 / MIB
                );
            }
        }
    }
}

/// Prints the whole table.
pub fn print(gettasks: &GetTasks, cells: &[Cell]) {
    let mut v = Verdicts::default();
    if !gettasks.is_empty() {
        print_gettasks(gettasks, &mut v);
        println!();
    }
    if !cells.is_empty() {
        print_transfers(cells, &mut v);
        println!();
    }
    print_linearity(gettasks, cells, &mut v);
    println!("targets: {} checked, {} missed", v.checked, v.missed);
    if !cells.is_empty() {
        println!();
        print_each_transfer(cells);
    }
}
