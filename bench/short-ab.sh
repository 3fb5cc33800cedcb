#!/usr/bin/env bash
# Short connections, many interleaved rounds: HAProxy (the harness's haproxy.cfg: TCP mode,
# inspect-delay + req.ssl_sni) and one or more portcullis builds, each in front of the
# harness's tcpbench backend on loopback, measured in turn round after round so that the
# machine's drift over an hour falls on every target alike. Per target and load it prints
# the median connections/s, p50, p99 and mean (µs), and the proxy's CPU per connection (µs,
# from /proc/PID/stat). The closed loop is bench/openloop.c's cN mode, which does what the
# harness's `tcpbench rate` does and also gives the mean and the time each connection is
# held after its answer's first byte (to its FIN), which no percentile counts.
# bench/compare.sh gives the full picture against a direct connection; this script gives
# enough rounds to tell two builds apart on the short-connection budget.
#
#   bench/short-ab.sh                                  # target/release/portcullis, HAProxy
#   bench/short-ab.sh /tmp/old/portcullis target/release/portcullis
#
# ROUNDS (10) rounds of SECS (2) seconds per target and load; CONCS ("1 32") connections in
# flight. Needs gcc, python3 and Debian's haproxy; uses loopback ports 25443 (backend),
# 26443 (HAProxy) and 27101 onwards (portcullis), so not while bench/compare.sh runs.
#
# BUSY=1 adds a busy loop at nice 5 for the whole run: another program keeping one CPU busy,
# as a log shipper or a compressor would on a gateway.
#
# RATES ("5000 10000 15000") are open-loop loads, OPEN_ROUNDS (ROUNDS) rounds each:
# bench/openloop.c starts connections at that rate whatever the target's speed, so every
# target is timed under the same load (the closed loop gives a faster target more
# connections in flight). CONCS="" or RATES="" skips one kind.
#
# "exchange µs" is in flight / rate: how long each connection takes from the client's
# connect to its next one; by Little's law it is the mean plus the time held after the
# answer. The closed loop (like tcpbench) times a connection from connect(2) to the answer's
# first byte as its event loop reads it, and opens the next one at the answer's FIN. When
# the FIN comes with the bytes, it closes that connection and dials the next one before it
# reads the other answers of the same epoll batch, which it then times late; when the FIN
# comes later, that work falls outside any timing. So with tcpdump (and root) CAPTURES more
# interleaved rounds per target and load (3; 0 skips them) are captured on lo, and a second
# table times the exchange on the wire: from the client's SYN to the proxy's first segment
# with the answer's bytes, and to the proxy's FIN. It also says how often the FIN rode on
# the answer's bytes, and how late it came otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=$(realpath "${HARNESS:-../shared/bench}")
[ -f "$harness/tcpbench.c" ] || { echo "bench/short-ab.sh: no harness at $harness (set HARNESS=...)" >&2; exit 2; }
command -v haproxy >/dev/null || { echo "bench/short-ab.sh: apt-get install haproxy" >&2; exit 2; }
ROUNDS=${ROUNDS:-10}
SECS=${SECS:-2}
CONCS=${CONCS-1 32}
RATES=${RATES-5000 10000 15000}
OPEN_ROUNDS=${OPEN_ROUNDS:-$ROUNDS}
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
gcc -O2 -Wall -o "$work/openloop" bench/openloop.c -lm
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
if [ "${BUSY:-0}" = 1 ]; then
  start busy nice -n 5 sh -c 'while :; do :; done'
fi
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

