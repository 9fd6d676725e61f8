#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# psql and pgbench through the sidecar to a real PgBouncer and PostgreSQL 15, in
# each io mode: TLS 1.3 and 1.2, RSA and ECDSA certificates, verify-full, TCP
# and unix-socket backends, IPv6 listen, the TLS version floor, and the event-loop
# options (--uring-sqpoll, --uring-fixed-files, --uring-buf-ring, --poll-first, --pin-cpus).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup
fx_with_timeout 60 runuser -u postgres -- "$FX_PGBIN/pgbench" -q -i -s 1 -U app -h "$FX_PG_SOCKDIR" -p "$FX_PG_PORT" app \
    >/dev/null 2>&1 || BAIL_OUT "pgbench -i failed"

KU_TOOL="$(dirname "$KTLS_SIDECAR")/tests/tools/pgkeyupdate"
[[ -x "$KU_TOOL" ]] || KU_TOOL="$FX_REPO/build/tests/tools/pgkeyupdate"

direct="host=$FX_PG_SOCKDIR port=$FX_PG_PORT user=app dbname=app"
big="select string_agg(i::text, ',') from generate_series(1, 50000) i"
want_big="$(fx_psql "$direct" -c "$big")"

for io in $(ks_io_modes); do
    note "--- io=$io"
    ks_start "s-$io" "$io" || BAIL_OUT "sidecar did not start"
    out="$(fx_psql "$(ks_dsn)" -c 'select 40+2')"
    is "$out" 42 "$io: psql sslmode=require runs a query"
    info="$(fx_psql "$(ks_dsn)" -c '\conninfo')"
    like "$info" 'protocol: TLSv1\.3, cipher: TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)' \
        "$io: client sees TLS 1.3 with a kTLS-capable suite"
    info="$(PGSSLMAXPROTOCOLVERSION=TLSv1.2 fx_psql "$(ks_dsn)" -c '\conninfo')"
    like "$info" 'protocol: TLSv1\.2, cipher: ECDHE-RSA-(AES128-GCM-SHA256|AES256-GCM-SHA384|CHACHA20-POLY1305)' \
        "$io: client sees TLS 1.2 ECDHE-RSA AEAD"
    out="$(fx_psql "$(ks_dsn sslmode=verify-full sslrootcert="$FX_CERTS/ca.crt" host=localhost)" -c 'select 1')"
    is "$out" 1 "$io: sslmode=verify-full against the CA"
    out="$(fx_psql "$(ks_dsn)" -c 'select current_user, current_database()')"
    is "$out" "app|app" "$io: user and database reach PostgreSQL"

    rc=0; pgb="$(fx_with_timeout 60 pgbench -n -S -c 4 -j 2 -T 3 "$(ks_dsn)" 2>&1)" || rc=$?
    ok_rc "$rc" "$io: pgbench -S -c 4 -T 3 exits 0" || diag "$pgb"
    like "$pgb" 'number of failed transactions: 0 ' "$io: pgbench reports no failed transactions"
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$pgb" | head -1)"
    note "$io: pgbench -S tps=$tps"
    ok "$io: pgbench did real work" test "${tps%.*}" -gt 50

    # A relay quiet for over a second gives its buffers' pages back (the reads stay
    # armed on them): traffic after that must arrive intact, both ways.
    out="$(fx_psql "$(ks_dsn)" -c 'select 1' -c '\! sleep 1.5' -c "$big" -c 'select pg_sleep(1.5)' -c "$big" | md5sum)"
    is "$out" "$(printf '1\n%s\n\n%s\n' "$want_big" "$want_big" | md5sum)" \
        "$io: after idle seconds in either direction, a 290 kB answer arrives intact"

    # TLS 1.3 KeyUpdate from the client (userspace TLS here: OpenSSL follows it); the
    # kTLS rekey in the kernel is covered by tests/vm.
    for ku in k K; do
        rc=0; out="$(fx_with_timeout 60 "$KU_TOOL" 127.0.0.1 "$KS_PORT" app app 20 "$ku" 2>&1)" || rc=$?
        ok_rc "$rc" "$io: 20 queries, each after a client KeyUpdate ($ku), answered in full" || diag "$out"
    done

    rc=0; fx_sidecar_stop "s-$io" || rc=$?
    is "$rc" 0 "$io: SIGTERM exits 0"
    ks_check_log "s-$io"

    ks_start "ec-$io" "$io" --cert "$FX_CERTS/server-ec.crt" --key "$FX_CERTS/server-ec.key" \
        --backend "unix:$FX_PGB_SOCKDIR/.s.PGSQL.$FX_PGB_PORT" || BAIL_OUT "sidecar did not start"
    info="$(PGSSLMAXPROTOCOLVERSION=TLSv1.2 fx_psql "$(ks_dsn)" -c '\conninfo' -c 'select 7')"
    like "$info" 'cipher: ECDHE-ECDSA-' "$io: ECDSA certificate serves ECDHE-ECDSA"
    like "$info" $'\n7$' "$io: unix-socket backend (PgBouncer's .s.PGSQL socket) works"
    fx_sidecar_stop "ec-$io" || true
