#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The kTLS suite, run INSIDE the VM by tests/vm/ktls.t: psql and pgbench for TLS
# 1.2 and 1.3 x three AEADs, COPY both ways byte-exact with splice and copy
# relays on both engines, proof in /proc/net/tls_stat and the admin stats,
# close_notify, a fatal alert and a KeyUpdate from the client, --client-user-match.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
wire() { fx_with_timeout 60 python3 "$PGWIRE" "$@"; }
tls_stat() { awk -v k="$1" '$1 == k {print $2}' /proc/net/tls_stat; }
stat_json() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq -r "$1"; }

"$KTLS_SIDECAR" version | grep -q '^ktls: available' ||
    BAIL_OUT "kTLS unavailable in the VM: $("$KTLS_SIDECAR" version | tail -1)"
ks_setup
direct="host=$FX_PG_SOCKDIR port=$FX_PG_PORT user=app dbname=app"
MODES="${TEST_IO_MODES:-uring epoll}"

rc=0
out="$(fx_with_timeout 30 "$KTLS_SIDECAR" check --ktls on --listen "127.0.0.1:$(fx_free_port)" \
    --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" 2>&1)" || rc=$?
is "$rc" 0 "check --ktls on where the kernel has kTLS: exit 0"
like "$out" 'ktls: on' "... and says kTLS is on"

# --- TLS 1.3 and 1.2 x AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 (on the first
# engine; the other engine gets one suite per version, the rest of the suite
# exercises both engines)
note "t=${SECONDS}s: ciphers"
suites13="TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256"
suites12="ECDHE-RSA-AES128-GCM-SHA256 ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305"
first="$(awk '{print $1}' <<<"$MODES")"
for io in $MODES; do
    list="$suites13 $suites12"
    [[ "$io" == "$first" ]] || list="TLS_CHACHA20_POLY1305_SHA256 ECDHE-RSA-AES256-GCM-SHA384"
    for suite in $list; do
        case "$suite" in
        TLS_*) args=(--ciphersuites "$suite") ver=TLSv1.3 ;;
        *) args=(--ciphers "$suite") ver=TLSv1.2 ;;
        esac
        ks_start "c-$io-$suite" "$io" --ktls on "${args[@]}" || BAIL_OUT "sidecar did not start"
        info="$(PGSSLMAXPROTOCOLVERSION="$ver" fx_psql "$(ks_dsn)" -c '\conninfo' -c 'select 40+2')"
        like "$info" "protocol: $ver, cipher: $suite" "$io $ver $suite: negotiated"
        like "$info" $'\n42$' "$io $ver $suite: query through kTLS"
        rc=0; out="$(PGSSLMAXPROTOCOLVERSION="$ver" fx_with_timeout 60 pgbench -n -S -c 1 -j 1 -t 20 "$(ks_dsn)" 2>&1)" || rc=$?
        ok_rc "$rc" "$io $ver $suite: pgbench -S runs clean" || diag "$out"
        like "$out" 'number of failed transactions: 0 ' "$io $ver $suite: no failed transactions"
        is "$(stat_json '[.handshakes_ok >= 2, .ktls_tx == .handshakes_ok, .ktls_rx == .handshakes_ok, .user_tls] | join(" ")')" \
            "true true true 0" "$io $ver $suite: every connection had TX and RX in the kernel"
        fx_sidecar_stop "c-$io-$suite" || true
    done
done

# --- a suite the kernel cannot take (TLS 1.2 AES-CBC, allowed with --ciphers): that
# connection stays in userspace TLS, logged once and counted under its step
note "t=${SECONDS}s: not offloadable"
ks_start cbc "$first" --ktls on --ciphers ECDHE-RSA-AES128-SHA256 || BAIL_OUT "sidecar did not start"
info="$(PGSSLMAXPROTOCOLVERSION=TLSv1.2 fx_psql "$(ks_dsn)" -c '\conninfo' -c 'select 40+3')"
like "$info" 'cipher: ECDHE-RSA-AES128-SHA256' "TLS 1.2 AES-CBC negotiated"
like "$info" $'\n43$' "... the session runs in userspace TLS"
is "$(stat_json '[.user_tls, .ktls_tx, .ktls_fallback.suite, ([.ktls_fallback[]] | add)] | join(" ")')" "1 0 1 1" \
    "... counted as userspace TLS, under the step 'suite' and no other"
like "$(cat "$(fx_sidecar_log cbc)")" 'kTLS not used for this connection.*step="suite not offloadable"' "... and logged"
fx_sidecar_stop cbc || true