# rounds OUT N LOADS...: N rounds per load of `measure LOAD ROUND ADDRESS` through every
# target, a line each in OUT: load, target, round, the target's CPU ticks, what it printed.
# Each round starts one target later (A B C, B C A, ...), as the harness does: no target
# always follows the same one.
rounds() {
  local out=$1 n=$2 load r k t p pid before result
  shift 2
  for load in "$@"; do
    for ((r = 1; r <= n; r++)); do
      for ((k = 0; k < ${#targets[@]}; k++)); do
        t=${targets[$(((r + k) % ${#targets[@]}))]}
        p=${t##*:}
        pid=$(pid_of "$p")
        before=$(cpu_ticks "$pid")
        result=$(measure "$load" "$r" "127.0.0.1:$p")
        printf '%s\t%s\t%s\t%s\t%s\n' "$load" "${t%%:*}" "$r" "$(($(cpu_ticks "$pid") - before))" \
          "$result" >>"$out"
      done
    done
  done
}

# Closed loop: LOAD connections in flight, the next dialled as one ends.
raw=$work/raw.tsv
measure() { "$work/openloop" "$3" "$work/hello.bin" "c$1" "$SECS"; }
# shellcheck disable=SC2086 # CONCS and RATES are lists
rounds "$raw" "$ROUNDS" $CONCS

# Open loop: the same short connections started at LOAD per second (Poisson arrivals, one
# seed per round, so every target gets the same schedule), timed from their scheduled start.
opens=$work/open.tsv
measure() { "$work/openloop" "$3" "$work/hello.bin" "$1" "$SECS" "$2"; }
# shellcheck disable=SC2086
rounds "$opens" "$OPEN_ROUNDS" $RATES

# CAPTURES more interleaved rounds per target and load, captured on lo (headers only):
# the exchange timed on the wire.
fins=$work/fins.tsv
CAPTURES=${CAPTURES:-3}
if [ "$CAPTURES" -gt 0 ] && command -v tcpdump >/dev/null && [ "$(id -u)" -eq 0 ]; then
  for conc in $CONCS; do
    for ((r = 1; r <= CAPTURES; r++)); do
      for t in "${targets[@]}"; do
        p=${t##*:}
        pcap=$work/capture.pcap
        tcpdump -i lo -nn -s 96 -w "$pcap" "tcp port $p" 2>/dev/null &
        dump=$!
        sleep 0.5
        "$tb" rate "127.0.0.1:$p" "$work/hello.bin" "$conc" "$SECS" >/dev/null
        sleep 0.3
        kill -INT "$dump"
        wait "$dump" || true
        tcpdump -r "$pcap" -nn -tt 2>/dev/null | sed "s/^/$conc\t${t%%:*}\t/" >>"$fins"
      done
    done
  done
fi

python3 - "$raw" "$(getconf CLK_TCK)" "$fins" "$opens" <<'PY'
import os, re, statistics, sys
clk = int(sys.argv[2])

# A run's rounds: load -> target -> round -> what the generator printed, with the proxy's
# CPU µs per connection and the exchange (in flight / rate, closed loop only) added.
def rounds_of(path, closed):
    found = {}
    for line in open(path) if os.path.exists(path) else []:
        load, name, rnd, ticks, out = line.rstrip("\n").split("\t", 4)
        kv = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out)}
        kv["cpu"] = int(ticks) * 1e6 / clk / kv["conns"] if kv["conns"] else float("nan")
        if closed and kv["cps"]:
            kv["exchange"] = int(load) * 1e6 / kv["cps"]
        found.setdefault(int(load), {}).setdefault(name, {})[rnd] = kv
    return found

# One table: per load and target the median over rounds of each (key, header, ratio) and,
# where ratio is set, in brackets the median of each round's ratio to HAProxy's same round.
def table(found, load_header, keys, what):
    if not found:
        return
    print(f"\n| {load_header} | target | " + " | ".join(h for _, h, _ in keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    failed = 0
    for load, by_name in sorted(found.items()):
        ref = by_name.get("haproxy", {})
        for name, rounds in sorted(by_name.items()):
            cells = []
            for k, _, ratio in keys:
                cell = f"{statistics.median(v[k] for v in rounds.values()):,.0f}"
                ratios = [v[k] / ref[r][k] for r, v in rounds.items()
                          if ratio and name != "haproxy" and r in ref and ref[r][k]]
                if ratios:
                    cell += f" ({statistics.median(ratios):.3f})"
                cells.append(cell)
            failed += sum(v["errors"] + v["stuck"] for v in rounds.values())
            print(f"| {load:,} | {name} | " + " | ".join(cells) + " |")
    n = len(next(iter(next(iter(found.values())).values())))
    print(f"\n{what}, {n} interleaved rounds per target and load: medians, and in brackets the")
    print(f"median of the per-round ratios to HAProxy. {failed:.0f} connections failed or stuck.")

latency = [("p50_us", "p50 µs", True), ("p99_us", "p99 µs", True)]
cpu = [("cpu", "proxy CPU µs per connection", True)]
table(rounds_of(sys.argv[1], True), "in flight",
      [("cps", "connections/s", True), ("exchange", "exchange µs", True)] + latency
      + [("mean_us", "mean µs", True), ("after_us", "held after the answer µs", False)] + cpu,
      "Closed loop")
# Open loop: the same schedule for every target in a round.
table(rounds_of(sys.argv[4], False), "offered/s",
      [("cps", "completed/s", False)] + latency + [("eof_p50_us", "to EOF p50 µs", True)] + cpu,
      "Open loop, timed from each connection's scheduled start")

# The captured rounds, per client connection: its SYN, the proxy's first segment with
# bytes, and the proxy's FIN (on that segment or later). Timed on the wire, so the load
# generator's own scheduling is left out.
def pct(v, q):
    return sorted(v)[int((len(v) - 1) * q)]

if os.path.exists(sys.argv[3]):
    seg = re.compile(r"([\d.]+) IP (\S+) > (\S+): Flags \[([^\]]*)\].* length (\d+)")
    found = {}
    for line in open(sys.argv[3]):
        conc, name, text = line.rstrip("\n").split("\t", 2)
        m = seg.match(text)
        if not m:
            continue
        at, src, dst, flags, length = float(m[1]), m[2], m[3], m[4], int(m[5])
        c = found.setdefault((int(conc), name), {"open": {}, "with": 0, "gaps": [], "first": [], "fin": []})
        if flags == "S":
            c["open"][src] = [at, None]
            continue
        conn = c["open"].get(dst)
        if conn is None:
            continue
        if conn[1] is None and length > 0:
            conn[1] = at
            c["first"].append((at - conn[0]) * 1e6)
        if conn[1] is not None and "F" in flags:
            if at == conn[1]:
                c["with"] += 1
            else:
                c["gaps"].append((at - conn[1]) * 1e6)
            c["fin"].append((at - conn[0]) * 1e6)
            del c["open"][dst]
    print("\n| in flight | target | FIN with the answer's bytes | FIN apart: median µs later | SYN to answer p50 / p99 µs | SYN to FIN p50 / p99 µs |")
    print("|---|---|---|---|---|---|")
    for (conc, name), c in sorted(found.items()):
        total = c["with"] + len(c["gaps"])
        if not total:
            continue
        gap = f"{statistics.median(c['gaps']):,.0f}" if c["gaps"] else "-"
        first = f"{pct(c['first'], .5):,.0f} / {pct(c['first'], .99):,.0f}"
        fin = f"{pct(c['fin'], .5):,.0f} / {pct(c['fin'], .99):,.0f}"
        print(f"| {conc} | {name} | {100 * c['with'] / total:.0f} % of {total:,} | {gap} | {first} | {fin} |")
    print(f"\nPooled over the captured rounds (tcpdump on lo).")
PY
echo "raw rounds: $raw"
