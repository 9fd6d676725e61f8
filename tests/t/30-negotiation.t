#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# PostgreSQL startup negotiation in each io mode: GSSENCRequest then SSLRequest,
# direct TLS with and without ALPN, buffer stuffing, plaintext refusal, bad
# lengths, cancels (plaintext and inside TLS), backend down, handshake timeout.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
wire() { fx_with_timeout 30 python3 "$PGWIRE" "$@"; }

for io in $(ks_io_modes); do
    note "--- io=$io"
    ks_start "n-$io" "$io" || BAIL_OUT "sidecar did not start"
    log="$(fx_sidecar_log "n-$io")"
    is "$(wire gss-then-ssl "$KS_PORT")" "N S ready" "$io: GSSENCRequest answered N, then SSLRequest S and a session"
    like "$(wire stuffing "$KS_PORT")" '^(E 08P01|closed)' "$io: bytes stuffed after SSLRequest are refused"
    unlike "$(wire stuffing "$KS_PORT")" '^S' "$io: no 'S' answer to a stuffed SSLRequest"
    like "$(cat "$log")" 'unencrypted data after SSLRequest' "$io: stuffing is logged"
    is "$(wire gss-stuffing "$KS_PORT")" "E 08P01 received unencrypted data after GSSAPI encryption request" \
        "$io: bytes behind a GSSENCRequest are refused too (no 'N'), as PostgreSQL does"
    like "$(wire gss-then-direct "$KS_PORT")" '^refused' "$io: direct TLS only as a connection's first bytes, not after 'N'"
    is "$(wire tls-packet "$KS_PORT" proto4)" "E 0A000 unsupported frontend protocol 4.0: server supports 3.0 to 3.x" \
        "$io: protocol 4.0: SQLSTATE 0A000 naming the version, as PostgreSQL"
    is "$(wire tls-packet "$KS_PORT" nouser)" "E 28000 no PostgreSQL user name specified in startup packet" \
        "$io: no user name: SQLSTATE 28000, as PostgreSQL"
    like "$(wire plain-startup "$KS_PORT")" '^E 28000 ktls-sidecar: SSL is required' \
        "$io: plaintext StartupMessage refused with SQLSTATE 28000"
    err="$(fx_psql "$(ks_dsn sslmode=disable)" -c 'select 1' 2>&1)" || true
    like "$err" 'FATAL: +ktls-sidecar: SSL is required' "$io: psql sslmode=disable sees the FATAL message"
    is "$(wire raw-length "$KS_PORT" 20000)" "E 08P01" "$io: startup length over 10004 refused"
    is "$(wire raw-length "$KS_PORT" -8)" "E 08P01" "$io: negative startup length refused"
    is "$(wire raw-length "$KS_PORT" 4)" "E 08P01" "$io: startup length below 8 refused"
    out="$(wire header-only "$KS_PORT" 0)"
    like "$out" '^E 08P01 ' "$io: a bare 4-byte length of 0, then silence: FATAL 08P01"
    ok "$io: ... at once, not at the 10 s handshake timeout ($(ks_ms "$out") ms)" test "$(ks_ms "$out")" -lt 3000
    is "$(wire unread-tail "$KS_PORT")" "E 08P01 fin" \
        "$io: the refusal ends with a FIN, not a reset, though the client sent more than was read"

    is "$(wire direct "$KS_PORT" postgresql)" "ready alpn=postgresql" "$io: direct TLS with ALPN postgresql"
    for sizes in 1 1,2,3 3,300; do
        is "$(wire direct-frag "$KS_PORT" "$sizes")" "ready alpn=postgresql value=42" \
            "$io: direct TLS whose ClientHello comes in records of $sizes bytes and the rest"
    done
    like "$(wire direct "$KS_PORT" none)" 'refused .*alert no application protocol' "$io: direct TLS without ALPN refused"
    like "$(wire direct "$KS_PORT" http/1.1)" 'refused .*alert no application protocol' \
        "$io: direct TLS with only other ALPN protocols refused"
    out="$(echo | fx_with_timeout 10 openssl s_client -connect "127.0.0.1:$KS_PORT" -alpn postgresql 2>&1)" || true
    like "$out" 'ALPN protocol: postgresql' "$io: openssl s_client -alpn postgresql negotiates direct TLS"
    out="$(echo | fx_with_timeout 10 openssl s_client -connect "127.0.0.1:$KS_PORT" 2>&1)" || true
    like "$out" 'alert no application protocol' "$io: openssl s_client without ALPN gets no_application_protocol"
    like "$(cat "$log")" 'direct TLS without ALPN' "$io: the refusal is logged with its reason"
    out="$(echo | fx_with_timeout 10 openssl s_client -connect "127.0.0.1:$KS_PORT" -starttls postgres \
        -alpn postgresql 2>&1)" || true
    like "$out" 'ALPN protocol: postgresql' "$io: ALPN postgresql also selected after SSLRequest"

    t0=$(date +%s%N)
    out="$(timeout -s INT 3 psql -X "$(ks_dsn)" -c 'select pg_sleep(30)' 2>&1)" || true
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    like "$out" 'canceling statement due to user request' "$io: psql's plaintext CancelRequest cancels pg_sleep(30)"
    ok "$io: cancelled well before the 30 s sleep ends (${ms} ms)" test "$ms" -lt 10000
    read -r st secs <<<"$(wire tls-cancel "$KS_PORT")"
    is "$st" 57014 "$io: CancelRequest inside TLS (PG17 PQcancelCreate style) cancels"
    ok "$io: TLS cancel in under 5 s (${secs} s)" python3 -c "import sys; sys.exit(not float('$secs') < 5)"

    fx_sidecar_stop "n-$io" || true
    ks_check_log "n-$io"

    # the handshake timeout, on its own sidecar: a 1 s limit would also cut off the
    # checks above whenever a loaded host stalls a client for a second
    ks_start "t-$io" "$io" --handshake-timeout 1s || BAIL_OUT "sidecar did not start"
    read -r what secs _ <<<"$(wire silent "$KS_PORT" none)"
    is "$what" eof "$io: a silent client is closed"
    ok "$io: ... at the 1 s handshake timeout (${secs} s)" python3 -c "import sys; sys.exit(not 0.8 <= float('$secs') < 3)"
    read -r what secs _ <<<"$(wire silent "$KS_PORT" ssl)"
    is "$what" eof "$io: a client stalled inside its SSLRequest is closed"
    like "$(cat "$(fx_sidecar_log "t-$io")")" 'msg="handshake timeout"' "$io: handshake timeout is logged"
    fx_sidecar_stop "t-$io" || true

    dead="$(fx_free_port)"
    ks_start "down-$io" "$io" --backend "127.0.0.1:$dead" --connect-timeout 2s || BAIL_OUT "sidecar did not start"
    like "$(wire tls-startup "$KS_PORT")" "^E 08006 ktls-sidecar: could not connect to backend 127.0.0.1:$dead" \
        "$io: backend down gives FATAL 08006 over TLS, naming the backend"
    err="$(fx_psql "$(ks_dsn)" -c 'select 1' 2>&1)" || true
    like "$err" 'could not connect to backend' "$io: psql shows the backend error"
    fx_sidecar_stop "down-$io" || true

    # a host name with two addresses, ::1 first (as localhost in a pod's /etc/hosts),
    # where the pooler listens on 127.0.0.1 only: a connection tries the next address
    # (on a refusal, and on --connect-timeout), later ones start there, and /readyz
    # walks the addresses too. The sidecar runs in a mount namespace with its own
    # /etc/hosts.
    if unshare -m true 2>/dev/null; then
        printf '::1 ks-pool\n127.0.0.1 ks-pool\n' >"$FX_DIR/hosts"
        printf '#!/bin/sh\nexec unshare -m sh -c %s %s "$@"\n' \
            "'mount --bind \"\$0\" /etc/hosts && exec \"\$@\"'" "'$FX_DIR/hosts' '$KTLS_SIDECAR'" >"$FX_DIR/ns-sidecar"
        chmod +x "$FX_DIR/ns-sidecar"
        note "ks-pool resolves to: $(unshare -m sh -c \
            "mount --bind '$FX_DIR/hosts' /etc/hosts && getent ahosts ks-pool | awk '/STREAM/{print \$1}' | xargs")"
        moved='msg="backend reached at another of its addresses: connections try it first".* address=127.0.0.1:'
        KTLS_SIDECAR="$FX_DIR/ns-sidecar" ks_start "two-$io" "$io" --backend "ks-pool:${FX_PGB_PORT}" ||
            BAIL_OUT "sidecar did not start"
        log="$(fx_sidecar_log "two-$io")"
        like "$(cat "$log")" "msg=\"the backend has several addresses.*addresses=\\[::1\\]:${FX_PGB_PORT},127.0.0.1:${FX_PGB_PORT}" \
            "$io: the backend's two addresses are logged at start"
        is "$(fx_psql "$(ks_dsn)" -c 'select 11' 2>&1)" 11 "$io: a session goes through to the address that answers"
        is "$(fx_psql "$(ks_dsn)" -c 'select 12' 2>&1)" 12 "$io: ... and the next one"
        is "$(grep -c "$moved" "$log")" 1 "$io: logged once: connections now start at 127.0.0.1"
        is "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq -r .backend_connect_failed)" 0 \
            "$io: no connection failed"
        fx_sidecar_stop "two-$io" || true
        ks_check_log "two-$io"

        mport="$(fx_free_port)"
        KTLS_SIDECAR="$FX_DIR/ns-sidecar" ks_start "two-rz-$io" "$io" --backend "ks-pool:${FX_PGB_PORT}" \
            --metrics-listen "127.0.0.1:$mport" || BAIL_OUT "sidecar did not start"
        codes=""
        for _ in 1 2; do
            codes+="$(python3 -c "