# --- PostgreSQL 17 direct TLS into kTLS, the ClientHello cut into records shorter than
# the negotiation's first read: the handshake's record-exact reads keep their place
note "t=${SECONDS}s: direct TLS"
for io in $MODES; do
    ks_start "d-$io" "$io" --ktls on || BAIL_OUT "sidecar did not start"
    for sizes in 1,2,3 300; do
        is "$(wire direct-frag "$KS_PORT" "$sizes")" "ready alpn=postgresql value=42" \
            "$io: direct TLS, ClientHello in records of $sizes bytes and the rest"
    done
    is "$(stat_json '[.ktls_tx, .ktls_rx, .user_tls] | join(" ")')" "2 2 0" "$io: ... both sessions in kTLS"
    is "$(stat_json '[.ktls_fallback[]] | add')" 0 "$io: ... and no kTLS fallback counted"
    fx_sidecar_stop "d-$io" || true
done

# --- kTLS with io_uring blocked by seccomp: --io=auto runs epoll, records stay in the kernel
wrap="$FX_DIR/sidecar-noiouring"
printf '#!/bin/sh\nexec %q EPERM %q "$@"\n' "$(dirname "$KTLS_SIDECAR")/tests/tools/noiouring" "$KTLS_SIDECAR" >"$wrap"
chmod +x "$wrap"
real="$KTLS_SIDECAR"
KTLS_SIDECAR="$wrap" ks_start seccomp auto --ktls on || BAIL_OUT "sidecar did not start under seccomp"
KTLS_SIDECAR="$real"
is "$(fx_psql "$(ks_dsn)" -c 'select 9')" 9 "io_uring blocked (EPERM): a session runs on epoll with kTLS"
like "$(cat "$(fx_sidecar_log seccomp)")" 'io_uring unavailable, using the epoll engine' "... the fallback is logged"
is "$(stat_json '[.ktls_tx, .ktls_rx] | join(" ")')" "1 1" "... and both directions were in the kernel"
fx_sidecar_stop seccomp || true

# --- io_uring with registered files (--uring-fixed-files, off by default) on the splice relay
if grep -qw uring <<<"$MODES"; then
    ks_start fixed uring --ktls on --relay splice --uring-fixed-files || BAIL_OUT "sidecar did not start"
    is "$(fx_psql "$(ks_dsn)" -c 'select 5')" 5 "registered files + splice relay: a query through kTLS"
    rc=0; out="$(fx_with_timeout 60 pgbench -n -S -c 2 -j 1 -t 20 "$(ks_dsn)" 2>&1)" || rc=$?
    ok_rc "$rc" "registered files + splice relay: pgbench -S runs clean" || diag "$out"
    is "$(stat_json '[.ktls_tx == .handshakes_ok, .ktls_rx == .handshakes_ok, .user_tls] | join(" ")')" \
        "true true 0" "registered files + splice relay: every connection in kTLS both ways"
    fx_sidecar_stop fixed || true
fi

# --- --poll-first (off by default) on the copy relay, whose recvs read the kTLS
# sockets: each engine, a query, pgbench and a COPY out, all in kTLS both ways
pf_bulk="copy (select repeat(md5(g::text), 30) from generate_series(1, 3000) g) to stdout"
pf_want="$(fx_psql "$direct" -c "$pf_bulk" | sha256sum | cut -d' ' -f1)"
for io in $MODES; do
    ks_start "pf-$io" "$io" --ktls on --relay copy --poll-first || BAIL_OUT "sidecar did not start"
    is "$(fx_psql "$(ks_dsn)" -c 'select 6')" 6 "$io --poll-first, kTLS copy relay: a query"
    rc=0; out="$(fx_with_timeout 60 pgbench -n -S -c 2 -j 1 -t 20 "$(ks_dsn)" 2>&1)" || rc=$?
    ok_rc "$rc" "$io --poll-first, kTLS copy relay: pgbench -S runs clean" || diag "$out"
    is "$(fx_with_timeout 120 psql -X -q "$(ks_dsn)" -c "$pf_bulk" | sha256sum | cut -d' ' -f1)" "$pf_want" \
        "$io --poll-first, kTLS copy relay: a COPY out comes through byte-exact"
    is "$(stat_json '[.ktls_tx == .handshakes_ok, .ktls_rx == .handshakes_ok, .user_tls] | join(" ")')" \
        "true true 0" "$io --poll-first: every connection in kTLS both ways"
    # after the traffic: a kernel refusing the flag would have turned it off by now
    feat="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .io_features)"
    like "$feat" '(^|,)poll-first(,|$)' "$io --poll-first: still in use after the traffic ($feat)"
    fx_sidecar_stop "pf-$io" || true
