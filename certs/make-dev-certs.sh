#!/usr/bin/env bash
# Makes the DEVELOPMENT certificates in this folder: a CA, a server certificate for the
# namespace lab's names (and loopback), and a client certificate. For development and tests
# only: the private keys are committed, so never trust this CA anywhere else.
# Usage: certs/make-dev-certs.sh [OUT_DIR]   (default: the folder this script is in)
set -euo pipefail

out="${1:-$(cd "$(dirname "$0")" && pwd)}"
mkdir -p "$out"
cd "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

days_ca=7300
days_leaf=3650

# Development CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca-key.pem -out ca.pem -days "$days_ca" \
  -subj "/O=portcullis development/CN=portcullis dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# Server certificate: the lab's web and ssh names, their addresses, and loopback.
cat >"$work/server.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:web.lab.test,DNS:ssh.lab.test,DNS:localhost,IP:10.77.2.2,IP:fd77:2::2,IP:127.0.0.1,IP:::1
EXT
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout server-key.pem -out "$work/server.csr" \
  -subj "/O=portcullis development/CN=web.lab.test" 2>/dev/null
openssl x509 -req -in "$work/server.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -CAserial "$work/ca.srl" -out server.pem -days "$days_leaf" -extfile "$work/server.ext" 2>/dev/null

# Client certificate (mutual TLS, e.g. the admin endpoint's client_ca).
cat >"$work/client.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout client-key.pem -out "$work/client.csr" \
  -subj "/O=portcullis development/CN=portcullis dev client" 2>/dev/null
openssl x509 -req -in "$work/client.csr" -CA ca.pem -CAkey ca-key.pem \
  -CAserial "$work/ca.srl" -CAcreateserial -out client.pem -days "$days_leaf" \
  -extfile "$work/client.ext" 2>/dev/null

chmod 0644 ca.pem server.pem client.pem
chmod 0600 ca-key.pem server-key.pem client-key.pem
openssl verify -CAfile ca.pem server.pem client.pem
