#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Client certificates: verify=require with URI/CN/DNS allow-lists, refusals
# with a TLS alert and a logged reason (not allowed, expired, untrusted, none),
# and verify=optional accepting clients without a certificate. --client-crl: a
# revoked client refused, a renewed CRL picked up without a restart, a CRL past its
# nextUpdate warned about, bad values refused at start. --client-user-match cn: the
# PostgreSQL user must be the certificate's CN.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
C="$FX_CERTS"
as() { echo "sslcert=$C/$1.crt sslkey=$C/$1.key"; }
ca() { openssl ca -batch -config "$C/openssl.cnf" -cert "$C/ca.crt" -keyfile "$C/ca.key" "$@" >>"$C/openssl.log" 2>&1; }
# carol: a client like alice, revoked; clients.crl lists her for 7 days
{ _fx_mk_leaf "$C" carol carol alice_ext ca >>"$C/openssl.log" 2>&1 && ca -revoke "$C/carol.crt" &&
    mkdir -p "$C/crl" && ca -gencrl -crldays 7 -out "$C/crl/clients.crl"; } ||
    BAIL_OUT "the CRLs could not be made: $(tail -5 "$C/openssl.log")"

for io in $(ks_io_modes); do
    note "--- io=$io"
    ks_start "m-$io" "$io" --client-ca "$C/ca.crt" --verify require \
        --allow-uri 'spiffe://example.org/ns/app/*' --allow-cn bob || BAIL_OUT "sidecar did not start"
    log="$(fx_sidecar_log "m-$io")"
    is "$(fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1')" 1 "$io: alice (SPIFFE ID in the allow-list) accepted"
    is "$(PGSSLMAXPROTOCOLVERSION=TLSv1.2 fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1')" 1 \
        "$io: alice accepted over TLS 1.2 too"
    err="$(fx_psql "$(ks_dsn "$(as mallory)")" -c 'select 1' 2>&1)" || true
    like "$err" 'alert' "$io: mallory (foreign SPIFFE ID) refused with a TLS alert"
    like "$(cat "$log")" 'not in allow-list' "$io: the refusal names the allow-list"
    err="$(fx_psql "$(ks_dsn "$(as expired)")" -c 'select 1' 2>&1)" || true
    like "$err" 'alert' "$io: an expired client certificate is refused"
    like "$(cat "$log")" 'certificate has expired' "$io: the log says it expired"
    err="$(fx_psql "$(ks_dsn "$(as untrusted)")" -c 'select 1' 2>&1)" || true
    like "$err" 'alert' "$io: a certificate from an untrusted CA is refused"
    like "$(cat "$log")" 'unable to get local issuer certificate|unknown ca' "$io: the log says why (issuer)"
    err="$(fx_psql "$(ks_dsn)" -c 'select 1' 2>&1)" || true
    like "$err" 'alert' "$io: no certificate refused under verify=require"
    stats="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json)"
    is "$(jq .handshakes_ok <<<"$stats")" 2 "$io: admin stats count 2 good handshakes"
    is "$(jq .handshakes_failed <<<"$stats")" 4 "$io: ... and 4 refused ones"
    fx_sidecar_stop "m-$io" || true
    ks_check_log "m-$io"

    ks_start "o-$io" "$io" --client-ca "$C/ca.crt" --verify optional --allow-dns '*.app.example.org' \
        || BAIL_OUT "sidecar did not start"
    is "$(fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1')" 1 "$io: verify=optional: alice matched by DNS SAN wildcard"
    is "$(fx_psql "$(ks_dsn)" -c 'select 2')" 2 "$io: verify=optional: no certificate is accepted"
    nok "$io: verify=optional: a presented but foreign certificate is refused" \
        fx_psql "$(ks_dsn "$(as mallory)")" -c 'select 1'
    like "$(cat "$(fx_sidecar_log "o-$io")")" 'level=warn .*clients without a certificate are admitted' \
        "$io: verify=optional with allow-lists: a startup warning says who gets in"
    is "$(fx_psql "$(ks_dsn "$(as carol)")" -c 'select 3')" 3 "$io: carol is admitted where no CRL is given"
    fx_sidecar_stop "o-$io" || true
done

io="$(ks_io_modes | awk '{print $1}')"
note "--- --client-crl, io=$io"
mport="$(fx_free_port)"
ks_start crl "$io" --client-ca "$C/ca.crt" --verify require --client-crl "$C/crl/clients.crl" \
    --metrics-listen "127.0.0.1:$mport" || BAIL_OUT "sidecar did not start"
