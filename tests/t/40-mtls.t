#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Client certificates: verify=require with URI/CN/DNS allow-lists, refusals
# with a TLS alert and a logged reason (not allowed, expired, untrusted, none),
# and verify=optional accepting clients without a certificate.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
C="$FX_CERTS"
as() { echo "sslcert=$C/$1.crt sslkey=$C/$1.key"; }

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
    fx_sidecar_stop "o-$io" || true
done
done_testing
