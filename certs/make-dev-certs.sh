#!/usr/bin/env bash
# Makes the DEVELOPMENT certificates in this folder: a CA, a server certificate for the
# namespace lab's names (and loopback), an admin-endpoint server certificate (loopback), and a
# client certificate for the admin endpoint's mTLS. For development and tests only: the
# private keys are committed, so never trust this CA anywhere else.
#
# Only missing files are made, so adding a certificate does not replace the CA the others
# were signed with; FORCE=1 makes everything anew (a new CA, so every leaf too).
# Usage: [FORCE=1] certs/make-dev-certs.sh [OUT_DIR]   (default: the folder this script is in)
set -euo pipefail

out="${1:-$(cd "$(dirname "$0")" && pwd)}"
mkdir -p "$out"
cd "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

days_ca=7300
days_leaf=3650
if [ "${FORCE:-0}" = 1 ]; then
  rm -f ca.pem ca-key.pem server.pem server-key.pem admin.pem admin-key.pem client.pem client-key.pem
fi

# Development CA.
if [ ! -f ca.pem ] || [ ! -f ca-key.pem ]; then
  rm -f server.pem admin.pem client.pem # signed by the old CA
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout ca-key.pem -out ca.pem -days "$days_ca" \
    -subj "/O=portcullis development/CN=portcullis dev CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# leaf NAME CN EXTENSIONS: NAME.pem and NAME-key.pem signed by the CA, unless present.
leaf() {
  local name="$1" cn="$2" ext="$3"
  [ -f "$name.pem" ] && [ -f "$name-key.pem" ] && return 0
  printf '%s\n' "$ext" >"$work/$name.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$name-key.pem" -out "$work/$name.csr" \
    -subj "/O=portcullis development/CN=$cn" 2>/dev/null
  openssl x509 -req -in "$work/$name.csr" -CA ca.pem -CAkey ca-key.pem \
    -CAserial "$work/ca.srl" -CAcreateserial -out "$name.pem" -days "$days_leaf" \
    -extfile "$work/$name.ext" 2>/dev/null
}

# Server certificate: the lab's web and ssh names, their addresses, and loopback.
leaf server web.lab.test "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:web.lab.test,DNS:ssh.lab.test,DNS:localhost,IP:10.77.2.2,IP:fd77:2::2,IP:127.0.0.1,IP:::1"

# Admin endpoint (tls_cert/tls_key of [admin]): loopback names and addresses.
leaf admin "portcullis admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

# Client certificate (mutual TLS: the admin endpoint's client_ca).
leaf client "portcullis dev client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

chmod 0644 ca.pem server.pem admin.pem client.pem
chmod 0600 ca-key.pem server-key.pem admin-key.pem client-key.pem
openssl verify -CAfile ca.pem server.pem admin.pem client.pem
