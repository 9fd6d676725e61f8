#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Client certificates: verify=require with URI/CN/DNS allow-lists, refusals
# with a TLS alert and a logged reason (not allowed, expired, untrusted, none),
# and verify=optional accepting clients without a certificate. --client-crl: a
# revoked client refused, a renewed CRL picked up without a restart, a CRL past its
# nextUpdate warned about, bad values refused at start. --client-user-match: the
# PostgreSQL user must be the certificate's CN (cn), or one its --client-user-map
# gives it (map); reloads that turn it on or off, or change the map.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
C="$FX_CERTS"
as() { echo "sslcert=$C/$1.crt sslkey=$C/$1.key"; }
wire() { fx_with_timeout 30 python3 "$PGWIRE" "$@"; }
ca() { fx_ca "$@"; }
fx_certs_revoked || BAIL_OUT "the CRLs could not be made"

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
like "$(cat "$log")" 'reason="client certificate rejected at depth 0: certificate revoked".* peer="spiffe://example.org/ns/app/sa/alice"' \
    "... and who she says she is (her URI SAN, unverified: the chain was refused)"
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

# --client-user-match: certificates whose CN is a user name, or is not one
mk() { # mk NAME SUBJECT: a client certificate with alice's SANs and this subject
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/$1.key" -subj "$2" \
        -out "$C/$1.csr" && openssl x509 -req -in "$C/$1.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" \
        -CAcreateserial -days 2 -extfile "$C/openssl.cnf" -extensions alice_ext -out "$C/$1.crt"
}
long="$(printf 'u%.0s' {1..64})"
# bmpcn: CN "app" as a BMPString (UTF-16), whose bytes PostgreSQL compares as they are
printf '[req]\ndistinguished_name = dn\nprompt = no\nstring_mask = MASK:0x800\n[dn]\nCN = app\n' >"$C/bmp.cnf"
{ mk nocn / && mk apps /CN=apps && mk twocn /CN=app/CN=mallory && mk longcn "/CN=$long" &&
    OPENSSL_CONF="$C/bmp.cnf" mk bmpcn /CN=app; } >>"$C/openssl.log" 2>&1 ||
    BAIL_OUT "the client certificates could not be made: $(tail -5 "$C/openssl.log")"
refused_as() { # refused_as CERT USER: the sidecar's own refusal, in PostgreSQL's words
    local err
    err="$(fx_psql "$(ks_dsn "$(as "$1")" "user=$2")" -c 'select 1' 2>&1)" || true
    [[ "$err" == *"FATAL:  certificate authentication failed for user \"${2:0:63}\""* ]] || { diag "$err"; return 1; }
}
for io in $(ks_io_modes); do
    note "--- --client-user-match cn, io=$io"
    ks_start "um-$io" "$io" --client-ca "$C/ca.crt" --verify require --client-user-match cn || BAIL_OUT "sidecar did not start"
    log="$(fx_sidecar_log "um-$io")"
    is "$(fx_psql "$(ks_dsn "$(as appuser)")" -c 'select 1')" 1 "$io: --client-user-match cn: CN=app logs in as app"
    err="$(fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1' 2>&1)" || true
    like "$err" 'FATAL:  certificate authentication failed for user "app"' \
        "$io: alice (CN=alice) as app: refused with PostgreSQL's words for it"
    unlike "$err" 'alice' "... which do not tell the client the certificate's CN"
    like "$(cat "$log")" 'level=warn .*msg="refused: this client certificate may not log in as the user".* cert_users="alice" user="app"' \
        "... the log names both"
    err="$(fx_psql "$(ks_dsn "$(as alice)" user=alice)" -c 'select 1' 2>&1)" || true
    unlike "$err" 'certificate authentication failed' "$io: alice as alice passes the sidecar"
    like "$err" 'FATAL: +"trust" authentication failed' "... to PgBouncer, which refuses alice: not in its auth_file"
    ok "$io: CN=app as App: refused (exact, as PostgreSQL)" refused_as appuser App
    ok "$io: CN=apps as app: refused (not a prefix match)" refused_as apps app
    is "$(fx_psql "$(ks_dsn "$(as twocn)")" -c 'select 2')" 2 "$io: CN=app then CN=mallory: the first CN counts, as in PostgreSQL"
    ok "... and it is not mallory" refused_as twocn mallory
    ok "$io: a certificate without a CN matches no user" refused_as nocn app
    ok "$io: CN=app as a BMPString: refused (not UTF-8 as it is, where PostgreSQL compares bytes)" refused_as bmpcn app
    like "$(cat "$log")" 'cert_users="" user="app"' "... its log line shows no user"
    ok "$io: a 64-byte user equal to its 64-character CN: refused (PostgreSQL would cut it to 63 bytes)" \
        refused_as longcn "$long"
    is "$(wire direct "$KS_PORT" postgresql "$C/appuser.crt" "$C/appuser.key")" "ready alpn=postgresql" \
        "$io: PostgreSQL 17 direct TLS: CN=app logs in as app"
    like "$(wire direct "$KS_PORT" postgresql "$C/alice.crt" "$C/alice.key")" '^28000 ' "... alice as app refused"
    read -r st secs <<<"$(wire tls-cancel "$KS_PORT" "$C/appuser.crt" "$C/appuser.key")"
    is "$st" 57014 "$io: a CancelRequest inside TLS names no user and still cancels"
    is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq .closed.cert_user_mismatch)" 8 \
        "$io: show stats: the 8 refusals counted as cert_user_mismatch"
    fx_sidecar_stop "um-$io" || true
    ks_check_log "um-$io"