done

io="$(ks_io_modes | awk '{print $1}')"
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
    port="$(fx_free_port)"
    fx_sidecar_start v6 --listen "[::1]:$port" --backend "127.0.0.1:$FX_PGB_PORT" --io "$io" \
        --cert "$FX_CERTS/server.crt" --key "$FX_CERTS/server.key" --admin-socket "" || BAIL_OUT "v6 sidecar"
    out="$(fx_psql "host=::1 port=$port user=app dbname=app sslmode=require" -c 'select 6')"
    is "$out" 6 "IPv6 listen [::1]"
    fx_sidecar_stop v6 || true
else
    skip "no IPv6 loopback on this machine"
fi

ks_start floor "$io" --min-tls-version 1.3 || BAIL_OUT "sidecar did not start"
nok "TLS 1.2 client refused by --min-tls-version 1.3" \
    env PGSSLMAXPROTOCOLVERSION=TLSv1.2 fx_psql "$(ks_dsn)" -c 'select 1'
is "$(fx_psql "$(ks_dsn)" -c 'select 1')" 1 "TLS 1.3 client accepted by the floor"
fx_sidecar_stop floor || true

ks_start wrong "$io" --cert "$FX_CERTS/wronghost.crt" --key "$FX_CERTS/wronghost.key" || BAIL_OUT "sidecar"
err="$(fx_psql "$(ks_dsn sslmode=verify-full sslrootcert="$FX_CERTS/ca.crt" host=localhost)" -c 'select 1' 2>&1)" || true
like "$err" 'does not match host name' "verify-full fails on a certificate for another host"
fx_sidecar_stop wrong || true