done

# --- --idle-timeout with the keys in the kernel: the copy relay sees the plaintext and
# tells the client why (PostgreSQL's FATAL, encrypted by kTLS); splice does not see
# message boundaries, so its session is closed without one (README)
note "t=${SECONDS}s: idle timeout"
for io in $MODES; do
    for relay in copy splice; do
        ks_start "it-$io-$relay" "$io" --ktls on --relay "$relay" --idle-timeout 3s || BAIL_OUT "sidecar did not start"
        out="$(wire idle-wait "$KS_PORT" idle 20)"
        like "$out" '^closed' "$io $relay, kTLS: an idle session is closed: $out"
        if [[ "$relay" == copy ]]; then
            like "$out" 'fatal 57P05: terminating connection due to idle-session timeout$' "... with its FATAL first"
        else
            unlike "$out" 'fatal' "... bare: splice sees no message boundaries"
        fi
        is "$(stat_json '[.ktls_tx, .ktls_rx, .closed.idle_timeout] | join(" ")')" "1 1 1" "... a kTLS session, closed as idle"
        fx_sidecar_stop "it-$io-$relay" || true
    done
done

# --- --client-user-match cn with the keys in the kernel: the startup packet is read
# through kTLS RX and the refusal leaves through kTLS TX, after the SSL is freed
note "t=${SECONDS}s: client-user-match"
ks_start um "$first" --ktls on --client-ca "$FX_CERTS/ca.crt" --verify require --client-user-match cn ||
    BAIL_OUT "sidecar did not start"
as() { echo "sslcert=$FX_CERTS/$1.crt sslkey=$FX_CERTS/$1.key"; }
is "$(fx_psql "$(ks_dsn "$(as appuser)")" -c 'select 44')" 44 "kTLS, --client-user-match cn: CN=app logs in as app"
err="$(fx_psql "$(ks_dsn "$(as alice)")" -c 'select 1' 2>&1)" || true
like "$err" 'FATAL:  certificate authentication failed for user "app"' "... alice as app: refused, the FATAL sent by kTLS"
is "$(stat_json '[.ktls_tx, .ktls_rx, .closed.cert_user_mismatch] | join(" ")')" "2 2 1" "... both sessions in kTLS"
fx_sidecar_stop um || true

# --- the pooler's unix socket as the backend (in a pod: a shared emptyDir), splice
# relay: kTLS socket -> pipe -> unix socket and back, both engines
note "t=${SECONDS}s: unix backend"
bulk="copy (select repeat(md5(g::text), 30) from generate_series(1, 6000) g) to stdout"
want="$(fx_psql "$direct" -c "$bulk" | sha256sum | cut -d' ' -f1)"
head -c 450000 /dev/urandom | base64 -w 900 >"$FX_DIR/unix-in.txt"
fx_psql "$direct" -c "create table unix_in(line text)" >/dev/null
for io in $MODES; do
    ks_start "unix-$io" "$io" --ktls on --relay splice --backend "unix:$FX_PGB_SOCKDIR/.s.PGSQL.$FX_PGB_PORT" ||
        BAIL_OUT "sidecar did not start"
    is "$(fx_with_timeout 120 psql -X -q "$(ks_dsn)" -c "$bulk" | sha256sum | cut -d' ' -f1)" "$want" \
        "unix backend, splice/$io: 6 MB COPY TO STDOUT byte-exact"
    fx_psql "$direct" -c 'truncate unix_in' >/dev/null
    ok "unix backend, splice/$io: 600 kB COPY FROM STDIN accepted" \
        fx_with_timeout 120 psql -X -q -v ON_ERROR_STOP=1 "$(ks_dsn)" -c 'copy unix_in from stdin' <"$FX_DIR/unix-in.txt"
    is "$(fx_psql "$direct" -c 'copy unix_in to stdout' | sha256sum | cut -d' ' -f1)" \
        "$(sha256sum <"$FX_DIR/unix-in.txt" | cut -d' ' -f1)" "unix backend, splice/$io: ... and arrived byte-exact"
    rc=0; out="$(fx_with_timeout 60 pgbench -n -S -c 2 -j 1 -t 20 "$(ks_dsn)" 2>&1)" || rc=$?
    ok_rc "$rc" "unix backend, splice/$io: pgbench -S runs clean" || diag "$out"
    is "$(stat_json '[.ktls_tx == .handshakes_ok, .ktls_rx == .handshakes_ok, .user_tls] | join(" ")')" \
        "true true 0" "unix backend, splice/$io: every connection in kTLS both ways"
    log="$(cat "$(fx_sidecar_log "unix-$io")")"
    like "$log" 'msg="listening".*backend=unix:' "unix backend, splice/$io: the log names the unix backend"
    unlike "$log" 'using copy relay' "unix backend, splice/$io: no fallback to the copy relay"
    fx_sidecar_stop "unix-$io" || true
    ks_check_log "unix-$io"
