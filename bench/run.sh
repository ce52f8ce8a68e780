#!/usr/bin/env bash
# Side-by-side benchmarks against real peers; results are appended to docs/benchmarks.md.
#   bench/run.sh [agent|ingest|all] [--flag value ...]     (default: all)
# Release builds of tingzhen, tingzhen-agent and the tz-bench driver. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in /usr/bin/prometheus-node-exporter /usr/bin/victoria-metrics; do
  [[ -x $bin ]] || { echo "bench: $bin missing; run scripts/test.sh once (it installs the peers)" >&2; exit 1; }
done
cargo build --release -p tingzhen -p tingzhen-agent --bins
cargo build --release -p tingzhen-tests --bin tz-bench
what=${1:-all}
shift || true
exec target/release/tz-bench "$what" "$@"
