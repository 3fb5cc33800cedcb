#!/usr/bin/env bash
# Measures portcullis side by side with HAProxy (with and without splice) and a
# direct loopback connection, in the same run, interleaved, using the shared
# harness (../shared/bench: README there). Results: /tmp/pbench/results/<name>/.
#
#   bench/compare.sh              # explicit mode: forward listeners, fixed upstreams
#   MODE=redirect bench/compare.sh  # transparent: nftables REDIRECT in a namespace
#
# Needs root (namespaces), gcc, python3, and Debian's haproxy, nginx,
# libnginx-mod-stream, iperf3 (the harness's README lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${HARNESS:-../shared/bench}
[ -x "$harness/run.sh" ] || { echo "bench/compare.sh: no harness at $harness (set HARNESS=...)" >&2; exit 2; }
cargo build --release --locked
mode=${MODE:-explicit}
# METRICS=1: portcullis with the admin endpoint and a scrape every second, named
# portcullis-metrics in the tables (compare with a METRICS=0 run through haproxy's ratios).
if [ "${METRICS:-0}" = 1 ]; then
  export PROXY_NAME=portcullis-metrics
  export PROXY_CMD="METRICS=1 exec $PWD/bench/portcullis-target.sh"
else
  export PROXY_NAME=portcullis
  export PROXY_CMD="exec $PWD/bench/portcullis-target.sh"
fi
export TARGETS=${TARGETS:-direct haproxy haproxy-splice}
export OUTDIR=${OUTDIR:-/tmp/pbench/results/$(date +%Y%m%d-%H%M%S)-$mode}
MODE=$mode exec "$harness/run.sh"
