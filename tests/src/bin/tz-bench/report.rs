//! Writing results: one dated section per run in docs/benchmarks.md, with the machine it ran
//! on, both peers' figures side by side and the ratios.

use crate::Flags;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// "2026-11-25 19:58 UTC", from `date` (no date crate needed for one line).
fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// CPU model, cores, memory and kernel of this machine.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, {:.0} GiB RAM, Linux {}", mem_kb as f64 / 1048576.0, kernel.trim())
}

/// "package version" of a peer, from dpkg (the binaries' own version flags disagree).
pub fn version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Version}", package])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{package} (version unknown)"))
}

pub fn ratio(ours: f64, theirs: f64) -> String {
    if theirs == 0.0 { "n/a".into() } else { format!("{:.2}×", ours / theirs) }
}

fn out_path(flags: &Flags) -> Option<PathBuf> {
    match flags.str("out") {
        Some("-") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md")),
    }
}

pub fn write(flags: &Flags, sections: &[String]) {
    let text = format!("\n## {} — {}\n\n{}", now_utc(), machine(), sections.join("\n"));
    println!("{text}");
    let Some(path) = out_path(flags) else { return };
    let fresh = !path.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open benchmarks.md");
    if fresh {
        writeln!(
            f,
            "# Benchmarks\n\nSide-by-side runs against real peers on the same machine in the same run, \
             written by `bench/run.sh` (see bench/README.md). Ratios are tingzhen ÷ peer. Newest last."
        )
        .unwrap();
    }
    f.write_all(text.as_bytes()).expect("append benchmarks.md");
    eprintln!("appended to {}", path.display());
}