done

# --- the kernel does the work: count sockets with kTLS while a session is open
note "t=${SECONDS}s: proof"
io="$(awk '{print $1}' <<<"$MODES")"
ks_start proof "$io" --ktls on || BAIL_OUT "sidecar did not start"
tx0="$(tls_stat TlsCurrTxSw)" rx0="$(tls_stat TlsCurrRxSw)"
fx_psql "$(ks_dsn)" -c 'select pg_sleep(15)' >/dev/null &
sleeper=$!
fx_register_pid "$sleeper"
for _ in $(seq 30); do (($(tls_stat TlsCurrTxSw) > tx0)) && break; sleep 0.2; done
ok "TlsCurrTxSw counts the open session's socket" test "$(tls_stat TlsCurrTxSw)" -gt "$tx0"
ok "TlsCurrRxSw counts the open session's socket" test "$(tls_stat TlsCurrRxSw)" -gt "$rx0"
is "$(stat_json .active)" 1 "admin stats: one active connection"
conns="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show conns json)"
is "$(jq -r '.conns[0].ktls' <<<"$conns")" "tx+rx" "show conns: the sidecar's view is kTLS both ways"
is "$(jq -r '.conns[0].kernel | [.ulp, .txconf, .rxconf] | join(" ")' <<<"$conns")" "tls SW SW" \
    "show conns: the kernel (sock_diag ULP info) reports tls with TX and RX in SW"
like "$(jq -r '.conns[0].kernel | [.version, .cipher] | join(" ")' <<<"$conns")" '^TLSv1\.3 aes-(128|256)-gcm' \
    "show conns: the kernel reports the TLS version and cipher"
fx_sidecar_stop proof INT || true
wait "$sleeper" || true

# --- COPY both ways, byte-exact, in each relay and engine (100 MB once: TCG is slow)
note "t=${SECONDS}s: copy"
fx_psql "$direct" -c "create table big(line text); create table big_in(line text)" >/dev/null
for combo in "splice uring ${TEST_VM_COPY_MB:-100}" "copy epoll 8" "copy uring 8" "splice epoll 8"; do
    read -r relay io mb <<<"$combo"
    [[ " $MODES " == *" $io "* ]] || continue
    src="$FX_DIR/src-$mb.txt"
    if [[ ! -f "$src" ]]; then
        head -c $((mb * 1024 * 1024 * 3 / 4)) /dev/urandom | base64 -w 1000 >"$src"
        fx_psql "$direct" -c 'truncate big' -c "\\copy big from '$src'" >/dev/null
    fi
    want="$(sha256sum <"$src" | cut -d' ' -f1)"
    ks_start "copy-$relay-$io" "$io" --ktls on --relay "$relay" || BAIL_OUT "sidecar did not start"
    t0=$(date +%s%N)
    is "$(fx_with_timeout 300 psql -X -q "$(ks_dsn)" -c 'copy big to stdout' | sha256sum | cut -d' ' -f1)" "$want" \
        "$relay/$io: $mb MB COPY TO STDOUT byte-exact"
    note "$relay/$io: out $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    fx_psql "$direct" -c 'truncate big_in' >/dev/null
    t0=$(date +%s%N)
    ok "$relay/$io: $mb MB COPY FROM STDIN accepted" fx_with_timeout 300 psql -X -q -v ON_ERROR_STOP=1 "$(ks_dsn)" -c 'copy big_in from stdin' <"$src"
    note "$relay/$io: in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    is "$(fx_psql "$direct" -c 'copy big_in to stdout' | sha256sum | cut -d' ' -f1)" "$want" \
        "$relay/$io: $mb MB arrived byte-exact"
    like "$(cat "$(fx_sidecar_log "copy-$relay-$io")")" "msg=\"listening\".*ktls=on" "$relay/$io: sidecar ran with kTLS"
    fx_sidecar_stop "copy-$relay-$io" || true
    ks_check_log "copy-$relay-$io"
done