# The io_uring techniques behind options (off by default): each one active, and sessions work.
if [[ " $(ks_io_modes) " == *" uring "* ]]; then
    copy_in="$FX_DIR/copy-in.csv"
    seq 1 200000 | sed 's/$/,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/' >"$copy_in"
    # one transaction: PgBouncer pools by transaction, and the temp table must not outlive it
    copy_q=(-1 -c "create temp table t(a int, b text) on commit drop" -c "\\copy t from '$copy_in' csv"
        -c "select count(*), md5(string_agg(a || b, ',' order by a)) from t")
    want_in="$(fx_psql "$direct" "${copy_q[@]}")"
    want_big_md5="$(md5sum <<<"$want_big")"
    for opt in sqpoll fixed-files buf-ring; do
        # the buffer ring serves userspace TLS only: keep kTLS out of its case where the kernel has it
        extra=(); [[ "$opt" == buf-ring ]] && extra=(--ktls off)
        ks_start "opt-$opt" uring "--uring-$opt" "${extra[@]}" || BAIL_OUT "sidecar --uring-$opt did not start"
        feat="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .io_features)" || feat="(ctl failed)"
        like "$feat" "(^|,)$opt(,|\$)" "--uring-$opt: show info lists $opt in io_features ($feat)"
        is "$(fx_psql "$(ks_dsn)" -c 'select 40+3')" 43 "--uring-$opt: psql runs a query"
        rc=0; pgb="$(fx_with_timeout 60 pgbench -n -S -c 4 -j 2 -T 2 "$(ks_dsn)" 2>&1)" || rc=$?
        ok_rc "$rc" "--uring-$opt: pgbench -S -c 4 -T 2 exits 0" || diag "$pgb"
        like "$pgb" 'number of failed transactions: 0 ' "--uring-$opt: no failed transactions"
        is "$(fx_psql "$(ks_dsn)" -c "$big" | md5sum)" "$want_big_md5" "--uring-$opt: a 290 KB result comes through whole"
        is "$(fx_psql "$(ks_dsn)" "${copy_q[@]}")" "$want_in" "--uring-$opt: a 22 MB COPY FROM STDIN arrives byte-exact"
        if [[ "$opt" == sqpoll ]]; then
            # the SQ thread is a thread of the sidecar, so /proc/PID/stat counts its CPU
            ok "--uring-sqpoll: an iou-sqp thread runs inside the sidecar process" \
                grep -qs '^iou-sqp' /proc/"${FX_SIDECAR_PIDS[opt-$opt]}"/task/*/comm
        fi
        rc=0; fx_sidecar_stop "opt-$opt" || rc=$?
        is "$rc" 0 "--uring-$opt: SIGTERM exits 0"
        ks_check_log "opt-$opt"
    done
    if [[ -z "${KTLS_SIDECAR_URING_SQPOLL:-}${KTLS_SIDECAR_URING_FIXED_FILES:-}${KTLS_SIDECAR_URING_BUF_RING:-}" ]]; then
        ks_start opt-none uring || BAIL_OUT "sidecar did not start"
        feat="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .io_features)" || feat="(ctl failed)"
        unlike "$feat" 'sqpoll|fixed-files|buf-ring|poll-first' "by default no SQPOLL, registered files, buffer ring or poll-first ($feat)"
        fx_sidecar_stop opt-none || true
    else
        skip "KTLS_SIDECAR_URING_* in the environment: the default is not observable" 1
    fi
else
    skip "io_uring unavailable: no --uring-sqpoll / --uring-fixed-files / --uring-buf-ring cases" 26
fi

# no open connection left, within 10 s
wait_idle() {
    for _ in $(seq 50); do
        [[ "$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq -r .active)" == 0 ]] && return 0
        sleep 0.2
    done
    return 1
}

# --poll-first (off by default) on each engine: listed (or not) in io_features, and
# ping-pong and bulk traffic both go through (a lost wakeup would hang them), and so
# does a FIN that arrives with the last data (no event follows it).
for io in $(ks_io_modes); do
    for pf in poll-first no-poll-first; do
        ks_start "pf-$io-$pf" "$io" "--$pf" || BAIL_OUT "sidecar --$pf did not start"
        feat="$("$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show info json | jq -r .io_features)" || feat="(ctl failed)"
        if [[ "$pf" == poll-first ]]; then
            like "$feat" '(^|,)poll-first(,|$)' "$io --$pf: show info lists poll-first ($feat)"
        else
            unlike "$feat" 'poll-first' "$io --$pf: show info does not list poll-first ($feat)"
        fi
        rc=0; pgb="$(fx_with_timeout 60 pgbench -n -S -c 4 -j 2 -T 2 "$(ks_dsn)" 2>&1)" || rc=$?
        ok_rc "$rc" "$io --$pf: pgbench -S -c 4 -T 2 exits 0" || diag "$pgb"
        like "$pgb" 'number of failed transactions: 0 ' "$io --$pf: no failed transactions"
        n="$(fx_psql "$(ks_dsn)" -c "COPY (SELECT repeat('x',1000) FROM generate_series(1,20000)) TO STDOUT" | wc -c)" || true
        is "$n" 20020000 "$io --$pf: a 20 MB COPY comes through whole"
        is "$(fx_with_timeout 120 python3 "$PGWIRE" query-fin "$KS_PORT" 20)" "eof 20 of 20" \
            "$io --$pf: a FIN right behind a query reaches the pooler: the client sees EOF, 20 of 20"
        ok "$io --$pf: ... and every connection is released" wait_idle
        fx_sidecar_stop "pf-$io-$pf" || true
    done
done

# --pin-cpus: worker N runs on the Nth allowed CPU, and its listener takes the
# connections the kernel processes on that CPU (SO_INCOMING_CPU). Over loopback a
# client's SYN is processed on the client's CPU, so a client pinned with taskset must
# land on the worker of that CPU, every time.
mapfile -t allowed < <(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)), sep="\n")')
if (( ${#allowed[@]} >= 2 )) && command -v taskset >/dev/null; then
    io="$(ks_io_modes)"; io="${io%% *}"
    ks_start pin "$io" --workers 2 --pin-cpus || BAIL_OUT "sidecar --pin-cpus did not start"
    workers() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show workers json; }
    is "$(workers | jq -c '[.workers[].cpu]')" "[${allowed[0]},${allowed[1]}]" \
        "--pin-cpus: show workers gives each worker its CPU (${allowed[0]}, ${allowed[1]})"
    for k in 0 1; do
        before="$(workers | jq -c '[.workers[].accepted]')"
        for _ in 1 2 3 4; do
            timeout 20 taskset -c "${allowed[$k]}" "$FX_PGBIN/psql" -X -q -A -t -w "$(ks_dsn)" -c 'select 1' \
                >/dev/null 2>&1 || true
        done
        after="$(workers | jq -c '[.workers[].accepted]')"
        delta="$(jq -nc --argjson a "$after" --argjson b "$before" '[$a[0]-$b[0], $a[1]-$b[1]]')"
        want='[4,0]'; ((k == 1)) && want='[0,4]'
        is "$delta" "$want" "--pin-cpus: 4 clients on CPU ${allowed[$k]} all accepted by worker $k (accepted per worker $delta)"
    done
    fx_sidecar_stop pin || true
    ks_start nopin "$io" --workers 2 || BAIL_OUT "sidecar did not start"
    is "$(workers | jq -c '[.workers[].cpu]')" "[null,null]" "without --pin-cpus no worker has a CPU"
    fx_sidecar_stop nopin || true
else
    skip "fewer than 2 allowed CPUs or no taskset: no --pin-cpus case" 4
fi

nok "a key that does not match the certificate is refused at startup" \
    fx_with_timeout 5 "$KTLS_SIDECAR" run --listen 127.0.0.1:1 --cert "$FX_CERTS/server.crt" \
    --key "$FX_CERTS/server-ec.key" --admin-socket ""
out="$("$KTLS_SIDECAR" run --bogus 2>&1)" || true
like "$out" "unknown option '--bogus'" "unknown flags are named in the error"
rc=0
out="$(ks_run_fg --admin-socket "" --min-tls-version 1.3 --ciphersuites "")" || rc=$?
is "$rc" 1 "TLS 1.3 only with no TLS 1.3 suite: refused at startup (every handshake would fail)"
like "$out" 'no cipher is left for TLS 1.3' "... saying why"
rc=0
out="$(ks_run_fg --admin-socket "" --client-ca "$FX_CERTS/ca.crt")" || rc=$?
is "$rc" 2 "--client-ca without --verify: refused (it would check nothing)"
like "$out" 'client-ca: .*--verify' "... naming the option and the fix"
rc=0; "$KTLS_SIDECAR" >/dev/null 2>&1 || rc=$?
is "$rc" 2 "no command: the usage and exit 2"
rc=0; "$KTLS_SIDECAR" version extra >/dev/null 2>&1 || rc=$?
is "$rc" 2 "version with an argument: exit 2"
done_testing
