#!/usr/bin/env bash
# bench/compare.sh's target: the shared harness's portcullis-target.sh plus a
# [limits] table sized for a load generator that opens every connection from
# one address (127.0.0.1). The defaults (1,000 connections and 100 new
# connections/s per source) would refuse most of the harness's connections as
# connection_limit / rate_limited, which is what they are for on a gateway.
# Runs portcullis as a target of run.sh: writes a config for the harness's policy
# (see README.md, "The policy every target implements") and execs the binary.
#   PROXY_NAME=portcullis PROXY_CMD='exec ../shared/bench/portcullis-target.sh' ../shared/bench/run.sh
# PORTCULLIS_BIN overrides the binary (default: ./target/release/portcullis); METRICS=1 turns
# the admin endpoint on and scrapes it every second.
set -eu
bin=$(realpath "${PORTCULLIS_BIN:-./target/release/portcullis}")
dir=$(mktemp -d /tmp/pcbench-XXXXXX)
mkdir -p "$dir/policy"
tls_rule='[[allow]]
ports = [25443]
protocols = ["tls"]
server_names = ["*.allowed.test"]'
any_rule='[[allow]]
ports = [25201]
protocols = ["tls"]
server_names = ["*.allowed.test"]'
forward="mode = \"forward\"
listen = \"${LISTEN_ADDR}\"
upstream = \"${UPSTREAM_ADDR:-}\""
case "${PROXY_ROLE:-tls}" in
  tls)      listener=$forward; rules=$tls_rule; unid=block ;;
  any)      listener=$forward; rules=$any_rule; unid=allow ;;
  redirect) listener="mode = \"redirect\"
listen = \"${LISTEN_ADDR}\""; rules="$tls_rule

$any_rule"; unid=allow ;;
  *) echo "unknown PROXY_ROLE ${PROXY_ROLE}" >&2; exit 2 ;;
esac
cat >"$dir/portcullis.toml" <<TOML
policy_dir = "$dir/policy"

[[listener]]
$listener

[events]
sink = "file:$dir/events.jsonl"

[limits]
max_connections = 100000
max_connections_per_source = 100000
rate_per_source = 1000000
rate_burst_per_source = 1000000
TOML
# On the "any" port a non-TLS first turn is unidentified traffic, which this role allows.
cat >"$dir/policy/bench.toml" <<TOML
segment = "bench"
sources = ["127.0.0.0/8"]
mode = "block"
on_unidentified = "$unid"

$rules
TOML
# METRICS=1: the admin endpoint on loopback and a scrape of /metrics every second (issue 7's
# "metrics on" case). The scraper runs in its own session, so its CPU is not counted as the
# proxy's, and stops when the proxy (this process, after exec) is gone.
if [ "${METRICS:-0}" = 1 ]; then
  case "${PROXY_ROLE:-tls}" in tls) admin=19901 ;; any) admin=19902 ;; *) admin=19903 ;; esac
  printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$admin" >>"$dir/portcullis.toml"
  proxy=$$
  setsid bash -c "while kill -0 $proxy 2>/dev/null; do
      curl -s -o /dev/null http://127.0.0.1:$admin/metrics; sleep 1; done" </dev/null >/dev/null 2>&1 &
fi
exec "$bin" run --config "$dir/portcullis.toml"
