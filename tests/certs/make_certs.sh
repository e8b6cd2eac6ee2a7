#!/usr/bin/env bash
# Generate a throw-away PKI for tests with the openssl CLI.
#
#   tests/certs/make_certs.sh OUTDIR
#
# Writes into OUTDIR (all keys EC P-256, PKCS#8 PEM; all certs X.509 v3):
#   ca.crt ca.key             CA "openfl-test-ca"
#   server.crt server.key     CN=localhost, SAN localhost/127.0.0.1/::1, serverAuth
#   col1.crt col1.key         CN=col1, clientAuth
#   col2.crt col2.key         CN=col2, clientAuth
#   col3.crt col3.key         CN=col3, clientAuth (the C demo's third collaborator)
#   frontend.crt frontend.key    CN=frontend, clientAuth (a director frontend)
#   frontend2.crt frontend2.key  CN=frontend2, clientAuth (another director frontend)
#   foreign-ca.crt            a second, unrelated CA "foreign-ca" (its key is not kept)
#   foreign.crt foreign.key   CN=col1, clientAuth, but issued by foreign-ca
#   revoked.crt revoked.key   CN=col2, clientAuth, issued by the CA and revoked by:
#   crl.pem                   a v2 CRL (CRL number, authority key id) signed by
#                             the CA, revoking revoked.crt only
#
# Leaves carry basicConstraints CA:FALSE, keyUsage and extendedKeyUsage, and the
# server certificate a subjectAltName: rustls/webpki ignores the CN for server
# names and rejects v1 certificates and CA certificates used as leaves.
set -euo pipefail

out="${1:?usage: make_certs.sh OUTDIR}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat > "$work/x509.cnf" <<'CNF'
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

key() { # key FILE: new EC P-256 private key, PKCS#8 PEM
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

ca() { # ca CN KEY CRT: self-signed CA certificate
  key "$2"
  openssl req -new -x509 -config "$work/x509.cnf" -extensions ca_ext \
    -key "$2" -subj "/CN=$1" -days 3650 -sha256 -out "$3"
}

leaf() { # leaf CN EXT CA_CRT CA_KEY KEY CRT: certificate issued by the given CA
  key "$5"
  openssl req -new -config "$work/x509.cnf" -key "$5" -subj "/CN=$1" -out "$work/req.csr"
  openssl x509 -req -in "$work/req.csr" -CA "$3" -CAkey "$4" \
    -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 \
    -extfile "$work/x509.cnf" -extensions "$2" -out "$6" 2>/dev/null
}

ca openfl-test-ca "$out/ca.key" "$out/ca.crt"
leaf localhost server_ext "$out/ca.crt" "$out/ca.key" "$out/server.key" "$out/server.crt"
leaf col1 client_ext "$out/ca.crt" "$out/ca.key" "$out/col1.key" "$out/col1.crt"
leaf col2 client_ext "$out/ca.crt" "$out/ca.key" "$out/col2.key" "$out/col2.crt"
leaf col3 client_ext "$out/ca.crt" "$out/ca.key" "$out/col3.key" "$out/col3.crt"
leaf frontend client_ext "$out/ca.crt" "$out/ca.key" "$out/frontend.key" "$out/frontend.crt"
leaf frontend2 client_ext "$out/ca.crt" "$out/ca.key" "$out/frontend2.key" "$out/frontend2.crt"

leaf col2 client_ext "$out/ca.crt" "$out/ca.key" "$out/revoked.key" "$out/revoked.crt"

# The CRL: `openssl ca` with a throw-away database in which revoked.crt is
# marked revoked (works offline, no CA directory layout needed).
cat > "$work/crl.cnf" <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = $work/index.txt
crlnumber = $work/crlnumber
default_md = sha256
default_crl_days = 3650
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
CNF
: > "$work/index.txt"
echo 01 > "$work/crlnumber"
openssl ca -config "$work/crl.cnf" -cert "$out/ca.crt" -keyfile "$out/ca.key" \
  -revoke "$out/revoked.crt" -crl_reason keyCompromise 2>/dev/null
openssl ca -config "$work/crl.cnf" -cert "$out/ca.crt" -keyfile "$out/ca.key" \
  -gencrl -out "$out/crl.pem" 2>/dev/null

ca foreign-ca "$work/foreign-ca.key" "$out/foreign-ca.crt"
leaf col1 client_ext "$out/foreign-ca.crt" "$work/foreign-ca.key" "$out/foreign.key" "$out/foreign.crt"

# Check the chains we promise (and the one we promise to break).
verify() { openssl verify -x509_strict "$@" >/dev/null; }
verify -CAfile "$out/ca.crt" -purpose sslserver "$out/server.crt"
verify -CAfile "$out/ca.crt" -purpose sslclient "$out/col1.crt" "$out/col2.crt" "$out/col3.crt"
verify -CAfile "$out/ca.crt" -purpose sslclient "$out/frontend.crt" "$out/frontend2.crt"
verify -CAfile "$out/foreign-ca.crt" -purpose sslclient "$out/foreign.crt"
verify -CAfile "$out/ca.crt" -purpose sslclient "$out/revoked.crt"
if openssl verify -crl_check -CAfile "$out/ca.crt" -CRLfile "$out/crl.pem" \
     "$out/revoked.crt" >/dev/null 2>&1; then
  echo "make_certs.sh: revoked.crt must be revoked by crl.pem" >&2
  exit 1
fi
verify -crl_check -CAfile "$out/ca.crt" -CRLfile "$out/crl.pem" "$out/col1.crt" "$out/col2.crt"
if openssl verify -CAfile "$out/ca.crt" "$out/foreign.crt" >/dev/null 2>&1; then
  echo "make_certs.sh: foreign.crt must not verify against ca.crt" >&2
  exit 1
fi