# --- idle splice connections must not each hold an io-wq kernel thread
note "t=${SECONDS}s: idle"
ks_start idle "$first" --ktls on --relay splice || BAIL_OUT "sidecar did not start"
python3 "$PGWIRE" idle-hold "$KS_PORT" 60 120 >"$FX_DIR/idle.out" 2>&1 &
holder=$!
fx_register_pid "$holder"
for _ in $(seq 600); do grep -q ready "$FX_DIR/idle.out" && break; sleep 0.2; done
sleep 2
pid="${FX_SIDECAR_PIDS[idle]}"
is "$(stat_json .active_ktls_rx)" 60 "60 idle sessions relayed by splice with kTLS"
threads="$(ls "/proc/$pid/task" | wc -l)"
ok "... cost no thread each: the sidecar has $threads threads" test "$threads" -lt 24
kill "$holder" 2>/dev/null || true
fx_sidecar_stop idle INT || true

# --- random record sizes both ways through an echo backend, every relay and engine
note "t=${SECONDS}s: chunking"
eport="$(fx_free_port)"
python3 "$PGWIRE" echo-server "$eport" >"$FX_DIR/echo.log" 2>&1 &
fx_register_pid $!
for _ in $(seq 100); do grep -q listening "$FX_DIR/echo.log" 2>/dev/null && break; sleep 0.1; done
for io in $MODES; do
    for relay in splice copy; do
        ks_start "e-$relay-$io" "$io" --ktls on --relay "$relay" --backend "127.0.0.1:$eport" || BAIL_OUT "start"
        read -r sent got left <<<"$(fx_with_timeout 300 python3 "$PGWIRE" chunked "$KS_PORT" 2 7)"
        is "$left/$got" "0/$sent" "$relay/$io: random record sizes, 2 MB each way, SHA-256 equal"
        [[ "$left/$got" == "0/$sent" ]] || diag "$(grep -v 'listening\|admin socket' "$(fx_sidecar_log "e-$relay-$io")")"
        is "$(stat_json '[.ktls_tx, .ktls_rx] | join(" ")')" "1 1" "$relay/$io: ... with kTLS both ways"
        fx_sidecar_stop "e-$relay-$io" || true
    done
done

# --- records that are not application data
note "t=${SECONDS}s: records"
for io in $MODES; do
    for relay in copy splice; do
        ks_start "rec-$relay-$io" "$io" --ktls on --relay "$relay" --log-level debug || BAIL_OUT "sidecar did not start"
        log="$(fx_sidecar_log "rec-$relay-$io")"
        is "$(wire close-notify "$KS_PORT")" "unwrapped ready" "$relay/$io: client close_notify answered with ours"
        like "$(cat "$log")" 'msg="closed".*reason=eof.*ktls=tx\+rx' "$relay/$io: ... and closed as a clean EOF"
        like "$(wire fatal-alert "$KS_PORT")" '^alert .* (closed|reset)' "$relay/$io: client sends a fatal alert"
        like "$(cat "$log")" 'msg="fatal alert from client".*alert=20' "$relay/$io: ... logged with its code (bad_record_mac)"
        fx_sidecar_stop "rec-$relay-$io" || true
    done
    if [[ -n "$(tls_stat TlsRxRekeyOk)" ]]; then
        skip "$io: kernel $(uname -r) can rekey kTLS: KeyUpdate is tested by tests/vm/rekey.t"
        continue
    fi
    ks_start "ku-$io" "$io" --ktls on || BAIL_OUT "sidecar did not start"
    log="$(fx_sidecar_log "ku-$io")"
    out="$( (sleep 4; echo k; sleep 4) | fx_with_timeout 30 openssl s_client -starttls postgres \
        -connect "127.0.0.1:$KS_PORT" -tls1_3 2>&1)" || true
    like "$out" 'KEYUPDATE' "$io: s_client sent a KeyUpdate"
    like "$(cat "$log")" 'client KeyUpdate: this kernel cannot rekey kTLS RX, closing.*reason=keyupdate_unsupported' \
        "$io: KeyUpdate on kernel $(uname -r) gives a clean close with the reason logged"
    rc=0; out="$(fx_with_timeout 60 "$(dirname "$KTLS_SIDECAR")/tests/tools/pgkeyupdate" 127.0.0.1 "$KS_PORT" app app 1 k 2>&1)" || rc=$?
    like "$rc $out" '^1 .*connection closed' "$io: a session that rekeys mid-way is closed, no query answered with garbage"
    is "$(stat_json '[.closed.keyupdate_unsupported, .ktls_rekey_rx] | join(" ")')" "2 0" \
        "$io: admin stats count both keyupdate closes and no rekey"
    fx_sidecar_stop "ku-$io" || true
done
note "t=${SECONDS}s: done"
done_testing
