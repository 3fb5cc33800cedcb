#!/usr/bin/env bash
# Short connections, many interleaved rounds: HAProxy (the harness's haproxy.cfg: TCP mode,
# inspect-delay + req.ssl_sni) and one or more portcullis builds, each in front of the
# harness's tcpbench backend on loopback, measured in turn round after round so that the
# machine's drift over an hour falls on every target alike. Per target and load it prints
# the median connections/s, p50 and p99 (µs), and the proxy's CPU per connection (µs, from
# /proc/PID/stat). bench/compare.sh gives the full picture against a direct connection;
# this script gives enough rounds to tell two builds apart on the short-connection budget.
#
#   bench/short-ab.sh                                  # target/release/portcullis, HAProxy
#   bench/short-ab.sh /tmp/old/portcullis target/release/portcullis
#
# ROUNDS (10) rounds of SECS (2) seconds per target and load; CONCS ("1 32") connections in
# flight. Needs gcc, python3 and Debian's haproxy; uses loopback ports 25443 (backend),
# 26443 (HAProxy) and 27101 onwards (portcullis), so not while bench/compare.sh runs.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=$(realpath "${HARNESS:-../shared/bench}")
[ -f "$harness/tcpbench.c" ] || { echo "bench/short-ab.sh: no harness at $harness (set HARNESS=...)" >&2; exit 2; }
command -v haproxy >/dev/null || { echo "bench/short-ab.sh: apt-get install haproxy" >&2; exit 2; }
ROUNDS=${ROUNDS:-10}
SECS=${SECS:-2}
CONCS=${CONCS:-1 32}
if [ $# -eq 0 ]; then
  cargo build --release --locked
  set -- target/release/portcullis
fi
work=$(mktemp -d /tmp/short-ab-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
# Room for the load generator's sockets (and portcullis's, two per connection).
ulimit -n "$(ulimit -Hn)"

gcc -O2 -Wall -pthread -o "$work/tcpbench" "$harness/tcpbench.c"
python3 "$harness/gen_hello.py" short.allowed.test "$work/hello.bin"
tb=$work/tcpbench

# start NAME COMMAND...: a process of the run in its own session, its output in NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
start backend "$tb" server 127.0.0.1:25443 128
start haproxy haproxy -db -f "$harness/haproxy.cfg"
targets=("haproxy:26443")
port=27101
for bin in "$@"; do
  name=portcullis$((port - 27100))
  echo "$name: $(realpath "$bin")"
  PORTCULLIS_BIN=$bin LISTEN_ADDR=127.0.0.1:$port UPSTREAM_ADDR=127.0.0.1:25443 \
    start "$name" bench/portcullis-target.sh
  targets+=("$name:$port")
  port=$((port + 1))
done

# Each target answers before any round counts.
for t in "${targets[@]}"; do
  p=${t##*:}
  for _ in $(seq 50); do
    "$tb" probe "127.0.0.1:$p" "$work/hello.bin" 500 >/dev/null 2>&1 && break
    sleep 0.1
  done || { echo "bench/short-ab.sh: nothing answers on $p (logs: $work)" >&2; exit 1; }
done

# The target's process: the one listening on its port.
pid_of() { ss -Hltnp "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

raw=$work/raw.tsv
for conc in $CONCS; do
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in "${targets[@]}"; do
      p=${t##*:}
      pid=$(pid_of "$p")
      before=$(cpu_ticks "$pid")
      out=$("$tb" rate "127.0.0.1:$p" "$work/hello.bin" "$conc" "$SECS")
      after=$(cpu_ticks "$pid")
      printf '%s\t%s\t%s\t%s\n' "$conc" "${t%%:*}" "$((after - before))" "$out" >>"$raw"
    done
  done
done

python3 - "$raw" "$(getconf CLK_TCK)" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    conc, name, ticks, out = line.rstrip("\n").split("\t", 3)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", out))
    conns = float(kv["conns"])
    cpu_us = int(ticks) * 1e6 / int(sys.argv[2]) / conns if conns else float("nan")
    rows.setdefault((int(conc), name), []).append(
        (float(kv["cps"]), float(kv["p50_us"]), float(kv["p99_us"]), cpu_us))
print("| in flight | target | connections/s | p50 µs | p99 µs | proxy CPU µs per connection |")
print("|---|---|---|---|---|---|")
for (conc, name), v in sorted(rows.items()):
    med = [statistics.median(x[i] for x in v) for i in range(4)]
    print(f"| {conc} | {name} | {med[0]:,.0f} | {med[1]:,.0f} | {med[2]:,.0f} | {med[3]:.0f} |")
print(f"\n{len(next(iter(rows.values())))} interleaved rounds per target and load; medians.")
PY
echo "raw rounds: $raw"
