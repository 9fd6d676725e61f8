#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `ktls-sidecar check`: a configuration tested without serving it (the exit status
# says whether `run` would start), and a client certificate put through what a
# handshake would do with it: chain, CRL, allow-lists, the users it may log in as.
# Needs only the test PKI: no PostgreSQL, nothing bound.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
fx_init || BAIL_OUT "fx_init failed"
fx_certs >/dev/null || BAIL_OUT "fx_certs failed"
fx_certs_revoked || BAIL_OUT "the CRL could not be made"
C="$FX_CERTS"
ERRS="$FX_DIR/check.stderr"
: >"$ERRS"

# chk ARGS...: run check with the test server certificate; OUT gets stdout, ERR
# stderr (also kept in $ERRS), RC the exit status.
chk() {
    RC=0
    OUT="$(fx_with_timeout 20 "$KTLS_SIDECAR" check --listen "127.0.0.1:$(fx_free_port)" \
        --backend "127.0.0.1:$(fx_free_port)" --cert "$C/server.crt" --key "$C/server.key" \
        --admin-socket "$FX_DIR/check.sock" "$@" 2>"$FX_DIR/err")" || RC=$?
    ERR="$(cat "$FX_DIR/err")"
    cat "$FX_DIR/err" >>"$ERRS"
}
MTLS=(--client-ca "$C/ca.crt" --verify require)

note "--- the configuration"
chk
is "$RC" 0 "a good configuration: exit 0"
like "$OUT" "configuration: 'run' would start" "... saying that run would start"
like "$OUT" 'certificate: subject="/CN=localhost" .* \(valid\)' "... naming the certificate"
like "$OUT" 'certificate expires in: 82[0-9] days' "... and the days it has left"
like "$OUT" 'io: (uring|epoll)' "... and the engine run would pick"
ok "nothing is bound or created: no admin socket" test ! -e "$FX_DIR/check.sock"

port="$(fx_free_port)"
python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' "$port" &
holder=$!
fx_register_pid "$holder" holder
fx_with_timeout 5 bash -c "until ss -Hltn 'sport = :$port' | grep -q .; do sleep 0.1; done" ||
    BAIL_OUT "the port holder did not listen"
RC=0
OUT="$(fx_with_timeout 20 "$KTLS_SIDECAR" check --listen "127.0.0.1:$port" --cert "$C/server.crt" \
    --key "$C/server.key" 2>>"$ERRS")" || RC=$?
is "$RC" 0 "a listen port in use does not fail check (it binds nothing: run where it will run)"
kill "$holder" 2>/dev/null || true

chk --key "$C/alice.key"
is "$RC" 1 "a key that is not the certificate's: exit 1"
like "$OUT" "configuration: refused, 'run' would not start" "... saying run would not start"
like "$ERR" 'private key does not match certificate' "... and why, on stderr"
chk --cert "$C/expired.crt" --key "$C/expired.key"
is "$RC" 1 "an expired server certificate: exit 1 (run starts, but every client refuses it)"
like "$OUT" "but clients refuse its certificate" "... saying so"
like "$OUT" '\(EXPIRED\)' "... marking the certificate"
p="$(fx_free_port)"
RC=0
OUT="$(fx_with_timeout 20 "$KTLS_SIDECAR" check --listen "127.0.0.1:$p" --backend "127.0.0.1:$p" \
    --cert "$C/server.crt" --key "$C/server.key" 2>&1)" || RC=$?
is "$RC" 1 "a backend that is the listen address: exit 1"
like "$OUT" 'every connection would loop' "... saying why"
chk --user no-such-user-4242
is "$RC" 1 "--user that does not exist: exit 1"
like "$ERR" 'no such user' "... saying why"
chk --admin-group no-such-group-4242
is "$RC" 1 "--admin-group that does not exist: exit 1"
chk --bogus-option
is "$RC" 2 "an unknown option: exit 2, as run"
like "$ERR" "unknown option '--bogus-option'" "... named"
chk --verify require
is "$RC" 2 "--verify require without --client-ca: exit 2, as run"
if "$KTLS_SIDECAR" version | grep -q '^ktls: unavailable'; then
    chk --ktls on
    is "$RC" 1 "--ktls on where the kernel has no kTLS: exit 1"
    like "$ERR" 'kTLS required' "... saying so"
else
    chk --ktls on
    is "$RC" 0 "--ktls on where the kernel has kTLS: exit 0"
    like "$OUT" 'ktls: on' "... and kTLS on"
