#!/usr/bin/env bash
# Measures portcullis's http_proxy listener side by side with Squid 5 doing the same CONNECT,
# in the same run, interleaved (issue 8's budget: 8 TLS streams through CONNECT at least as
# fast as Squid, connection rate at least 2x Squid's). Reuses the shared harness's load tool
# (tcpbench.c) and ClientHello generator (gen_hello.py): ../shared/bench, README there.
#
#   bench/explicit-compare.sh                 # release build; ~1 min
#   PORTCULLIS_BIN=target/debug/portcullis ROUNDS=1 bench/explicit-compare.sh
#
# Topology, all inside two network namespaces this script creates and deletes:
#   pxb<pid>-gw: tcpbench (client) -> 127.0.0.1:3128 portcullis | 127.0.0.1:3129 squid
#                 -> veth 10.98.0.1/30
#   pxb<pid>-srv: 10.98.0.2:25443, DNAT to the tcpbench backend on 127.0.0.1:25443
# (portcullis refuses loopback destinations through a proxy, and tcpbench binds loopback
# only: hence the backend's own namespace and the DNAT.)
# Each client connection sends "CONNECT 10.98.0.2:25443 HTTP/1.1" and the ClientHello in one
# write (both proxies pass bytes that follow the CONNECT head into the tunnel); the proxy's
# "200" is the first response byte, the backend's 128 bytes follow, then the backend closes.
#   rate: RATE_CONC (32) connections in flight for RATE_SECS (3): conns/s
#   tls8: 8 streams, each CONNECT + ClientHello then 128 KiB writes for BULK_SECS (3): Gbit/s
# Squid logs every request (access.log) as portcullis writes its two events: same work.
#
# Needs root, gcc, python3, nftables and Debian's squid (apt-get install squid; stop the
# service it starts: systemctl disable --now squid). Results: $OUT (default
# /tmp/pxbench/<date>/): raw.tsv and summary.md, also printed.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${HARNESS:-../shared/bench}
[ -f "$harness/tcpbench.c" ] || { echo "bench/explicit-compare.sh: no harness at $harness (set HARNESS=...)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench/explicit-compare.sh: run as root (namespaces)" >&2; exit 2; }
command -v squid >/dev/null || { echo "bench/explicit-compare.sh: apt-get install squid" >&2; exit 2; }
harness=$(realpath "$harness")
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  cargo build --release --locked
  PORTCULLIS_BIN=target/release/portcullis
fi
bin=$(realpath "$PORTCULLIS_BIN")
ROUNDS=${ROUNDS:-3}
RATE_CONC=${RATE_CONC:-32}
RATE_SECS=${RATE_SECS:-3}
BULK_SECS=${BULK_SECS:-3}
OUT=${OUT:-/tmp/pxbench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/pxbench-XXXXXX)
chmod 755 "$work"
gw=pxb$$-gw
srv=pxb$$-srv
pgids=()

cleanup() {
  for g in "${pgids[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 0.5
  for g in "${pgids[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
  ip netns del "$gw" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME NS CMD...: in its own process group, logging to $OUT/NAME.log.
start() {
  local name=$1 ns=$2
  shift 2
  setsid ip netns exec "$ns" "$@" >"$OUT/$name.log" 2>&1 &
  pgids+=("$!")
  disown "$!"
}

wait_port() {
  for _ in $(seq 100); do
    ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $2:$3 in $1; logs in $OUT" >&2
  exit 1
}

gcc -O2 -pthread -o "$work/tcpbench" "$harness/tcpbench.c"
for role in short bulk; do
  python3 "$harness/gen_hello.py" "$role.allowed.test" "$work/hello-$role.bin"
  { printf 'CONNECT 10.98.0.2:25443 HTTP/1.1\r\nHost: 10.98.0.2:25443\r\n\r\n'; cat "$work/hello-$role.bin"; } \
    >"$work/connect-$role.bin"
done

ip netns add "$gw"
ip netns add "$srv"
ip -n "$gw" link set lo up
ip -n "$srv" link set lo up
ip -n "$gw" link add eth0 type veth peer name eth0 netns "$srv"
ip -n "$gw" addr add 10.98.0.1/30 dev eth0
ip -n "$srv" addr add 10.98.0.2/30 dev eth0
ip -n "$gw" link set eth0 up
ip -n "$srv" link set eth0 up
ip netns exec "$srv" sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
ip netns exec "$srv" nft -f - <<'NFT'
table ip pxb {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 10.98.0.2 tcp dport 25443 dnat to 127.0.0.1:25443
  }
}
NFT
start backend "$srv" "$work/tcpbench" server 127.0.0.1:25443 128

