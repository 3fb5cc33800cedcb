#!/usr/bin/env python3
"""Where a short connection's time goes, on the wire, on both legs of a proxy.

Reads `tcpdump -r CAPTURE -nn -tt` text of a capture on lo that holds both the client leg
(the proxy's port) and the upstream leg (the backend's port), and prints the p50, p90 and
p99 of each phase over every connection seen, per leg. No connection is matched across
legs (under load the order of the two legs' connections says nothing), so the phases of
one leg are compared with the same phases through another proxy, not added to the other's.

    gcc -O2 -pthread -o /tmp/tcpbench ../shared/bench/tcpbench.c
    python3 ../shared/bench/gen_hello.py short.allowed.test /tmp/hello.bin
    # a backend on 25443 (/tmp/tcpbench server 127.0.0.1:25443 128), a proxy on 27101
    tcpdump -i lo -nn -s 96 -B 65536 -w /tmp/c.pcap 'tcp port 27101 or tcp port 25443' &
    /tmp/tcpbench rate 127.0.0.1:27101 /tmp/hello.bin 32 2; kill -INT %1
    tcpdump -r /tmp/c.pcap -nn -tt > /tmp/c.txt
    bench/wire-phases.py /tmp/c.txt 27101 25443

Phases: SYN to the first data from the side that dialled ("request"), request to the
first data back ("answer"), answer to the dialling side's FIN (client leg) or to the
answering side's FIN (upstream leg).
"""

import re
import sys

LINE = re.compile(r"(\d+\.\d+) IP (\S+) > (\S+): Flags \[([^\]]*)\].*length (\d+)")


def legs(path, proxy_port, backend_port):
    """Per leg, the list of connections, each a dict of first times. While a connection is
    open it is under its dialling port in `leg`; a new SYN from that port moves it to
    `done`."""
    found = {proxy_port: ({}, []), backend_port: ({}, [])}
    with open(path) as text:
        for line in text:
            m = LINE.match(line)
            if not m:
                continue
            t, flags, length = float(m[1]), m[4], int(m[5])
            src, dst = m[2].rsplit(".", 1)[1], m[3].rsplit(".", 1)[1]
            if dst in found:
                (leg, done), dialler, inbound = found[dst], src, True
            elif src in found:
                (leg, done), dialler, inbound = found[src], dst, False
            else:
                continue
            if flags == "S" and inbound:
                # A new connection: Linux reuses ports within seconds under load.
                if dialler in leg:
                    done.append(leg[dialler])
                leg[dialler] = {"syn": t}
            conn = leg.get(dialler)
            if conn is None:
                continue
            if length > 0:
                conn.setdefault("request" if inbound else "answer", t)
            if "F" in flags:
                conn.setdefault("dialler_fin" if inbound else "answerer_fin", t)
    return [list(leg.values()) + done for leg, done in (found[proxy_port], found[backend_port])]


def percentiles(conns, start, end):
    spans = sorted(
        (c[end] - c[start]) * 1e6
        for c in conns
        if start in c and end in c and c[end] >= c[start]
    )
    if not spans:
        return "no connection has both"
    pick = lambda q: spans[min(len(spans) - 1, int(len(spans) * q))]
    return f"p50 {pick(0.5):7.0f}  p90 {pick(0.9):7.0f}  p99 {pick(0.99):7.0f} µs  ({len(spans)})"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    client, upstream = legs(*sys.argv[1:4])
    phases = [("syn", "request"), ("request", "answer"), ("syn", "answer")]
    print("client leg")
    for start, end in phases + [("answer", "dialler_fin")]:
        print(f"  {start:>8} -> {end:<12} {percentiles(client, start, end)}")
    print("upstream leg")
    for start, end in phases + [("answer", "answerer_fin")]:
        print(f"  {start:>8} -> {end:<12} {percentiles(upstream, start, end)}")


if __name__ == "__main__":
    main()