done

note "--- --client-user-match map, io=$io"
printf '# identity  users\n"CN=alice" app  # quoted, as pg_ident.conf allows\nURI:spiffe://example.org/ns/app/sa/*  app_ro\nCN=app app_bmp\n"DN:CN=corp,OU=payments,O=Example Corp,C=US" app\nURI:/^spiffe://example\\.org/ns/app/sa/([a-z]+)$ sa_\\1\n' \
    >"$C/users.map"
printf 'client-ca = %s\nverify = require\nclient-user-match = map\nclient-user-map = %s\n' "$C/ca.crt" "$C/users.map" \
    >"$C/um.conf"
ks_start map "$io" --config "$C/um.conf" || BAIL_OUT "sidecar did not start"
log="$(fx_sidecar_log map)"
is "$(fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1')" 1 "map: alice (CN=alice app) logs in as app"
ok "... mallory (not in the map) as app: refused" refused_as mallory app
ok "... CN=app, whose SPIFFE ID gives app_ro, and CN app_bmp: refused as app" refused_as appuser app
like "$(cat "$log")" 'peer="spiffe://example.org/ns/app/sa/alice" cert_users="app_ro,app_bmp,sa_alice" user="app"' \
    "... the log names the certificate (a rule to write) and the users it gives"
err="$(fx_psql "$(ks_dsn "$(as appuser)" user=app_bmp)" -c 'select 1' 2>&1)" || true
like "$err" 'FATAL: +"trust" authentication failed' "... as app_bmp it passes, to PgBouncer (which does not know app_bmp)"
ok "... CN=app as a BMPString matches no CN rule, as in PostgreSQL: refused as app_bmp" refused_as bmpcn app_bmp
is "$(fx_psql "$(ks_dsn "$(as corp)")" -c 'select 4')" 4 \
    "map: corp, whose whole subject a DN: rule names (RFC 2253, as PostgreSQL's clientname=DN), logs in as app"
ok "... and only as app: refused as app_ro" refused_as corp app_ro
err="$(fx_psql "$(ks_dsn "$(as alice)" user=sa_alice)" -c 'select 1' 2>&1)" || true
like "$err" 'FATAL: +"trust" authentication failed' \
    "map: a URI /regex rule with \\1 lets alice in as sa_alice, to PgBouncer (which does not know sa_alice)"
ok "... mallory, whose URI the /regex does not match, is refused as sa_alice" refused_as mallory sa_alice
ok "... and alice as sa_mallory" refused_as alice sa_mallory
printf 'CN=alice app\nCN=mallory app\n' >"$C/users.map.new" && mv "$C/users.map.new" "$C/users.map"
mallory_in() { fx_psql "$(ks_dsn "$(as mallory)")" -c 'select 1' >/dev/null 2>&1; }
like "$(cat "$log")" 'msg="clients log in only as the users the map gives their certificate".* rules=5' \
    "the startup log says users are bound, and how many rules the map has"
is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r '"\(.client_user_match) \(.client_user_map_rules)"')" \
    "map 5" "show info: the mode, and the rules of the map in service"
ok "a changed map is picked up without a restart: mallory admitted" _fx_wait_until 10 mallory_in
like "$(cat "$log")" 'msg="certificates reloaded".* user_map_rules=2' "... the reload's log line counts its rules"
reloads_partial() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .reloads_partial; }
printf 'CN=alice app\nmallory app\n' >"$C/users.map.new" && mv "$C/users.map.new" "$C/users.map"
partial_reload() { [[ "$(reloads_partial)" -ge 1 ]]; }
ok "a map with a bad line: the reload is partial" _fx_wait_until 10 partial_reload
like "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .reload_result)" \
    "client user map not taken, it and the settings in service stay: client user map $C/users.map: line 2: 'mallory' is not CN=name.*; certificates reloaded: subject=/CN=localhost not_after=[0-9TZ:-]+ user_map_rules=2$" \
    "... naming the file and line: the map in service stays, the certificates still rotate (all of it, not cut)"
