#!/usr/bin/env bash
# Side-by-side benchmarks against real peers; results are appended to docs/benchmarks.md.
#   bench/run.sh [agent|ingest|query|alert|targets|all] [--flag value ...]     (default: all;
#   targets is not part of all)
# Release builds. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in /usr/bin/prometheus-node-exporter /usr/bin/victoria-metrics /usr/bin/prometheus \
  /usr/bin/prometheus-alertmanager /usr/bin/aiosmtpd; do
  [[ -x $bin ]] || { echo "bench: $bin missing; run scripts/test.sh once (it installs the peers)" >&2; exit 1; }
done
# Each binary is built on its own, with exactly the features it ships with (a joint build would
# unify features, e.g. give the agent the server's relational store), then set aside.
bindir=target/bench-bin
mkdir -p "$bindir"
cargo build --release -p tingzhen-agent --bin tingzhen-agent
cp target/release/tingzhen-agent "$bindir/"
cargo build --release -p tingzhen --bin tingzhen
cp target/release/tingzhen "$bindir/"
cargo build --release -p tingzhen-tests --bin tz-bench
what=${1:-all}
shift || true
TINGZHEN_BIN_DIR="$PWD/$bindir" exec target/release/tz-bench "$what" "$@"
