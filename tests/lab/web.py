#!/usr/bin/env python3
"""Lab web server for the end-to-end tests: serves a directory over HTTP and HTTPS.

Usage: web.py --root DIR --cert PEM --key PEM --listen ADDR:PORT[:tls] [--listen ...]
ADDR may be an IPv6 literal in brackets: [fd77:2::2]:443:tls. One thread per listener,
one thread per connection. Logs one line per request on stderr.
"""

import argparse
import functools
import http.server
import socket
import ssl
import sys
import threading


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        self.request.settimeout(30)
        if isinstance(self.request, ssl.SSLSocket):
            # Handshake here, in the connection's thread, not in the accept loop.
            self.request.do_handshake()
        super().setup()

    def finish(self):
        super().finish()
        if isinstance(self.request, ssl.SSLSocket):
            # Send close_notify like a real TLS server, so clients see a clean end.
            try:
                self.request.settimeout(2)
                self.request.unwrap()
            except (OSError, ValueError):
                pass

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stderr.flush()


def parse_listen(spec):
    tls = spec.endswith(":tls")
    if tls:
        spec = spec[: -len(":tls")]
    host, _, port = spec.rpartition(":")
    if host.startswith("["):
        return host[1:-1], int(port), socket.AF_INET6, tls
    return host, int(port), socket.AF_INET, tls


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--listen", action="append", required=True)
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    handler = functools.partial(Handler, directory=args.root)

    servers = []
    for spec in args.listen:
        host, port, family, tls = parse_listen(spec)

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

            def handle_error(self, request, client_address):
                # One line, not a traceback: probes and refused clients hang up early.
                sys.stderr.write("%s error: %s\n" % (client_address[0], sys.exc_info()[1]))

        server = Server((host, port), handler)
        if tls:
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        servers.append(server)
        sys.stderr.write("listening %s\n" % spec)
    sys.stderr.flush()

    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