import urllib.request, urllib.error
try: print(urllib.request.urlopen('http://127.0.0.1:$mport/readyz', timeout=5).status)
except urllib.error.HTTPError as e: print(e.code)") "
        done
        is "$codes" "200 200 " "$io: /readyz is 200 from the first probe: it goes on to the address that answers"
        fx_sidecar_stop "two-rz-$io" || true

        # ::1 drops the connect (a listener whose accept queue is full): the next
        # address after --connect-timeout
        python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET6); s.bind(("::1", int(sys.argv[1]))); s.listen(0)
fill = []
for _ in range(3):
    f = socket.socket(socket.AF_INET6); f.setblocking(False); f.connect_ex(("::1", int(sys.argv[1]))); fill.append(f)
open(sys.argv[2], "w").write("ready\n")
time.sleep(60)' "$FX_PGB_PORT" "$FX_DIR/hole-$io.ready" &
        hole=$!
        fx_register_pid "$hole"
        ks_wait_file "$FX_DIR/hole-$io.ready" || BAIL_OUT "the silent listener did not come up"
        extra=()
        [[ "$io" == uring ]] && extra=(--uring-fixed-files)
        KTLS_SIDECAR="$FX_DIR/ns-sidecar" ks_start "two-to-$io" "$io" --backend "ks-pool:${FX_PGB_PORT}" \
            --connect-timeout 1s "${extra[@]}" || BAIL_OUT "sidecar did not start"
        t0=$(date +%s%N)
        is "$(fx_psql "$(ks_dsn)" -c 'select 13' 2>&1)" 13 "$io${extra[*]:+ ${extra[*]}}: ::1 silent: the session goes through 127.0.0.1"
        ms=$(( ($(date +%s%N) - t0) / 1000000 ))
        ok "$io: ... after the 1 s connect timeout on ::1 (${ms} ms)" test "$ms" -ge 900
        like "$(cat "$(fx_sidecar_log "two-to-$io")")" "$moved" "$io: ... and connections now start at 127.0.0.1"
        fx_sidecar_stop "two-to-$io" || true
        ks_check_log "two-to-$io"
        kill "$hole" 2>/dev/null || true
        wait "$hole" 2>/dev/null || true

        KTLS_SIDECAR="$FX_DIR/ns-sidecar" ks_start "two-down-$io" "$io" --backend "ks-pool:$dead" \
            || BAIL_OUT "sidecar did not start"
        like "$(wire tls-startup "$KS_PORT")" "^E 08006 ktls-sidecar: could not connect to backend ks-pool:$dead" \
            "$io: both addresses down: FATAL 08006, naming the backend"
        like "$(cat "$(fx_sidecar_log "two-down-$io")")" \
            "msg=\"backend connect failed\".* address_errors=\"\\[::1\\]:$dead Connection refused; 127.0.0.1:$dead Connection refused\"" \
            "$io: ... the log gives each address's error"
        fx_sidecar_stop "two-down-$io" || true
        ks_check_log "two-down-$io"
    else
        skip "unshare -m does not work here: no private /etc/hosts for the two-address backend" 14
    fi

    # a unix-socket pooler whose accept queue is full: connect() says EAGAIN at once,
    # and the client hears so at once (not after --connect-timeout)
    full="$FX_DIR/pooler-full-$io.s"
    python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(0)