mkdir -p "$work/policy"
cat >"$work/portcullis.toml" <<TOML
policy_dir = "$work/policy"

[[listener]]
mode = "http_proxy"
listen = "127.0.0.1:3128"

[events]
sink = "file:$work/events.jsonl"

[limits]
max_connections = 100000
max_connections_per_source = 100000
rate_per_source = 1000000
rate_burst_per_source = 1000000
TOML
cat >"$work/policy/bench.toml" <<'TOML'
segment = "bench"
sources = ["127.0.0.0/8"]
mode = "block"
on_unidentified = "block"

[[allow]]
ports = [25443]
protocols = ["tls"]
server_names = ["*.allowed.test"]
TOML
cat >"$work/squid.conf" <<CONF
http_port 127.0.0.1:3129
acl bench_port port 25443
acl CONNECT method CONNECT
http_access allow CONNECT bench_port localhost
http_access deny all
cache deny all
cache_mem 8 MB
workers 1
max_filedescriptors 65536
access_log stdio:$work/squid-access.log
cache_log $work/squid-cache.log
pid_filename none
coredump_dir /tmp
shutdown_lifetime 1 seconds
CONF
# Squid drops root for the "proxy" user: its logs must be writable by it.
touch "$work/squid-access.log" "$work/squid-cache.log"
chown proxy:proxy "$work/squid-access.log" "$work/squid-cache.log"
start portcullis "$gw" "$bin" run --config "$work/portcullis.toml"
start squid "$gw" squid -N -f "$work/squid.conf"
wait_port "$srv" 127.0.0.1 25443
wait_port "$gw" 127.0.0.1 3128
wait_port "$gw" 127.0.0.1 3129

# Both must tunnel an allowed ClientHello to the backend (its 128-byte answer comes back).
for port in 3128 3129; do
  got=$(ip netns exec "$gw" "$work/tcpbench" rate "127.0.0.1:$port" "$work/connect-short.bin" 1 0.3)
  case "$got" in
    conns=0*|*errors=[1-9]*) echo "sanity failed on $port: $got; logs in $OUT" >&2; exit 1 ;;
  esac
done

printf 'round\tproxy\ttest\tvalue\tunit\traw\n' >"$OUT/raw.tsv"
{
  echo "date=$(date -u +%FT%TZ) kernel=$(uname -r) cpus=$(nproc) portcullis=$bin"
  echo "squid=$(squid -v | head -1)"
} >"$OUT/meta.txt"
for round in $(seq "$ROUNDS"); do
  order=("portcullis 3128" "squid 3129")
  ((round % 2 == 0)) && order=("squid 3129" "portcullis 3128")
  for entry in "${order[@]}"; do
    set -- $entry
    r=$(ip netns exec "$gw" "$work/tcpbench" rate "127.0.0.1:$2" "$work/connect-short.bin" "$RATE_CONC" "$RATE_SECS")
    cps=$(sed -n 's/.*cps=\([0-9.]*\).*/\1/p' <<<"$r")
    printf '%s\t%s\trate\t%s\tconns/s\t%s\n' "$round" "$1" "$cps" "$r" >>"$OUT/raw.tsv"
    b=$(ip netns exec "$gw" "$work/tcpbench" bulk "127.0.0.1:$2" "$work/connect-bulk.bin" 8 "$BULK_SECS")
    gbps=$(sed -n 's/.*gbps=\([0-9.]*\).*/\1/p' <<<"$b")
    printf '%s\t%s\ttls8\t%s\tGbit/s\t%s\n' "$round" "$1" "$gbps" "$b" >>"$OUT/raw.tsv"
  done
done

python3 - "$OUT/raw.tsv" >"$OUT/summary.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def values(proxy, test):
    return [float(r["value"]) for r in rows if r["proxy"] == proxy and r["test"] == test and r["value"]]
print("| test | portcullis (median [min-max]) | squid (median [min-max]) | portcullis / squid (paired median) |")
print("|---|---|---|---|")
for test, unit in (("rate", "conns/s"), ("tls8", "Gbit/s")):
    p, s = values("portcullis", test), values("squid", test)
    if not p or not s:
        print(f"| {test} | no data | no data | |")
        continue
    ratio = statistics.median(a / b for a, b in zip(p, s) if b)
    fmt = lambda v: f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}] {unit}"
    print(f"| {test} | {fmt(p)} | {fmt(s)} | {ratio:.2f} |")
PY
cat "$OUT/meta.txt" "$OUT/summary.md"
echo "raw: $OUT/raw.tsv"
