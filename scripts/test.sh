#!/usr/bin/env bash
# The test command: installs the real peers the end-to-end tests talk to (Debian packages) if
# they are missing, then runs every test in the workspace. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# binary -> Debian package providing it
declare -A PEERS=(
  [/usr/bin/prometheus]=prometheus
  [/usr/bin/promtool]=prometheus
  [/usr/bin/prometheus-node-exporter]=prometheus-node-exporter
  [/usr/bin/victoria-metrics]=victoria-metrics
)
missing=()
for bin in "${!PEERS[@]}"; do
  [[ -x "$bin" ]] || missing+=("${PEERS[$bin]}")
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
  [[ -x "$bin" ]] || { echo "test.sh: $bin still missing after install" >&2; exit 1; }
done

# No test needs PostgreSQL, Redis or a broker yet; when one does, start it here.

# --no-fail-fast: one failing suite must not hide the results of the others (still exits non-zero).
exec cargo test --workspace --no-fail-fast "$@"