f = socket.socket(socket.AF_UNIX); f.connect(sys.argv[1])
open(sys.argv[2], "w").write("ready\n")
time.sleep(60)' "$full" "$FX_DIR/full-$io.ready" &
    fx_register_pid $!
    ks_wait_file "$FX_DIR/full-$io.ready" || BAIL_OUT "the full pooler did not come up"
    ks_start "full-$io" "$io" --backend "unix:$full" --connect-timeout 5s || BAIL_OUT "sidecar did not start"
    out="$(wire tls-startup "$KS_PORT")"
    ms="$(ks_ms "$out")"
    like "$out" "^E 08006 ktls-sidecar: could not connect to backend unix:$full.*(temporarily unavailable|again)" \
        "$io: a full unix accept queue: FATAL 08006 saying so"
    ok "$io: ... at once, not after the 5 s connect timeout (${ms} ms)" test "$ms" -lt 3000
    fx_sidecar_stop "full-$io" || true

    ks_start "np-$io" "$io" --no-plain-cancel --allow-plaintext || BAIL_OUT "sidecar did not start"
    is "$(fx_psql "$(ks_dsn sslmode=disable)" -c 'select 5')" 5 "$io: --allow-plaintext relays a plaintext session"
    out="$(timeout -s INT 1 psql -X "$(ks_dsn)" -c 'select pg_sleep(3)' 2>&1)" || true
    unlike "$out" 'canceling statement' "$io: --no-plain-cancel drops plaintext CancelRequests"
    fx_sidecar_stop "np-$io" || true
done
done_testing
