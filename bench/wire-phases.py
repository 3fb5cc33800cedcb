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

With 1 connection in flight the legs can be matched (each upstream connection is dialled
between its client's request and answer), and `--one-in-flight` after the ports prints
each step of the exchange in order instead, from the client's SYN to its next SYN:

    bench/wire-phases.py /tmp/c.txt 27101 25443 --one-in-flight
"""

import re
import statistics
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


STEPS = [
    ("client SYN to its request", lambda c, u, n: c["request"] - c["syn"]),
    ("request to the upstream SYN", lambda c, u, n: u["syn"] - c["request"]),
    ("upstream SYN to the request sent on", lambda c, u, n: u["request"] - u["syn"]),
    ("the backend's answer time", lambda c, u, n: u["answer"] - u["request"]),
    ("the backend's answer to the client's", lambda c, u, n: c["answer"] - u["answer"]),
    ("the client's answer to its FIN", lambda c, u, n: c["dialler_fin"] - c["answer"]),
    ("the client's FIN to its next SYN", lambda c, u, n: n["syn"] - c["dialler_fin"]),
    ("one whole exchange", lambda c, u, n: n["syn"] - c["syn"]),
]


def one_in_flight(client, upstream):
    """Each client connection with the upstream connection dialled between its request and
    its answer, and the next client connection; the p50 and mean of each step."""
    whole = lambda c, keys: all(k in c for k in keys)
    client = sorted(
        (c for c in client if whole(c, ("syn", "request", "answer", "dialler_fin"))),
        key=lambda c: c["syn"],
    )
    upstream = sorted(
        (u for u in upstream if whole(u, ("syn", "request", "answer"))), key=lambda u: u["syn"]
    )
    spans = {name: [] for name, _ in STEPS}
    j = 0
    for c, n in zip(client, client[1:]):
        while j < len(upstream) and upstream[j]["syn"] < c["request"]:
            j += 1
        if j == len(upstream) or upstream[j]["syn"] > c["answer"]:
            continue
        for name, step in STEPS:
            spans[name].append(step(c, upstream[j], n) * 1e6)
    for name, values in spans.items():
        if not values:
            sys.exit("no exchange has both legs: was more than one connection in flight?")
        print(
            f"  {name:<38} p50 {statistics.median(values):6.1f}  "
            f"mean {statistics.mean(values):6.1f} µs  ({len(values)})"
        )


def main():
    if len(sys.argv) == 5 and sys.argv[4] == "--one-in-flight":
        one_in_flight(*legs(*sys.argv[1:4]))
        return
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
