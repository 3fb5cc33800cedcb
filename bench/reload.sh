#!/usr/bin/env bash
# Reload benchmark (issue 7 budget: 1,000 segment files x 20 rules reloaded in under 200 ms,
# without pausing connections in flight). Writes such a policy, starts portcullis with a
# loopback forward listener and admin endpoint, then times POST /reload (load, validate,
# compile, swap: the whole reload) N times with curl, and `portcullis check` once.
# Meanwhile a loop of connections through the gateway records the slowest one, to show that
# reloads (on a blocking thread) do not stall the data path.
# Usage: bench/reload.sh [SEGMENTS] [RULES] [N]   (PORTCULLIS_BIN: default target/debug)
set -euo pipefail
segments="${1:-1000}"
rules="${2:-20}"
n="${3:-20}"
bin=$(realpath "${PORTCULLIS_BIN:-./target/debug/portcullis}")
dir=$(mktemp -d /tmp/pcreload-XXXXXX)
trap 'kill "${gw:-0}" "${up:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/policy"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=$(free_port); admin=$(free_port); upstream=$(free_port)

# Segment i: sources 10.(i/250).(i%250).0/24 (segment 0 also holds 127.0.0.0/8, so the
# probe connections have a segment); 20 rules, each a port range, protocols and names.
/usr/bin/python3 - "$dir/policy" "$segments" "$rules" "$upstream" <<'PY'
import sys
out, segments, rules, upstream = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
protocols = ["tls", "http", "ssh", "smtp", "imap", "postgresql", "redis", "mqtt"]
for i in range(segments):
    src = f'"10.{i // 250}.{i % 250}.0/24", "fd00:{i:x}::/64"' + (', "127.0.0.0/8"' if i == 0 else "")
    text = [f'segment = "s{i:04}"', f"sources = [{src}]", 'mode = "block"', 'on_unidentified = "block"', ""]
    for r in range(rules):
        lo = 1000 + r * 100
        ports = f'[{upstream}]' if r == 0 else f'[{lo}, "{lo + 1}-{lo + 50}"]'
        names = '"http"' if r == 0 else f'"{protocols[r % 8]}", "{protocols[(r + 3) % 8]}"'
        text += ["[[allow]]", f"ports = {ports}", f"protocols = [{names}]"]
        if r % 4 == 1:
            text.append(f'server_names = ["*.s{i}.example.com", "api.r{r}.example.org"]')
        if r % 5 == 2:
            text.append(f'destinations = ["203.0.{r}.0/24"]')
        text.append("")
    open(f"{out}/s{i:04}.toml", "w").write("\n".join(text))
PY
cat >"$dir/portcullis.toml" <<EOF2
policy_dir = "policy"
[[listener]]
mode = "forward"
listen = "127.0.0.1:$listen"
upstream = "127.0.0.1:$upstream"
[events]
sink = "file:$dir/events.jsonl"
[admin]
listen = "127.0.0.1:$admin"
EOF2
echo "policy: $segments files x $rules rules, $(du -sh "$dir/policy" | cut -f1)B"
/usr/bin/time -f "check: %e s, max RSS %M KB" "$bin" check --config "$dir/portcullis.toml" >/dev/null

mkdir -p "$dir/www" && echo hello >"$dir/www/index.html"
/usr/bin/python3 -m http.server --bind 127.0.0.1 "$upstream" --directory "$dir/www" >/dev/null 2>&1 &
up=$!
"$bin" run --config "$dir/portcullis.toml" 2>"$dir/gw.log" &
gw=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$upstream/" >/dev/null

# The data path: sequential connections, the slowest recorded, first for BASELINE seconds
# without reloads, then during the reloads.
connections() { # OUT_FILE
  local worst=0 t
  while [ ! -f "$dir/stop" ]; do
    t=$(curl -fsS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$listen/" || echo fail)
    [ "$t" = fail ] && { echo "a connection failed" >"$1"; return; }
    worst=$(/usr/bin/python3 -c "print(max($worst, $t))")
  done
  echo "$worst s" >"$1"
}
connections "$dir/baseline" & loop=$!
sleep "${BASELINE:-5}"; touch "$dir/stop"; wait "$loop"; rm "$dir/stop"
connections "$dir/worst" & loop=$!

times=()
for _ in $(seq "$n"); do
  t=$(curl -fsS -o /dev/null -w '%{time_total}' -X POST "http://127.0.0.1:$admin/reload")
  times+=("$t")
done
touch "$dir/stop"; wait "$loop"
/usr/bin/python3 - "${times[@]}" <<'PY'
import statistics, sys
ms = sorted(float(t) * 1000 for t in sys.argv[1:])
print(f"POST /reload x{len(ms)}: min {ms[0]:.1f} ms, median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms")
PY
echo "slowest connection through the gateway: $(cat "$dir/baseline") without reloads (${BASELINE:-5} s), $(cat "$dir/worst") during the reloads"
echo "gateway RSS after: $(ps -o rss= -p "$gw") KB"
