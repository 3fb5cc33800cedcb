#!/usr/bin/env bash
# Seeds every fuzz target's corpus (fuzz/corpus/TARGET/) from real programs' bytes:
# - sniff: the recorded sniffer fixtures;
# - config: each configuration fixture and example, its config and policy files joined
#   with NUL bytes (the target's input format: config, services.toml, segment files);
# - replay: the recorded captures;
# - http_proxy: request heads curl sends to an HTTP proxy (absolute-form, CONNECT, with
#   proxy credentials and a body), caught on a loopback port, and the recorded HTTP
#   fixtures.
# Needs curl and python3.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../tests/fixtures
mkdir -p corpus/sniff corpus/config corpus/replay corpus/http_proxy
cp "$fixtures"/sniff/*.bin corpus/sniff/
cp "$fixtures"/pcap/*.pcap* corpus/replay/
for d in "$fixtures"/config/*/ ../examples/*/; do
  [ -f "$d/portcullis.toml" ] || continue
  {
    cat "$d/portcullis.toml"
    printf '\0'
    cat "$d/policy/services.toml" 2>/dev/null || true
    for f in "$d"/policy/*.toml; do
      if [ -f "$f" ] && [ "${f##*/}" != services.toml ]; then
        printf '\0'
        cat "$f"
      fi
    done
  } >"corpus/config/$(basename "$d")"
done
cp "$fixtures"/sniff/http_*.bin corpus/http_proxy/

# A one-shot "proxy" on loopback that keeps each request's bytes (up to the head's end
# and whatever came with it) and closes: curl then gives up on that request.
requests=(absolute connect credentials body)
port_file=$(mktemp)
python3 - "$port_file" "${requests[@]}" <<'PY' &
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
for name in sys.argv[2:]:
    c, _ = s.accept()
    c.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        more = c.recv(65536)
        if not more:
            break
        data += more
    # A body announced by Content-Length comes right behind the head.
    if b"Content-Length" in data:
        try:
            data += c.recv(65536)
        except socket.timeout:
            pass
    open(f"corpus/http_proxy/curl_{name}", "wb").write(data)
    c.close()
PY
listener=$!
for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done
proxy=http://127.0.0.1:$(cat "$port_file")
rm -f "$port_file"
curl -s -m 5 -x "$proxy" 'http://example.test/a/b?c=d#frag' || true
curl -s -m 5 -p -x "$proxy" https://example.test/ || true
curl -s -m 5 -x "$proxy" -U user:secret -H 'Proxy-Connection: keep-alive' 'http://[2001:db8::1]:8080/p' || true
curl -s -m 5 -x "$proxy" -d 'name=value' http://example.test:8080/form || true
wait "$listener"
echo "seeded corpus/sniff, corpus/config, corpus/replay and corpus/http_proxy"
