#!/usr/bin/env bash
# The test command: installs the real peers the end-to-end tests talk to (Debian packages) if
# they are missing, then runs every test in the workspace. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# binary (or data file) -> Debian package providing it
declare -A PEERS=(
  [/usr/bin/prometheus]=prometheus
  [/usr/bin/promtool]=prometheus
  [/usr/bin/prometheus-node-exporter]=prometheus-node-exporter
  [/usr/bin/victoria-metrics]=victoria-metrics
  [/usr/bin/aiosmtpd]=python3-aiosmtpd
  [/usr/bin/prometheus-alertmanager]=prometheus-alertmanager
  # The console's browser tests (tests/tests/console_browser.rs): headless Chromium through its
  # WebDriver server, and a CJK font so the zh-CN screenshots show text rather than boxes.
  [/usr/bin/chromium]=chromium
  [/usr/bin/chromedriver]=chromium-driver
  [/usr/share/fonts/truetype/wqy/wqy-microhei.ttc]=fonts-wqy-microhei
)
missing=()
for bin in "${!PEERS[@]}"; do
  [[ -e "$bin" ]] || missing+=("${PEERS[$bin]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "test.sh: installing missing peers: ${missing[*]}" >&2
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  # The packages' own services are not wanted (tests start their own on free ports, and a
  # service start fails without an init system): deny starts during the install, unless the
  # machine already has a policy.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
  ((added_policy)) && "${sudo[@]}" rm -f "$policy"
  ((status == 0)) || { echo "test.sh: apt-get install failed ($status)" >&2; exit "$status"; }
fi
for bin in "${!PEERS[@]}"; do
  [[ -e "$bin" ]] || { echo "test.sh: $bin still missing after install" >&2; exit 1; }
done

# The Python OpenTelemetry SDK exporter feeds the OTLP flows test (tests/tests/flows_e2e.rs) real
# spans; pip (PyPI is reachable on the build machines) for the `python3` the tests call.
if ! python3 -c 'import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
  echo "test.sh: installing the OpenTelemetry Python SDK (pip)" >&2
  python3 -m pip install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
fi

# Services the tests talk to: start any that is not answering, with the machine's own commands.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_if_down() {
  local port=$1 name=$2
  shift 2
  port_open "$port" && return 0
  echo "test.sh: $name is not answering on port $port; starting it" >&2
  "$@" || true
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "test.sh: $name did not come up on port $port" >&2
  exit 1
}
if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
  start_if_down 5432 PostgreSQL pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
fi
start_if_down 3306 MariaDB start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
start_if_down 6379 Redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
  --dir /var/lib/redis --logfile /var/log/redis/ci.log
start_if_down 5672 RabbitMQ rabbitmq-server -detached
start_if_down 1883 Mosquitto mosquitto -d -c /etc/mosquitto/mosquitto.conf
start_if_down 4222 NATS start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
  -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log

# The agent's PostgreSQL target test (tests/tests/agent_targets.rs) needs pg_stat_statements
# preloaded. Doing the one restart of the local cluster here keeps it out of the middle of the
# test run; the test's own helper does the same idempotently if this did not run.
pg_preload=$(psql -h 127.0.0.1 -U postgres -d test -Atc 'SHOW shared_preload_libraries' 2>/dev/null || true)
if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]] && psql -h 127.0.0.1 -U postgres -d test -Atc 'SELECT 1' >/dev/null 2>&1 \
  && [[ ",${pg_preload// /}," != *",pg_stat_statements,"* ]]; then
  echo "test.sh: preloading pg_stat_statements in the local PostgreSQL" >&2
  psql -h 127.0.0.1 -U postgres -d test -Atqc \
    "ALTER SYSTEM SET shared_preload_libraries = '${pg_preload:+$pg_preload,}pg_stat_statements'"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main restart
fi

# --no-fail-fast: one failing suite must not hide the results of the others (still exits non-zero).
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?

# DESIGN.md: the relational store is SQLite embedded or PostgreSQL, and both run the same tests.
# The store tests again, with every store on the local PostgreSQL (each test in a schema of its
# own, dropped afterwards; core/src/db/testing.rs). Only on a full run: with arguments the caller
# chose what to run.
if (($# == 0)); then
  echo "test.sh: the relational-store tests again, on PostgreSQL" >&2
  export TINGZHEN_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
  cargo test --no-fail-fast -p tingzhen-core --features db -p tingzhen-identity -p tingzhen-alerting \
    -p tingzhen-dashboard || status=$?
  cargo test --no-fail-fast -p tingzhen-collector --lib --test flows_api || status=$?
fi
exit "$status"