log="$(fx_sidecar_log crl)"
is "$(fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1')" 1 "--client-crl: alice, not revoked, is admitted"
err="$(fx_psql "$(ks_dsn "$(as carol)")" -c 'select 1' 2>&1)" || true
like "$err" 'alert' "--client-crl: carol, revoked, is refused with a TLS alert"
like "$(cat "$log")" 'client certificate rejected at depth 0: certificate revoked' "... and the log says she is revoked"
info="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json)"
is "$(jq -r '"\(.client_crls) \(.client_crls_stale)"' <<<"$info")" "1 0" "show info: one client CRL, none past its next update"
want="$(date -u -d "$(openssl crl -in "$C/crl/clients.crl" -noout -nextupdate | cut -d= -f2)" +%s)"
is "$(jq -r .client_crl_next_update <<<"$info")" "$(date -u -d "@$want" +%Y-%m-%dT%H:%M:%SZ)" "... with its nextUpdate"
metrics="$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$mport/metrics', timeout=5).read().decode())" 2>&1)" || true
like "$metrics" "ktls_sidecar_client_crl_next_update_timestamp_seconds $want" "/metrics: the nextUpdate to alert on"
# the CA revokes alice too: the renewed CRL replaces the file, as a Secret update does
ca -revoke "$C/alice.crt" && ca -gencrl -crldays 7 -out "$C/crl/.new.crl" && mv "$C/crl/.new.crl" "$C/crl/clients.crl" ||
    BAIL_OUT "the renewed CRL could not be made"
alice_refused() { ! fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1' >/dev/null 2>&1; }
ok "a renewed CRL is picked up without a restart: alice is refused within 10 s" _fx_wait_until 10 alice_refused
is "$(grep -c 'client certificate rejected at depth 0: certificate revoked' "$log")" 2 "... as revoked, says the log"
is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .reload_result)" ok "... the reload went well"
like "$(cat "$log")" 'msg="certificates reloaded".* client_crls=1 stale=0' "... and its log line counts the CRL"
is "$(fx_psql "$(ks_dsn "$(as mallory)")" -c 'select 4')" 4 "... and mallory, from the same CA and not revoked, is admitted"
fx_sidecar_stop crl || true
ks_check_log crl

# a CRL that falls due while in service: stale.crl is due 4 s after it is made
ca -gencrl -crlsec 4 -out "$C/stale.crl" || BAIL_OUT "openssl ca -gencrl failed"
ks_start crl-stale "$io" --client-ca "$C/ca.crt" --verify require --client-crl "$C/stale.crl" ||
    BAIL_OUT "sidecar did not start"
stale() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .client_crls_stale; }
is "$(stale)" 0 "a CRL due in 4 s: not stale yet"
is "$(fx_psql "$(ks_dsn "$(as mallory)")" -c 'select 5')" 5 "... mallory admitted"
stale_now() { [[ "$(stale)" == 1 ]]; }
ok "... once past its nextUpdate, show info counts it stale" _fx_wait_until 10 stale_now
warned() { grep -q 'level=warn .*a client CRL is past its next update' "$(fx_sidecar_log crl-stale)"; }
ok "... a warning says its CA's clients are refused" _fx_wait_until 3 warned
nok "... and they are: mallory is refused" fx_psql "$(ks_dsn "$(as mallory)")" -c 'select 1'
like "$(cat "$(fx_sidecar_log crl-stale)")" 'CRL has expired' "... the log says why"
fx_sidecar_stop crl-stale || true
# the stale CRL and a fresh one from the same CA: OpenSSL takes the fresh one
cat "$C/stale.crl" "$C/crl/clients.crl" >"$C/both.crl"
ks_start crl-both "$io" --client-ca "$C/ca.crt" --verify require --client-crl "$C/both.crl" ||
    BAIL_OUT "sidecar did not start"
is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r '"\(.client_crls) \(.client_crls_stale)"')" "1 0" \
    "an old and a new CRL of one CA: one CA covered, not stale"
is "$(fx_psql "$(ks_dsn "$(as mallory)")" -c 'select 6')" 6 "... mallory admitted"
unlike "$(cat "$(fx_sidecar_log crl-both)")" 'past its next update' "... and no stale warning"
fx_sidecar_stop crl-both || true
# two client CAs, a CRL from one: every client of the other is refused; say so at start
cat "$C/ca.crt" "$C/untrusted-ca.crt" >"$C/two-cas.crt"
ks_start crl-ca "$io" --client-ca "$C/two-cas.crt" --verify require --client-crl "$C/crl/clients.crl" ||
    BAIL_OUT "sidecar did not start"
like "$(cat "$(fx_sidecar_log crl-ca)")" 'level=warn .*a client CA has no CRL in --client-crl.* first="/CN=untrusted test CA"' \
    "a client CA without a CRL: a startup warning names it"
nok "... and its clients are refused" fx_psql "$(ks_dsn "$(as untrusted)")" -c 'select 1'
like "$(cat "$(fx_sidecar_log crl-ca)")" 'unable to get certificate CRL' "... the log says why"
fx_sidecar_stop crl-ca || true