fi
printf 'verify = require\nclient-ca = %s\nclient-user-match = cn\n' "$C/ca.crt" >"$FX_DIR/check.conf"
chk --config "$FX_DIR/check.conf"
is "$RC" 0 "a --config file is read as run reads it"
like "$OUT" 'client certificates: require, users: the subject CN' "... its settings in the summary"
RC=0
OUT="$(KTLS_SIDECAR_CLIENT_USER_MATCH=cn fx_with_timeout 20 "$KTLS_SIDECAR" check --cert "$C/server.crt" \
    --key "$C/server.key" 2>&1)" || RC=$?
is "$RC" 2 "the environment is read too: KTLS_SIDECAR_CLIENT_USER_MATCH=cn without --verify require: exit 2"
like "$OUT" 'client-user-match' "... naming the setting"

note "--- client certificates"
chk "${MTLS[@]}" --allow-uri 'spiffe://example.org/ns/app/*' --client-cert "$C/alice.crt"
is "$RC" 0 "alice, in the URI allow-list: exit 0"
like "$OUT" 'chain: trusted' "... her chain is trusted"
like "$OUT" 'identity: spiffe://example.org/ns/app/sa/alice' "... her identity is her URI SAN"
like "$OUT" 'allow-lists: admitted' "... the allow-list admits her"
like "$OUT" 'users: any' "... as any user (no --client-user-match)"
like "$OUT" 'verdict: admitted' "... verdict: admitted"
chk "${MTLS[@]}" --allow-uri 'spiffe://example.org/ns/app/*' --client-cert "$C/mallory.crt"
is "$RC" 1 "mallory, not in the allow-list: exit 1"
like "$OUT" 'allow-lists: refused: client certificate not in allow-list' "... refused by the allow-list"
like "$OUT" 'verdict: refused' "... verdict: refused"
chk "${MTLS[@]}" --client-cert "$C/expired.crt"
is "$RC" 1 "an expired client certificate: exit 1"
like "$OUT" 'chain: refused: client certificate rejected at depth 0: certificate has expired' \
    "... in the words of the handshake's log"
chk "${MTLS[@]}" --client-cert "$C/untrusted.crt"
is "$RC" 1 "a certificate of an untrusted CA: exit 1"
like "$OUT" 'unable to get local issuer certificate' "... saying so"
chk "${MTLS[@]}" --client-crl "$C/crl/clients.crl" --client-cert "$C/carol.crt"
is "$RC" 1 "carol, revoked in --client-crl: exit 1"
like "$OUT" 'certificate revoked' "... saying so"
chk "${MTLS[@]}" --client-crl "$C/crl/clients.crl" --client-cert "$C/alice.crt"
is "$RC" 0 "alice, not revoked: exit 0"
like "$OUT" 'not revoked in --client-crl' "... checked against the CRL"
chk "${MTLS[@]}" --client-cert "$C/carol.crt"
is "$RC" 0 "carol without --client-crl: admitted (as a handshake would)"
fx_ca -gencrl -crlsec 1 -out "$FX_DIR/stale.crl" || BAIL_OUT "openssl ca -gencrl failed"
fx_ca -gencrl -crldays 7 -cert "$C/untrusted-ca.crt" -keyfile "$C/untrusted-ca.key" -out "$C/untrusted.crl" ||
    BAIL_OUT "openssl ca -gencrl (untrusted CA) failed"
sleep 2
chk "${MTLS[@]}" --client-crl "$FX_DIR/stale.crl"
is "$RC" 1 "a client CRL past its next update: exit 1 (run starts, but refuses every client of that CA)"
like "$OUT" "would start, but refuse every client of a CA whose CRL is past its next update" "... saying so"
like "$OUT" 'CRLs for 1 CA\(s\) \(1 past their next update\), client CAs without one: 0' "... and counting it"
chk --client-ca "$C/ca.crt" --verify require --client-crl "$C/untrusted.crl"
is "$RC" 1 "a --client-crl with no CRL for the client CA: exit 1 (run starts, but refuses all its clients)"
like "$OUT" "would start, but refuse every client of a client CA that has no CRL" "... saying so"
like "$OUT" 'client CAs without one: 1 \(/CN=ktls-sidecar test CA\)' "... naming the CA"
chk "${MTLS[@]}" --client-crl "$FX_DIR/stale.crl" --client-cert "$C/alice.crt"
like "$OUT" 'chain: refused: .*CRL has expired' "... alice is refused: the handshake's reason"
chk "${MTLS[@]}" --client-cert "$C/server.crt"
is "$RC" 1 "a server certificate (extendedKeyUsage serverAuth only) as a client's: exit 1"
like "$OUT" 'unsuitable certificate purpose' "... checked for the TLS client purpose, as a handshake does"
# what the TLS security level refuses in a handshake (Debian: SECLEVEL=2), check refuses too
{ openssl req -config "$C/openssl.cnf" -new -x509 -newkey rsa:768 -nodes -keyout "$FX_DIR/weak.key" \
    -out "$FX_DIR/weak.crt" -days 30 -subj /CN=weak -CA "$C/ca.crt" -CAkey "$C/ca.key" -extensions alice_ext &&
  openssl req -config "$C/openssl.cnf" -new -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha1 \
    -keyout "$FX_DIR/sha1.key" -out "$FX_DIR/sha1.crt" -days 30 -subj /CN=sha1 -CA "$C/ca.crt" -CAkey "$C/ca.key" \
    -extensions alice_ext; } >>"$C/openssl.log" 2>&1 || BAIL_OUT "the weak certificates could not be made"
