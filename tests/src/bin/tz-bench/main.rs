//! `tz-bench`: side-by-side benchmarks against real peers, results appended to
//! docs/benchmarks.md. Run it through `bench/run.sh` (release builds).
//!
//! ```text
//! tz-bench agent   [--collections N]                       agent vs node_exporter
//! tz-bench ingest  [--hosts H] [--samples S] [--concurrency C] [--series-per-req N] [--samples-per-req N]
//!                                                          collector vs VictoriaMetrics
//! tz-bench query   [--hosts H] [--archive-hosts A] [--reps N]  query latency + memory/series vs VictoriaMetrics
//! tz-bench alert   [--trials N] [--eval-series S] [--eval-rules R] [--eval-rounds N] [--only latency|eval]
//!                                                          alert latency vs Prometheus + Alertmanager, rule throughput
//! tz-bench targets [--collections N]                       agent with PostgreSQL/Redis/MariaDB targets vs four exporters
//! tz-bench all                                             all four
//! tz-bench loadgen --url URL [--token T] [ingest options]  just the load generator
//! common: [--out FILE] (default docs/benchmarks.md; "-" = stdout only)
//! ```

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod alert;
mod flows;
mod ingest;
mod loadgen;
mod query;
mod report;
mod targets;

use std::collections::HashMap;

/// `--key value` flags after the subcommand.
pub struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Flags {
        let mut m = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let key = a.strip_prefix("--").unwrap_or_else(|| usage(&format!("unexpected argument {a:?}")));
            let val = it.next().unwrap_or_else(|| usage(&format!("--{key} needs a value")));
            m.insert(key.to_string(), val.clone());
        }
        Flags(m)
    }

    pub fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        match self.0.get(key) {
            Some(v) => v.parse().unwrap_or_else(|_| usage(&format!("--{key}: cannot parse {v:?}"))),
            None => default,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "tz-bench: {msg}\nusage: tz-bench agent|ingest|query|alert|targets|flows|all|loadgen [--flag value ...] (see bench/README.md)"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage("missing subcommand") };
    let flags = Flags::parse(&args[1..]);
    let mut sections = Vec::new();
    match cmd.as_str() {
        "agent" => sections.push(agent::run(&flags)),
        "ingest" => sections.push(ingest::run(&flags)),
        "query" => sections.push(query::run(&flags)),
        "alert" => sections.push(alert::run(&flags)),
        "targets" => sections.push(targets::run(&flags)),
        "flows" => sections.push(flows::run(&flags)),
        "all" => {
            sections.push(agent::run(&flags));
            sections.push(ingest::run(&flags));
            sections.push(query::run(&flags));
            sections.push(alert::run(&flags));
        }
        "loadgen" => {
            loadgen::standalone(&flags);
            return;
        }
        other => usage(&format!("unknown subcommand {other:?}")),
    }
    report::write(&flags, &sections);
}