note "--- --client-user-match cn, io=$io"
# nocn: a SPIFFE ID and no CN (appuser: CN=app, the PostgreSQL user of the tests)
{ openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/nocn.key" -subj / \
    -out "$C/nocn.csr" && openssl x509 -req -in "$C/nocn.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" \
    -CAcreateserial -days 2 -extfile "$C/openssl.cnf" -extensions alice_ext -out "$C/nocn.crt"; } \
    >>"$C/openssl.log" 2>&1 || BAIL_OUT "a certificate without a CN could not be made: $(tail -5 "$C/openssl.log")"
printf 'client-ca = %s\nverify = require\nclient-user-match = cn\n' "$C/ca.crt" >"$C/um.conf"
ks_start um "$io" --config "$C/um.conf" || BAIL_OUT "sidecar did not start"
log="$(fx_sidecar_log um)"
is "$(fx_psql "$(ks_dsn "$(as appuser)")" -c 'select 1')" 1 "--client-user-match cn: CN=app logs in as app"
err="$(fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1' 2>&1)" || true
like "$err" 'FATAL:  certificate authentication failed for user "app"' \
    "... alice (CN=alice) as app: refused with PostgreSQL's words for it"
unlike "$err" 'alice' "... which do not tell the client the certificate's CN"
like "$(cat "$log")" 'level=warn .*msg="refused: the user is not the client certificate.s CN".* cert_cn="alice" user="app"' \
    "... the log names both"
err="$(fx_psql "$(ks_dsn "$(as alice)" user=alice)" -c 'select 1' 2>&1)" || true
unlike "$err" 'certificate authentication failed' "... alice as alice passes the sidecar"
like "$err" 'FATAL: +"trust" authentication failed' "... to PgBouncer, which refuses alice: not in its auth_file"
err="$(fx_psql "$(ks_dsn "$(as nocn)")" -c 'select 1' 2>&1)" || true
like "$err" 'certificate authentication failed for user "app"' "... a certificate without a CN matches no user"
like "$(cat "$log")" 'cert_cn="" user="app"' "... its log line shows the empty CN"
long="$(printf 'u%.0s' {1..64})"
_fx_mk_leaf "$C" longcn "$long" alice_ext ca >>"$C/openssl.log" 2>&1 || BAIL_OUT "the long-CN certificate could not be made"
err="$(fx_psql "$(ks_dsn "$(as longcn)" "user=$long")" -c 'select 1' 2>&1)" || true
like "$err" 'certificate authentication failed' \
    "... a 64-byte user equal to its 64-byte CN (the longest X.509 allows): refused (PostgreSQL would cut it to 63 bytes)"
read -r st secs <<<"$(fx_with_timeout 30 python3 "$PGWIRE" tls-cancel "$KS_PORT" "$C/appuser.crt" "$C/appuser.key")"
is "$st" 57014 "... a CancelRequest inside TLS names no user and still cancels"
is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq .closed.cert_user_mismatch)" 3 \
    "show stats: 3 sessions closed as cert_user_mismatch"
printf 'client-ca = %s\nverify = require\n' "$C/ca.crt" >"$C/um.conf.new" && mv "$C/um.conf.new" "$C/um.conf"
alice_as_app() { fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1' >/dev/null 2>&1; }
ok "a reloaded configuration without it: alice logs in as app" _fx_wait_until 10 alice_as_app
like "$(cat "$log")" 'level=warn .*no client-user-match: a client may log in as any user' "... and a warning says so"
fx_sidecar_stop um || true
ks_check_log um
out="$(ks_run_fg --client-ca "$C/ca.crt" --verify optional --client-user-match cn)" && rc=0 || rc=$?
ok "--client-user-match with --verify optional: refused at start (status $rc)" test "$rc" -ne 0
like "$out" 'client-user-match: .*only --verify require' "... saying why"
out="$(ks_run_fg --client-ca "$C/ca.crt" --verify require --client-user-match cn --allow-plaintext)" && rc=0 || rc=$?
ok "--client-user-match with --allow-plaintext: refused at start (status $rc)" test "$rc" -ne 0
like "$out" 'client-user-match: a plaintext client has no certificate' "... saying why"

out="$(ks_run_fg --client-crl "$C/crl/clients.crl")" && rc=0 || rc=$?
ok "--client-crl without --verify: refused at start (status $rc)" test "$rc" -ne 0
like "$out" 'client-crl: revocation lists need client certificates' "... saying what is missing"
out="$(ks_run_fg --client-ca "$C/ca.crt" --verify require --client-crl "$C/ca.crt")" && rc=0 || rc=$?
ok "a --client-crl that holds no CRL: refused at start (status $rc)" test "$rc" -ne 0
like "$out" "cannot load client CRL \\(PEM\\).*$C/ca.crt" "... naming the file"
done_testing