chk "${MTLS[@]}" --client-cert "$FX_DIR/weak.crt"
is "$RC" 1 "a client certificate with an RSA-768 key: exit 1"
like "$OUT" 'key too weak' "... the handshake's reason (the security level)"
chk "${MTLS[@]}" --client-cert "$FX_DIR/sha1.crt"
is "$RC" 1 "a client certificate signed with SHA-1: exit 1"
like "$OUT" 'digest algorithm too weak' "... the handshake's reason"
cat "$C/alice.crt" "$C/ca.crt" >"$FX_DIR/chain.pem"
chk --client-ca "$C/ca.crt" --verify optional --client-cert "$FX_DIR/chain.pem"
is "$RC" 0 "a PEM file with the certificate and then its chain: exit 0"
like "$OUT" 'subject: CN=alice' "... the first certificate is the client's"
chk --client-cert "$C/alice.crt"
is "$RC" 0 "--verify none: a client certificate changes nothing (exit 0)"
like "$OUT" 'chain: not checked: --verify none' "... saying that none is asked for"
openssl req -config "$C/openssl.cnf" -utf8 -new -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$FX_DIR/esc.key" -out "$FX_DIR/esc.crt" -days 3 -subj $'/CN=a\x1b[31mred' -CA "$C/ca.crt" \
    -CAkey "$C/ca.key" -extensions wronghost_ext >>"$C/openssl.log" 2>&1 || BAIL_OUT "the ESC certificate could not be made"
chk "${MTLS[@]}" --client-cert "$FX_DIR/esc.crt"
like "$OUT" 'identity: CN=a\?\[31mred' "a control byte in a certificate's CN reaches the terminal as '?'"
like "$OUT" 'subject: CN=a\\1B\[31mred' "... and the DN escapes it, as RFC 2253 does"
chk "${MTLS[@]}" --client-cert "$FX_DIR/no-such.pem"
is "$RC" 1 "a client certificate file that does not exist: exit 1"
like "$OUT" 'cannot read a PEM certificate' "... saying so"
chk "${MTLS[@]}" --client-cert "$C/alice.key"
is "$RC" 1 "a file with no certificate in it (a key): exit 1"

note "--- the users a certificate may log in as"
chk "${MTLS[@]}" --client-user-match cn --client-cert "$C/appuser.crt" --pg-user app
is "$RC" 0 "cn: appuser (CN=app) as user app: exit 0"
like "$OUT" 'users: app' "... the CN is the one user"
like "$OUT" 'log in as "app": allowed' "... allowed"
chk "${MTLS[@]}" --client-user-match cn --client-cert "$C/appuser.crt" --pg-user App
is "$RC" 1 "cn: appuser as user App: exit 1 (compared byte for byte)"
like "$OUT" 'log in as "App": refused \(FATAL 28000\)' "... refused as the startup would be"
chk "${MTLS[@]}" --client-user-match cn --client-cert "$C/appuser.crt"
is "$RC" 0 "cn: without --pg-user, only the certificate is judged"
chk "${MTLS[@]}" --client-user-match=cn --client-cert="$C/appuser.crt" --pg-user=App
is "$RC" 1 "--client-cert=FILE --pg-user=NAME: the = forms are taken too"
like "$OUT" 'log in as "App": refused' "... and judged"
cat >"$FX_DIR/users.map" <<'EOF'
# identity                                  users
URI:spiffe://example.org/ns/app/sa/alice    app reporting
CN=mallory                                  "mallory"
EOF
MAP=("${MTLS[@]}" --client-user-match map --client-user-map "$FX_DIR/users.map")
chk "${MAP[@]}" --client-cert "$C/alice.crt" --pg-user reporting
is "$RC" 0 "map: alice as reporting: exit 0"
like "$OUT" 'client certificates: require, users: the map.s \(rules: 2\)' "... the summary counts the rules"
like "$OUT" 'users: app, reporting' "... the users of her rule"
chk "${MAP[@]}" --client-cert "$C/alice.crt" --pg-user postgres
is "$RC" 1 "map: alice as postgres: exit 1"
chk "${MAP[@]}" --client-cert "$C/wronghost.crt"
like "$OUT" 'users: none \(no rule of the map names this certificate\): every login is refused' \
    "map: a certificate no rule names gets no user"