ok "... and the map in service stays: mallory admitted" mallory_in
like "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info)" 'client_user_match +\| map \(2 rules\)' \
    "... show info says so: the 2 rules of the map before"
printf '# all access revoked\n' >"$C/users.map.new" && mv "$C/users.map.new" "$C/users.map"
alice_out() { refused_as alice app 2>/dev/null; }
ok "a map without rules, as pg_ident.conf: no one is given a user (alice refused)" _fx_wait_until 10 alice_out
# turning the option off: a warning; a handshake made before it was turned on back
printf 'client-ca = %s\nverify = require\n' "$C/ca.crt" >"$C/um.conf.new" && mv "$C/um.conf.new" "$C/um.conf"
alice_as_alice() {
    local err
    err="$(fx_psql "$(ks_dsn "$(as alice)" user=alice)" -c 'select 1' 2>&1)" || true
    [[ "$err" == *'"trust" authentication failed'* ]]
}
ok "a reloaded configuration without it: alice may ask for any user" _fx_wait_until 10 alice_as_alice
like "$(cat "$log")" 'level=warn .*no client-user-match: a client may log in as any user' "... and a warning says so"
rm -f "$C/go"
coproc LATE { wire late-startup "$KS_PORT" "$C/alice.crt" "$C/alice.key" "$C/go" 20; }
read -r -t 20 first <&"${LATE[0]}" || first=
is "$first" tls "a client finishes its handshake while the option is off..."
printf 'client-ca = %s\nverify = require\nclient-user-match = cn\n' "$C/ca.crt" >"$C/um.conf.new" &&
    mv "$C/um.conf.new" "$C/um.conf"
alice_refused() { refused_as alice app 2>/dev/null; }
ok "... a reload turns it on" _fx_wait_until 10 alice_refused
touch "$C/go"
read -r -t 20 late <&"${LATE[0]}" || late=
is "$late" 28000 "... and its startup packet, sent after, is refused: no user is taken unchecked"
wait "$LATE_PID" 2>/dev/null || true
fx_sidecar_stop map || true
ks_check_log map

# a reload cannot turn it on while --allow-plaintext (restart only) is in service
printf 'client-ca = %s\nverify = require\nallow-plaintext = true\n' "$C/ca.crt" >"$C/pt.conf"
ks_start pt "$io" --config "$C/pt.conf" || BAIL_OUT "sidecar did not start"
printf 'client-ca = %s\nverify = require\nclient-user-match = cn\n' "$C/ca.crt" >"$C/pt.conf.new" && mv "$C/pt.conf.new" "$C/pt.conf"
partial() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .reload_result | grep -q 'not re-read'; }
ok "--allow-plaintext in service, client-user-match in the reloaded file: the file is not taken" _fx_wait_until 10 partial
like "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .reload_result)" \
    'client-user-match: --allow-plaintext is in service until a restart' "... saying why"
is "$(fx_psql "host=127.0.0.1 port=$KS_PORT user=app dbname=app sslmode=disable" -c 'select 7')" 7 \
    "... the settings in service stay: plaintext relayed, as configured at start"
fx_sidecar_stop pt || true

out="$(ks_run_fg --client-ca "$C/ca.crt" --verify optional --client-user-match cn)" && rc=0 || rc=$?
ok "--client-user-match with --verify optional: refused at start (status $rc)" test "$rc" -ne 0
like "$out" 'client-user-match: .*only --verify require' "... saying why"
out="$(ks_run_fg --client-ca "$C/ca.crt" --verify require --client-user-match cn --allow-plaintext)" && rc=0 || rc=$?
ok "--client-user-match with --allow-plaintext: refused at start (status $rc)" test "$rc" -ne 0
like "$out" 'client-user-match: a plaintext client has no certificate' "... saying why"
printf 'CN=alice app\n\nCN=bob\n' >"$C/bad.map"
out="$(ks_run_fg --client-ca "$C/ca.crt" --verify require --client-user-match map --client-user-map "$C/bad.map")" &&
    rc=0 || rc=$?
ok "a user map with a bad line: refused at start (status $rc)" test "$rc" -ne 0
like "$out" "client user map $C/bad.map: line 3: 'CN=bob' names no user" "... naming the file and line"
out="$(ks_run_fg --client-crl "$C/crl/clients.crl")" && rc=0 || rc=$?
ok "--client-crl without --verify: refused at start (status $rc)" test "$rc" -ne 0
like "$out" 'client-crl: revocation lists need client certificates' "... saying what is missing"
out="$(ks_run_fg --client-ca "$C/ca.crt" --verify require --client-crl "$C/ca.crt")" && rc=0 || rc=$?
ok "a --client-crl that holds no CRL: refused at start (status $rc)" test "$rc" -ne 0
like "$out" "cannot load client CRL \\(PEM\\).*$C/ca.crt" "... naming the file"
done_testing
