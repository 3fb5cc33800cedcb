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
#
# "exchange µs" is in flight / rate: how long each connection takes from the client's
# connect to its next one. tcpbench times a connection from connect(2) to the first byte
# of the answer, but starts the next one only at the end of the answer (its FIN). A proxy
# that sends the answer's FIN in a later segment than its bytes moves part of each exchange
# out of the measured latency: at the same rate its p50 is lower. With tcpdump (and root),
# one more round per target and load (FINS=0 skips it) is captured, and a second table says
# how often each proxy sent the FIN with the answer, and how late it came otherwise.
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

# One captured round per target and load: where the answer's FIN went (the proxy's
# segments to the client only; headers are enough).
fins=$work/fins.tsv
if [ "${FINS:-1}" != 0 ] && command -v tcpdump >/dev/null && [ "$(id -u)" -eq 0 ]; then
  for conc in $CONCS; do
    for t in "${targets[@]}"; do
      p=${t##*:}
      tcpdump -i lo -nn -s 96 -w "$work/fin-$conc-$p.pcap" "tcp src port $p" 2>/dev/null &
      dump=$!
      sleep 0.5
      "$tb" rate "127.0.0.1:$p" "$work/hello.bin" "$conc" "$SECS" >/dev/null
      sleep 0.3
      kill -INT "$dump"
      wait "$dump" || true
      tcpdump -r "$work/fin-$conc-$p.pcap" -nn -tt 2>/dev/null |
        sed "s/^/$conc\t${t%%:*}\t/" >>"$fins"
    done
  done
fi

python3 - "$raw" "$(getconf CLK_TCK)" "$fins" <<'PY'
import os, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    conc, name, ticks, out = line.rstrip("\n").split("\t", 3)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", out))
    conns = float(kv["conns"])
    cpu_us = int(ticks) * 1e6 / int(sys.argv[2]) / conns if conns else float("nan")
    rows.setdefault((int(conc), name), []).append(
        (float(kv["cps"]), float(kv["p50_us"]), float(kv["p99_us"]), cpu_us))
print("| in flight | target | connections/s | exchange µs | p50 µs | p99 µs | proxy CPU µs per connection |")
print("|---|---|---|---|---|---|---|")
for (conc, name), v in sorted(rows.items()):
    med = [statistics.median(x[i] for x in v) for i in range(4)]
    exchange = conc * 1e6 / med[0]
    print(f"| {conc} | {name} | {med[0]:,.0f} | {exchange:,.0f} | {med[1]:,.0f} | {med[2]:,.0f} | {med[3]:.0f} |")
print(f"\n{len(next(iter(rows.values())))} interleaved rounds per target and load; medians.")

# The captured rounds: per client connection (a SYN-ACK starts one), the first segment with
# bytes, and whether the FIN rode on it or came later.
if os.path.exists(sys.argv[3]):
    seg = re.compile(r"([\d.]+) IP \S+ > (\S+): Flags \[([^\]]*)\].* length (\d+)")
    found = {}
    for line in open(sys.argv[3]):
        conc, name, text = line.rstrip("\n").split("\t", 2)
        m = seg.match(text)
        if not m:
            continue
        at, client, flags, length = float(m[1]), m[2], m[3], int(m[4])
        conns = found.setdefault((int(conc), name), {"open": {}, "with": 0, "gaps": []})
        if "S" in flags:
            conns["open"][client] = None
        elif client in conns["open"]:
            sent = conns["open"][client]
            if sent is None and length > 0:
                if "F" in flags:
                    conns["with"] += 1
                    del conns["open"][client]
                else:
                    conns["open"][client] = at
            elif sent is not None and "F" in flags:
                conns["gaps"].append((at - sent) * 1e6)
                del conns["open"][client]
    print("\n| in flight | target | answers with their FIN in the same segment | FIN apart: median µs after the bytes |")
    print("|---|---|---|---|")
    for (conc, name), c in sorted(found.items()):
        total = c["with"] + len(c["gaps"])
        share = f"{100 * c['with'] / total:.0f} % of {total:,}" if total else "-"
        gap = f"{statistics.median(c['gaps']):,.0f}" if c["gaps"] else "-"
        print(f"| {conc} | {name} | {share} | {gap} |")
    print("\nOne captured round per target and load (tcpdump on lo).")
PY
echo "raw rounds: $raw"