is "$RC" 1 "... exit 1 without --pg-user too: it can log in as no one"
like "$OUT" 'verdict: refused' "... verdict: refused"
chk "${MAP[@]}" --client-cert "$C/corp.crt"
like "$OUT" 'subject: CN=corp,OU=payments,O=Example Corp,C=US' \
    "the subject is shown as a DN: rule is written (RFC 2253, the last RDN first)"
like "$OUT" 'as a map identity: "DN:CN=corp,OU=payments,O=Example Corp,C=US"' "... and quoted, as a rule writes it"
like "$OUT" 'users: none' "... and no rule names it yet"
grep -o 'as a map identity: .*' <<<"$OUT" | sed 's/^as a map identity: \(.*\)$/\1 app_rw/' >"$FX_DIR/dn.map"
chk "${MTLS[@]}" --client-user-match map --client-user-map "$FX_DIR/dn.map" --client-cert "$C/corp.crt" --pg-user app_rw
is "$RC" 0 "map: that identity, pasted into a rule, gives its users"
like "$OUT" 'users: app_rw' "... app_rw"
chk "${MAP[@]}" --client-cert "$C/expired.crt" --pg-user app
is "$RC" 1 "map: an expired certificate whose identity the map names: exit 1"
like "$OUT" 'log in as "app": refused: the certificate is refused' "... the login too"
printf 'URI:/^spiffe://example\\.org/ns/([a-z]+)/sa/([a-z]+)$ \\1_rw\n' >"$FX_DIR/re.map"
chk "${MTLS[@]}" --client-user-match map --client-user-map "$FX_DIR/re.map" --client-cert "$C/alice.crt" --pg-user app_rw
is "$RC" 0 "map: a URI /regex rule: alice may log in as app_rw (\\1 is the namespace)"
like "$OUT" 'users: app_rw' "... the only user it gives her"
printf 'URI:/^spiffe://(.*)/sa/[a-z]{1,8}$ \\1\n' >"$FX_DIR/bad-re.map"
chk "${MTLS[@]}" --client-user-match map --client-user-map "$FX_DIR/bad-re.map"
is "$RC" 1 "a /regex with counted repetition: run would not start (exit 1)"
like "$ERR" 'line 1: .*counted repetition' "... saying why"
printf 'URI:spiffe://x +admins\n' >"$FX_DIR/bad.map"
chk "${MTLS[@]}" --client-user-match map --client-user-map "$FX_DIR/bad.map"
is "$RC" 1 "a map run would refuse: exit 1"
like "$ERR" 'line 1: .*role membership' "... with the line and the reason"

note "--- misuse"
RC=0; OUT="$("$KTLS_SIDECAR" check --pg-user app 2>&1)" || RC=$?
is "$RC" 2 "--pg-user without --client-cert: exit 2"
like "$OUT" 'needs --client-cert' "... saying so"
RC=0; OUT="$("$KTLS_SIDECAR" check --cert "$C/server.crt" --client-cert 2>&1)" || RC=$?
is "$RC" 2 "--client-cert with no value: exit 2"
like "$OUT" '--client-cert takes a value' "... saying so"
chk "${MTLS[@]}" --client-user-match cn --client-cert "$C/appuser.crt" --pg-user=
is "$RC" 2 "--pg-user= (empty): exit 2, not a check that asked nothing"
chk "${MTLS[@]}" --client-cert --pg-user app
is "$RC" 2 "--client-cert followed by another flag: exit 2"
like "$ERR" '--client-cert takes a value' "... the flag is not taken as the file"
chk "${MTLS[@]}" --allow-cn alice --client-cert "$C/mallory.crt" --client-cert "$C/alice.crt"
is "$RC" 2 "--client-cert twice: exit 2 (not the last one judged alone)"
like "$ERR" '--client-cert is given twice' "... saying so"
RC=0; OUT="$("$KTLS_SIDECAR" check --help 2>&1)" || RC=$?
is "$RC" 0 "check --help: exit 0"
like "$OUT" 'usage: ktls-sidecar check' "... and the usage"
like "$("$KTLS_SIDECAR" help)" 'ktls-sidecar check' "the main help lists check"

unlike "$(cat "$ERRS")" 'Sanitizer|runtime error:' "no sanitizer report from any check"
done_testing
